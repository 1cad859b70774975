"""The ``adafocus`` command line: one module per command; heavy modules load inside the commands,
so ``adafocus --help`` and ``adafocus <command> --help`` answer without importing torch."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..data.errors import DataError
from ..errors import CheckpointError, UsageError
from . import benchmark, convert, data, demo, export, flops, lightning, predict, zoo

_ONE_LINE_ERRORS = (CheckpointError, UsageError, DataError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="adafocus", description="AdaFocus: adaptive focus for video recognition")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{fit,validate,test,predict,zoo,demo,...}")
    for name in lightning.COMMANDS:
        if name != "predict":  # `predict` is the video predictor below (LightningCLI when given --config)
            sub.add_parser(name, help=f"LightningCLI {name} (adafocus {name} --help)", add_help=False)
    for module in (predict, data, export, convert, zoo, flops, demo, benchmark):
        module.add_parser(sub)
    return parser


def _one_line_error(err: BaseException) -> BaseException | None:
    """The project's own error behind ``err`` (jsonargparse wraps errors raised while building a model)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, _ONE_LINE_ERRORS):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``adafocus ARGV``; returns the exit status. Bad files and options end in one line on
    stderr (``adafocus COMMAND: FILE: what is wrong``) and status 2, never a traceback."""
    from_command_line = argv is None
    argv = list(sys.argv[1:] if argv is None else argv)
    command = argv[0] if argv else ""
    try:
        if command in lightning.COMMANDS and (command != "predict" or predict.is_lightning_predict(argv[1:])):
            return lightning.run(argv, from_command_line=from_command_line)
        args = build_parser().parse_args(argv)
        return int(args.func(args) or 0)
    except Exception as err:
        own = _one_line_error(err)
        if own is None:
            raise
        print(f"adafocus {command}: {own}", file=sys.stderr)
        return 2
