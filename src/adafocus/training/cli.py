"""``adafocus fit|validate|test|predict --config ...``: LightningCLI over the stage modules."""

from __future__ import annotations

from collections.abc import Sequence

import pytorch_lightning as pl
from pytorch_lightning.cli import LightningCLI

from .base import AdaFocusStage

TRAINER_DEFAULTS = {
    "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": "runs"}},
}


class AdaFocusCLI(LightningCLI):
    """Any stage module (``subclass_mode_model``) and any data module; ``num_classes`` comes from the data."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")


def run_cli(args: Sequence[str] | None = None, **kwargs) -> AdaFocusCLI:
    """Run the CLI in-process (``args`` as on the command line, e.g. ``["fit", "--config", "x.yaml"]``)."""
    return AdaFocusCLI(
        AdaFocusStage,
        pl.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        trainer_defaults=TRAINER_DEFAULTS,
        args=list(args) if args is not None else None,
        **kwargs,
    )
