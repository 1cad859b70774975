"""``adafocus benchmark``: inference latency and throughput against the full-frame baselines."""

from __future__ import annotations

import argparse
from typing import Any


def _run(args: argparse.Namespace) -> int:
    from ..bench.inference import run

    return run(args)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("benchmark", help="inference latency/throughput vs the full-frame baselines")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    p.add_argument("--batch-size", type=int, default=8, help="batch for the throughput measurement")
    p.add_argument(
        "--models",
        default="",
        help="comma-separated architectures of the registry (adafocus zoo --all; default: the paper's and their "
        "baselines; test_adafocus / test_adafocus_tsm for a quick check)",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed consecutive calls per measurement (their mean)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls before (torch.utils.benchmark adds 2)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--compile", action="store_true", help="torch.compile each backbone (slow to compile)")
    p.add_argument("--quantize-heads", action="store_true", help="int8 GRU/linear weights in pi and f_C (CPU)")
    p.add_argument(
        "--quantize-glance",
        action="store_true",
        help="int8 f_G (static, calibrated) in AdaFocus and the baselines alike (CPU)",
    )
    p.add_argument(
        "--quantize-local",
        action="store_true",
        help="int8 f_L and the baselines' ResNet-50 as well (implies --quantize-glance; CPU)",
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        help="replay each forward as a CUDA graph (adafocus.accelerate.cuda_graphs; --device cuda; the per-part "
        "breakdown stays eager)",
    )
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32")
    p.add_argument("--glance-size", type=int, default=None, help="resize frames for f_G (changes its FLOPs)")
    p.add_argument("--ablate", action="store_true", help="rows without/with channels_last, BN folding (, compile)")
    p.add_argument("--no-breakdown", action="store_true", help="skip the per-part timing of AdaFocus")
    p.add_argument(
        "--keep-freed-memory",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="glibc keeps freed memory instead of page-faulting big activations on every call (default on)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--plot", metavar="PNG", help="bar chart of the realised speed-up per model and setting")
    p.set_defaults(func=_run)
