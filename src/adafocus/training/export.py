"""``adafocus export``: a stage checkpoint to a plain ``{config, state_dict}`` file usable without Lightning."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..model import AdaFocus, strip_model_prefix
from ..predict import eval_settings, model_from_checkpoint


def export_checkpoint(ckpt: str | Path, out: str | Path) -> Path:
    """Write the AdaFocus weights and architecture config of a stage checkpoint to ``out``."""
    ckpt = Path(ckpt)
    if not ckpt.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt}")
    data = torch.load(ckpt, map_location="cpu", weights_only=False)
    if "adafocus_config" not in data:
        raise ValueError(f"{ckpt} has no 'adafocus_config': was it written by an adafocus stage module?")
    sd = strip_model_prefix(data["state_dict"])
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # the clip length / resize it was evaluated with: `adafocus predict` defaults to them
    eval_data = eval_settings(data.get("datamodule_hyper_parameters"))
    torch.save({"config": data["adafocus_config"], "state_dict": sd, "eval_data": eval_data}, out)
    return out


def load_exported(path: str | Path) -> AdaFocus:
    """Rebuild an ``AdaFocus`` from an ``adafocus export`` file (safe ``weights_only`` load), in
    training mode like a freshly built module.

    ``model.eval_data`` holds the ``num_frames`` / ``scale_size`` recorded at export (empty for
    files exported before they were recorded). Parsed like :func:`adafocus.predict.load_model`,
    but never falls back to full unpickling.
    """
    return model_from_checkpoint(torch.load(path, map_location="cpu", weights_only=True), path)


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="stage checkpoint -> plain state_dict + config (no Lightning needed)")
    p.add_argument("checkpoint")
    p.add_argument("--out", required=True)

    def run(args: argparse.Namespace) -> int:
        path = export_checkpoint(args.checkpoint, args.out)
        print(f"wrote {path}  (load with adafocus.training.export.load_exported)")
        return 0

    p.set_defaults(func=run)
