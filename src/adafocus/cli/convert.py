"""``adafocus convert-official``: an official AdaFocus V1, AdaFocusV2 or Uni-AdaFocus checkpoint to a model file."""

from __future__ import annotations

import argparse
from typing import Any

from ..errors import UsageError
from .predict import TRUST_HELP


def _frame_order(text: str | None) -> str | list[int] | None:
    if text is None or text in ("coarse_to_fine", "temporal"):
        return text
    try:
        return [int(i) for i in text.split(",")]
    except ValueError:
        raise UsageError(f"--frame-order {text!r}: use coarse_to_fine, temporal or comma-separated indices") from None


def _run(args: argparse.Namespace) -> int:
    from ..interop.official import convert_official_checkpoint, load_official_checkpoint, save_converted
    from ..interop.official_tsm import convert_official_tsm_checkpoint, is_official_tsm
    from ..interop.official_uni import convert_official_uni_checkpoint, is_official_uni
    from ..interop.official_v2 import convert_official_v2_checkpoint, is_official_v2
    from ..interop.official_v2_tsm import convert_official_v2_tsm_checkpoint, is_official_v2_tsm

    ckpt = load_official_checkpoint(args.checkpoint, trust=args.trust_checkpoint)
    tsm = is_official_v2_tsm(ckpt)  # before is_official_v2: both have policy_stn.* keys
    v2 = tsm or is_official_v2(ckpt)
    uni = not v2 and is_official_uni(ckpt)
    sth = not v2 and not uni and is_official_tsm(ckpt)  # V1 Sth-Sth: focuser.net.base_model.*
    if tsm:
        res = convert_official_v2_tsm_checkpoint(ckpt, patch_size=args.patch_size, input_size=args.input_size,
                                                 source=str(args.checkpoint))  # fmt: skip
    elif uni:
        res = convert_official_uni_checkpoint(ckpt, patch_size=args.patch_size, input_size=args.input_size,
                                              num_segments=args.num_segments, min_side=args.min_side,
                                              source=str(args.checkpoint))  # fmt: skip
    elif v2:  # read once; V1 files are converted from the path, as before (read again)
        res = convert_official_v2_checkpoint(ckpt, patch_size=args.patch_size, input_size=args.input_size,
                                             frame_order=_frame_order(args.frame_order),
                                             source=str(args.checkpoint))  # fmt: skip
    elif sth:
        res = convert_official_tsm_checkpoint(ckpt, patch_size=args.patch_size, input_size=args.input_size,
                                              source=str(args.checkpoint))  # fmt: skip
    else:
        del ckpt
        allow = ["policy."] if args.allow_missing_policy else []
        res = convert_official_checkpoint(args.checkpoint, patch_size=args.patch_size,
                                          input_size=args.input_size or 224, policy_copy=args.policy_copy,
                                          allow_missing=allow, trust=args.trust_checkpoint)  # fmt: skip
    save_converted(res, args.out, source=str(args.checkpoint))
    print(f"converted {len(res.mapped)} tensors from {args.checkpoint} -> {args.out}")
    print(f"config: {res.config}")
    if res.dropped:
        groups = sorted({k.rsplit(".", 1 if v2 or uni or sth else 2)[0] for k in res.dropped})
        what = "unused official heads" if v2 or uni or sth else "stage-0 heads / unused policy copy"
        print(f"dropped {len(res.dropped)} ({what}): {groups}")
    if res.missing:
        print(f"left at initialisation ({len(res.missing)}): {sorted({k.split('.')[0] for k in res.missing})}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("convert-official", help="convert an official AdaFocus V1 / V2 / Uni checkpoint (.pth.tar)")
    p.add_argument("checkpoint", help="official checkpoint file (read with weights_only and an allow-list)")
    p.add_argument("--out", required=True, help="model file to write (load with adafocus.load_model)")
    p.add_argument("--patch-size", type=int, default=None, help="P of the official run (not stored in weights)")
    p.add_argument("--input-size", type=int, default=None, help="frame side of the official run (default 224)")
    p.add_argument("--policy-copy", choices=["old", "new"], default="old", help="PPO.policy_old (acts) or PPO.policy")
    p.add_argument("--allow-missing-policy", action="store_true", help="stage-I checkpoints without a policy")
    p.add_argument("--frame-order", default=None, help="AdaFocusV2 files: coarse_to_fine (official --sample, the "
                   "default), temporal, or the order as comma-separated frame indices")  # fmt: skip
    p.add_argument("--num-segments", type=int, default=None, help="Uni-AdaFocus files: frames per clip of the "
                   "official run (default: the file's args, else 48)")  # fmt: skip
    p.add_argument("--min-side", type=int, default=96, help="Uni-AdaFocus files: the smallest window side in "
                   "pixels (the official code fixes 96)")  # fmt: skip
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.set_defaults(func=_run)
