"""LightningCLI over the stage modules (``adafocus fit|validate|test|predict --config ...``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.cli import LightningCLI

from ..errors import UsageError
from .base import AdaFocusStage
from .predictions import PredictionWriter

# save_dir '' (unset; null would fail validation): the logger writes, and ModelCheckpoint saves, under
# --trainer.default_root_dir, filled in by before_instantiate_classes (``runs`` when that is unset too);
# an explicit --trainer.logger.init_args.save_dir is kept
TRAINER_DEFAULTS = {
    "logger": {"class_path": "pytorch_lightning.loggers.CSVLogger", "init_args": {"save_dir": ""}},
}
DEFAULT_SAVE_DIR = "runs"  # logs and checkpoints when neither save_dir nor default_root_dir is given


class AdaFocusCLI(LightningCLI):
    """Any stage module (``subclass_mode_model``) and any data module; ``num_classes`` comes from the
    data. ``predict`` writes ``predictions.jsonl`` (:class:`PredictionWriter`) unless the trainer
    has a prediction writer of its own. ``validate`` / ``test`` of a registry config end with the
    paper's score beside the measured one (:mod:`adafocus.training.paper_score`)."""

    def add_arguments_to_parser(self, parser) -> None:
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        _resolve_save_dirs(config.get("trainer"))
        for key in ("optimizer", "lr_scheduler"):
            if config.get(key) is not None:
                # Lightning would silently replace the stage's configure_optimizers and its per-part rates
                raise UsageError(
                    f"--{key} is not used by the adafocus stages: each builds its own optimizer with "
                    "per-part learning rates; set them as --model.init_args.lr_local / lr_classifier / "
                    "lr_global (stages 0, I, III: SGD + cosine) or --model.init_args.lr (stage II: Adam); "
                    "`adafocus fit --model.help WarmupStage` lists a stage's options"
                )

    def validate(self, **kwargs: Any) -> list[dict[str, float]]:
        """``trainer.validate``, then the paper's score beside the measured one (registry configs)."""
        results = self.trainer.validate(**kwargs)
        self._print_paper_score(results, "val")
        return results

    def test(self, **kwargs: Any) -> list[dict[str, float]]:
        """``trainer.test``, then the paper's score beside the measured one (registry configs)."""
        results = self.trainer.test(**kwargs)
        self._print_paper_score(results, "test")
        return results

    def _print_paper_score(self, results: list[dict[str, float]], stage: str) -> None:
        from .paper_score import config_files_of, find_entry, paper_score_line

        net = getattr(self.model, "model", None)  # the stage's AdaFocus net
        entry = find_entry(config_files_of(self.config[self.subcommand]), net) if net is not None else None
        if entry is not None and self.trainer.is_global_zero:
            # the metrics Lightning returned (one dict per dataloader; the first is the val/test set)
            print(paper_score_line(entry, results[0] if results else {}, stage))

    def instantiate_trainer(self, **kwargs) -> pl.Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        if self.subcommand == "predict" and not any(isinstance(c, BasePredictionWriter) for c in trainer.callbacks):
            trainer.callbacks.append(PredictionWriter())
        return trainer


def _resolve_save_dirs(trainer: Any) -> None:
    """Loggers without a ``save_dir`` (the default CSVLogger's is ``''``) write under the trainer's
    ``default_root_dir``, so that the run's logs and checkpoints land where the user asked."""
    if trainer is None:
        return
    root = trainer.get("default_root_dir") or DEFAULT_SAVE_DIR
    loggers = trainer.get("logger")
    for logger in loggers if isinstance(loggers, list) else [loggers]:
        init = logger.get("init_args") if hasattr(logger, "get") else None  # True / False / None: no class
        if init is not None and "save_dir" in init and init.get("save_dir") in (None, ""):
            init["save_dir"] = root


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
