"""``adafocus demo``: the whole method trained and judged on synthetic videos, on the CPU."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="train and judge AdaFocus end to end on synthetic videos (CPU, minutes)")
    p.add_argument("--out", default="adafocus_demo", help="output folder (default: ./adafocus_demo)")
    p.add_argument("--seed", type=int, default=0, help="fixes the data, the initialisations and the sampling")
    p.add_argument("--fast", action="store_true", help="a smaller, shorter run (used by the test suite)")
    p.add_argument(
        "--configs", default=None, help="folder with stage0..3.yaml (default: the demo configs shipped with adafocus)"
    )
    p.add_argument("--threads", type=int, default=None, help="torch compute threads (default: cores - 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (stage lines still print)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..demo.run import run_demo

    run_demo(
        args.out,
        seed=args.seed,
        fast=args.fast,
        configs=args.configs,
        progress=not args.no_progress,
        threads=args.threads,
    )
    return 0
