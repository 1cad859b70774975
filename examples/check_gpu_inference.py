"""Check that the fast inference path gives the CPU's answers on a GPU (fp32, bf16 and fp16).

For AdaFocus (P=128) and AdaFocus-TSM-144, random weights, random clips: the reference is the
eager float32 model on the CPU; the GPU runs ``prepare_for_inference`` (channels_last, BN folding,
optionally bf16 / fp16) and ``infer``. Printed per model and precision:

* ``actions``: share of pi's greedy patch choices equal to the CPU's (bf16 can flip near-ties);
* ``rel.err``: ||logits - ref|| / ||ref||, with the CPU's patch locations forced, so that the
  figure is the numeric error of the backbones and heads alone.

    python examples/check_gpu_inference.py            # needs CUDA; exits 2 without it
    python examples/check_gpu_inference.py cpu        # the same path on the CPU (a dry run)
"""

from __future__ import annotations

import copy
import sys

import torch

from adafocus import AdaFocus, AdaFocusTSM
from adafocus.accelerate import infer, prepare_for_inference


def check(name: str, model: torch.nn.Module, frames: torch.Tensor, device: str) -> list[str]:
    model.eval()
    ref = infer(model, frames)
    rows = []
    for dtype in (torch.float32, torch.bfloat16) + ((torch.float16,) if device == "cuda" else ()):
        fast = prepare_for_inference(copy.deepcopy(model).to(device), dtype=None if dtype == torch.float32 else dtype)
        x = frames.to(device)
        out = infer(fast, x)
        same = (out.offsets.cpu() == ref.offsets).all(-1).float().mean().item()
        forced = infer(fast, x, locations=ref.locations.to(device, dtype))
        a, b = forced.logits.float().cpu(), ref.logits
        err = ((a - b).norm() / b.norm()).item()
        if not torch.isfinite(a).all():
            err = float("nan")
        rows.append(f"{name:<18}{str(dtype).split('.')[-1]:<10}{same:>9.3f}{err:>11.2e}")
    return rows


def main(device: str = "cuda") -> int:
    if device == "cuda" and not torch.cuda.is_available():
        print("CUDA is not available here", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 here means fp32, so the error is rounding only
    torch.backends.cudnn.allow_tf32 = False
    torch.manual_seed(0)
    rows = [f"{'model':<18}{'dtype':<10}{'actions':>9}{'rel.err':>11}"]
    rows += check("adafocus_p128", AdaFocus(200, patch_size=128), torch.randn(4, 16, 3, 224, 224), device)
    rows += check("adafocus_tsm_144", AdaFocusTSM(174, patch_size=144), torch.randn(4, 12, 3, 224, 224), device)
    print(torch.cuda.get_device_name() if device == "cuda" else device, "torch", torch.__version__)
    print("\n".join(rows))
    bad = [r for r in rows[1:] if "nan" in r]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:2]))
