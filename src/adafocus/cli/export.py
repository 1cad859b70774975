"""``adafocus export``: a stage checkpoint to a model file that needs no Lightning."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import CheckpointError, UsageError
from .predict import TRUST_HELP


def _run(args: argparse.Namespace) -> int:
    from ..predict import read_class_names
    from ..training.export import export_checkpoint

    try:
        names = read_class_names(args.labels) if args.labels else None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--labels {args.labels}: cannot read it ({err})") from None
    try:
        path = export_checkpoint(args.checkpoint, args.out, class_names=names, trust=args.trust_checkpoint)
    except CheckpointError:
        raise
    except (TypeError, ValueError) as err:  # e.g. as many --labels as the model has classes
        raise UsageError(str(err)) from None
    print(f"wrote {path}  (load with adafocus.load_model)")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="stage checkpoint -> model file (adafocus.load_model; no Lightning needed)")
    p.add_argument("checkpoint", help="stage checkpoint (.ckpt) or any file adafocus.load_model reads")
    p.add_argument("--out", required=True, help="model file to write")
    p.add_argument("--labels", help="class names, one per line (line i = class i), kept in the file")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_run)
