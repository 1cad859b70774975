"""``adafocus export``: a stage checkpoint to a model file that needs no Lightning, or (``--format onnx`` /
``torch-export``) to a graph for offline inference checked against eager (:mod:`adafocus.deploy`)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from ..errors import CheckpointError, UsageError
from .predict import TRUST_HELP

FORMATS = ("model", "onnx", "torch-export")
_BY_SUFFIX = {".onnx": "onnx", ".pt2": "torch-export"}


def output_format(args: argparse.Namespace) -> str:
    """``--format``, else what ``--out``'s suffix says (``.onnx``, ``.pt2``), else the model file."""
    return args.format or _BY_SUFFIX.get(os.path.splitext(args.out)[1].lower(), "model")


def _run(args: argparse.Namespace) -> int:
    from ..predict import read_class_names

    fmt = output_format(args)
    implied = _BY_SUFFIX.get(os.path.splitext(args.out)[1].lower())
    if implied and implied != fmt:
        raise UsageError(f"--out {args.out}: that suffix is for --format {implied}, not {fmt}")
    if fmt == "model" and (args.num_frames or args.static_batch or args.no_check):
        raise UsageError("--num-frames, --static-batch and --no-check apply to --format onnx / torch-export only")
    try:
        names = read_class_names(args.labels) if args.labels else None
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"--labels {args.labels}: cannot read it ({err})") from None
    try:
        if fmt == "model":
            from ..training.export import export_checkpoint

            path = export_checkpoint(args.checkpoint, args.out, class_names=names, trust=args.trust_checkpoint)
            print(f"wrote {path}  (load with adafocus.load_model)")
            return 0
        from ..training.export import export_for_deployment

        report = export_for_deployment(args.checkpoint, args.out, fmt, class_names=names, trust=args.trust_checkpoint,
                                       num_frames=args.num_frames, dynamic_batch=not args.static_batch,
                                       check=not args.no_check)  # fmt: skip
    except CheckpointError:
        raise
    except (TypeError, ValueError) as err:  # e.g. as many --labels as the model has classes, an unexportable model
        raise UsageError(str(err)) from None
    shape = "(" + ", ".join(str(d) for d in report.input_shape) + ")"
    print(f"wrote {report.path}  ({fmt}: frames {shape} -> {', '.join(report.outputs)})")
    if report.checked_with:
        print(f"checked with {report.checked_with} against eager: largest difference {report.largest_diff:.3g}")
    else:
        print("not checked against eager (--no-check, or onnxruntime is not installed)")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("export", help="stage checkpoint -> model file (adafocus.load_model), ONNX or torch.export")
    p.add_argument("checkpoint", help="stage checkpoint (.ckpt) or any file adafocus.load_model reads")
    p.add_argument("--out", required=True, help="file to write (without --format, .onnx / .pt2 choose the format)")
    p.add_argument("--format", choices=FORMATS,
                   help="model: adafocus model file (default); onnx: ONNX graph (needs adafocus[export]); "
                        "torch-export: torch.export program (.pt2, torch.export.load)")  # fmt: skip
    p.add_argument("--labels", help="class names, one per line (line i = class i), kept in the file")
    p.add_argument("--num-frames", type=int, help="T of the exported clips (default: the model's preprocessing)")
    p.add_argument("--static-batch", action="store_true", help="a fixed batch of 2 instead of a dynamic one")
    p.add_argument("--no-check", action="store_true", help="skip running the export against eager")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_run)
