"""``adafocus zoo``: the registry's named configurations with the paper's results."""

from __future__ import annotations

import argparse
from typing import Any

COLUMNS = ["name", "method", "frames", "patch", "backbones", "gflops", "paper_gflops", "metric", "paper_score", "score"]


def _run(args: argparse.Namespace) -> int:
    from ..registry import zoo_rows

    rows = [r for r in zoo_rows(include_tests=args.all) if args.method in (None, r["method"])]
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    table = [[str("—" if r[c] is None else r[c]) for c in COLUMNS] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(COLUMNS)]
    print("  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths)))
    print("  ".join("-" * w for w in widths))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    print("\nGFLOPs per video (1 multiply-add = 1 FLOP); score: this implementation's, once measured.")
    print("Train one: its `fit` command (adafocus zoo --json); weights are not bundled: "
          "adafocus.create_model(name, pretrained_path=FILE)")  # fmt: skip
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("zoo", help="list the named configurations (registry) with the paper's results")
    p.add_argument("--json", action="store_true", help="print rows as JSON (with preprocessing and fit command)")
    p.add_argument("--method", default=None, help="only this method (adafocus, full_frame)")
    p.add_argument("--all", action="store_true", help="include the tiny test_* stand-ins")
    p.set_defaults(func=_run)
