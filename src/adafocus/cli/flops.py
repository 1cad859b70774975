"""``adafocus flops``: GFLOPs per video, per component (the paper's configurations by default)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def _run(args: argparse.Namespace) -> int:
    from ..flops import count_flops, count_macs, paper_table

    if not args.json:
        print("Convention: 1 multiply-add = 1 FLOP (as in the paper); GFLOPs per video, counted with")
        print("torch.utils.flop_counter on the real modules (its 2-per-MAC figures halved).\n")
    if args.custom:
        import torch

        from ..models.adafocus import AdaFocus

        model = AdaFocus(
            num_classes=args.num_classes,
            global_backbone=args.global_backbone,
            local_backbone=args.local_backbone,
            patch_size=args.patch_size,
            input_size=args.input_size,
            grid_size=args.grid_size,
            classifier=args.classifier,
        ).eval()
        br = count_flops(model, args.frames)
        rows = [dict(name=f"custom T={args.frames} P={args.patch_size}", **br.as_dict())]
        if args.verify:
            x = torch.zeros(1, args.frames, 3, args.input_size, args.input_size)
            whole = count_macs(model, x) / 1e9
            print(f"verify: whole offline forward = {whole:.4f} GFLOPs, components sum = {br.total:.4f}")
            if abs(whole - br.total) > 1e-9 * max(1.0, whole):
                print("MISMATCH between the whole forward and the per-component count", file=sys.stderr)
                return 1
    else:
        rows = paper_table()
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    return _print_table(rows)


def _print_table(rows: list[dict[str, Any]]) -> int:
    cols = ["global_cnn", "local_cnn", "policy", "classifier", "total"]
    head = f"{'configuration':<32}" + "".join(f"{c:>11}" for c in cols)
    paper = "paper" in rows[0]
    if paper:
        head += f"{'paper':>9}{'diff':>9}"
    print(head)
    print("-" * len(head))
    worst = 0.0
    for r in rows:
        line = f"{r['name']:<32}" + "".join(f"{r[c]:>11.3f}" for c in cols)
        if paper:
            worst = max(worst, abs(r["rel_diff"]))
            line += f"{r['paper']:>9.1f}{100 * r['rel_diff']:>+8.2f}%"
        print(line)
    if paper:
        print(f"\nlargest relative difference to the paper: {100 * worst:.2f}% (tolerance 1%)")
        return 0 if worst <= 0.01 else 1
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("flops", help="GFLOPs per video, per component (paper configurations by default)")
    p.add_argument("--custom", action="store_true", help="count the model given by the options below instead")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--patch-size", type=int, default=128)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--grid-size", type=int, default=7)
    p.add_argument("--num-classes", type=int, default=200)
    p.add_argument("--global-backbone", default="mobilenet_v2")
    p.add_argument("--local-backbone", default="resnet50")
    p.add_argument("--classifier", choices=["gru", "fc", "fc_probs"], default="gru")
    p.add_argument("--verify", action="store_true", help="with --custom: also count one whole offline forward")
    p.add_argument("--json", action="store_true", help="print rows as JSON")
    p.set_defaults(func=_run)
