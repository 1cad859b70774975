"""``adafocus export``: a stage checkpoint to a model file that needs no Lightning."""

from __future__ import annotations

import argparse
from typing import Any

from .predict import TRUST_HELP


def _run(args: argparse.Namespace) -> int:
    from ..predict import _read_names
    from ..training.export import export_checkpoint

    names = _read_names(args.labels) if args.labels else None
    path = export_checkpoint(args.checkpoint, args.out, class_names=names, trust=args.trust_checkpoint)
    print(f"wrote {path}  (load with adafocus.load_model)")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="stage checkpoint -> model file (adafocus.load_model; no Lightning needed)")
    p.add_argument("checkpoint", help="stage checkpoint (.ckpt) or any file adafocus.load_model reads")
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--labels", help="class names, one per line (line i = class i), kept in the file")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_run)
