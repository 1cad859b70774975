"""``adafocus zoo``: the named AdaFocus configurations with the paper's results."""

from __future__ import annotations

import argparse
from typing import Any


def _run(args: argparse.Namespace) -> int:
    from ..zoo import zoo_rows

    rows = zoo_rows()
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
        return 0
    cols = ["name", "dataset", "frames", "patch", "backbones", "gflops", "paper_gflops", "metric", "paper_score"]
    cols += ["config"]
    table = [[str("—" if r[c] is None else r[c]) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    print("  ".join("-" * w for w in widths))
    for t in table:
        print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
    print("\nGFLOPs per video (1 multiply-add = 1 FLOP); weights are not bundled: create_model(name, weights=PATH)")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("zoo", help="list the named AdaFocus configurations with the paper's results")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.set_defaults(func=_run)
