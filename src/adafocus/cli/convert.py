"""``adafocus convert-official``: an official AdaFocus V1 checkpoint to an adafocus model file."""

from __future__ import annotations

import argparse
from typing import Any

from .predict import TRUST_HELP


def _run(args: argparse.Namespace) -> int:
    from ..interop.official import convert_official_checkpoint, save_converted

    allow = ["policy."] if args.allow_missing_policy else []
    res = convert_official_checkpoint(args.checkpoint, patch_size=args.patch_size, input_size=args.input_size,
                                      policy_copy=args.policy_copy, allow_missing=allow,
                                      trust=args.trust_checkpoint)  # fmt: skip
    save_converted(res, args.out, source=str(args.checkpoint))
    print(f"converted {len(res.mapped)} tensors from {args.checkpoint} -> {args.out}")
    print(f"config: {res.config}")
    if res.dropped:
        groups = sorted({k.rsplit(".", 2)[0] for k in res.dropped})
        print(f"dropped {len(res.dropped)} (stage-0 heads / unused policy copy): {groups}")
    if res.missing:
        print(f"left at initialisation ({len(res.missing)}): {sorted({k.split('.')[0] for k in res.missing})}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("convert-official", help="convert an official AdaFocus V1 checkpoint (.pth.tar)")
    p.add_argument("checkpoint", help="official checkpoint file (read with weights_only and an allow-list)")
    p.add_argument("--out", required=True, help="model file to write (load with adafocus.load_model)")
    p.add_argument("--patch-size", type=int, default=None, help="P of the official run (not stored in weights)")
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--policy-copy", choices=["old", "new"], default="old", help="PPO.policy_old (acts) or PPO.policy")
    p.add_argument("--allow-missing-policy", action="store_true", help="stage-I checkpoints without a policy")
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_run)
