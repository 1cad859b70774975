"""Inference speed of AdaFocus against its full-frame baselines: ``adafocus benchmark``.

Modelled on timm's ``benchmark.py``: random-init models, random inputs, warm-up, then the median
of repeated timed runs. For every model: GFLOPs/video (``adafocus.flops``, 1 MAC = 1 FLOP),
latency (ms/video at batch 1), throughput (videos/s at ``--batch-size``), and for AdaFocus the
measured speed-up over its matching baseline next to the FLOPs ratio (their quotient is the share
of the theoretical speed-up realised). For AdaFocus models each part (f_G, pi, crop, f_L, f_C)
is also timed on its own, on the same inputs, and f_G / f_L are timed inside the real forward (hooks):
the rest of the forward is the overhead of pi + crop + f_C.

    adafocus benchmark --threads 2                       # the paper's models on this CPU
    adafocus benchmark --models adafocus_mn2_rn50_p128 --ablate     # its baseline is added
    adafocus benchmark --device cuda --dtype bfloat16 --batch-size 64 --cuda-graphs
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import nn
from torch.utils.benchmark import Timer

from ..accelerate import infer, keep_freed_memory, prepare_for_inference
from ..accelerate.cuda_graphs import GraphedInfer
from ..accelerate.quantize import quantize_backbone, quantize_glance
from ..errors import UsageError
from ..flops import count_flops, count_macs
from ..models.base import AdaFocusBase
from ..registry import ModelEntry, architectures, get_entry


def default_models() -> list[str]:
    """The paper's architectures that have a baseline, their baselines, and ResNet-50 alone."""
    names = [a for a in architectures() if get_entry(a).baseline] + ["full_rn50"]
    return names + [b for b in dict.fromkeys(_arch(get_entry(n).baseline) for n in names if get_entry(n).baseline)
                    if b not in names]  # fmt: skip


def _arch(name: str | None) -> str | None:
    return None if name is None else name.split(".", 1)[0]


def gflops(entry: ModelEntry, model: nn.Module) -> float:
    """GFLOPs (GMACs) per video, counted on the eager, un-prepared model."""
    t = entry.preprocess.num_frames
    if isinstance(model, AdaFocusBase):
        return count_flops(model, model.global_frames or t, local_frames=t).total
    size = entry.preprocess.input_size
    model.eval()
    return count_macs(model, torch.zeros(1, t, 3, size, size)) / 1e9


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_fn(fn: Callable[[], Any], device: torch.device, warmup: int, repeats: int) -> float:
    """Mean seconds per call of ``fn()`` over ``repeats`` consecutive calls, after ``warmup``
    untimed calls (``torch.utils.benchmark.Timer``: this process's threads, CUDA synchronised;
    it adds two warm-up calls of its own)."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        timer = Timer(stmt="fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        return timer.timeit(number=max(1, repeats)).mean


def part_fns(model: nn.Module, frames: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """One closure per AdaFocus part, each on the real intermediate inputs of ``frames``."""
    b, t = frames.shape[:2]
    with torch.inference_mode():
        gin = model.glance_frames(frames)
        fmap, g = model.glance(gin)
        state = model.policy_input(fmap)

        def policy() -> torch.Tensor:
            locs = model.learned_locations(state, None, sample=False, generator=None, policy_stats=False)[0]
            return model.frame_locations(locs, t)

        locs = policy()
        patches = model.crop(frames, locs).flatten(0, 1)

        def focus() -> torch.Tensor:
            return model.local_cnn(patches).mean(dim=(-2, -1)).view(b, t, -1)

        local = focus()
    return {
        "f_G": lambda: model.glance(gin),
        "policy": policy,
        "crop": lambda: model.crop(frames, locs),
        "f_L": focus,
        "classifier": lambda: model.classify(g, local),
    }


@dataclass(frozen=True)
class Setting:
    """One combination of the inference optimisations (see :func:`adafocus.prepare_for_inference`)."""

    channels_last: bool = True
    fold_bn: bool = True
    compile: bool = False
    quantize_heads: bool = False  # int8 GRU / linear weights in pi and f_C
    quantize_glance: bool = False  # int8 f_G (adafocus.accelerate.quantize), in the baselines too
    quantize_local: bool = False  # int8 f_L / the baselines' ResNet-50 too (everything int8 but pi / f_C)
    cuda_graphs: bool = False  # each forward replayed as a CUDA graph (adafocus.accelerate.cuda_graphs)

    @property
    def label(self) -> str:
        s = ("cl" if self.channels_last else "nchw") + ("+bn" if self.fold_bn else "") + ("+cc" if self.compile else "")
        s += ("+q8" if self.quantize_heads else "") + ("+g8" if self.quantize_glance else "")
        s += "+l8" if self.quantize_local else ""
        return s + ("+cg" if self.cuda_graphs else "")


def build(name: str, args: argparse.Namespace, setting: Setting) -> tuple:
    """Build ``name``, count its FLOPs, prepare it under ``setting``: ``(row, model)``.

    With ``quantize_glance`` every model that has an f_G (AdaFocus and the MobileNet-V2 + ResNet-50
    baselines alike) gets the int8 one, calibrated on random frames (timing only: the weights are
    random as well).
    """
    entry, device = get_entry(name), torch.device(args.device)
    torch.manual_seed(0)
    model = entry.build(**({"glance_size": args.glance_size} if entry.baseline else {}))
    frames, size = entry.preprocess.num_frames, entry.preprocess.input_size
    has_glance = getattr(model, "global_cnn", None) is not None
    setting = replace(
        setting,
        quantize_heads=setting.quantize_heads and bool(entry.baseline),
        quantize_glance=setting.quantize_glance and has_glance,
    )
    row: dict[str, Any] = dict(model=name, gflops=gflops(entry, model), baseline=_arch(entry.baseline),
                               frames=frames, input_size=size, setting=setting)  # fmt: skip
    model = prepare_for_inference(
        model.to(device),
        channels_last=setting.channels_last,
        fold_bn=setting.fold_bn,
        compile=setting.compile,
        dtype=args.dtype,
        quantize_heads=setting.quantize_heads,
    )
    if setting.quantize_glance:
        quantize_glance(model, torch.randn(2, frames, 3, size, size))
    if setting.quantize_local:  # one clip's worth of inputs: TSM backbones shift over whole clips
        side = getattr(model, "patch_size", size)
        model.local_cnn = quantize_backbone(model.local_cnn, [torch.randn(frames, 3, side, side)])
    return row, model


def measure(jobs: list[tuple[dict, nn.Module]], args: argparse.Namespace, progress: Callable[[str], None]) -> None:
    """Time every job at batch 1 (``ms_per_video``) and at ``args.batch_size`` (``videos_per_s``),
    then, for the AdaFocus models, each part alone and f_G / f_L inside the forward."""
    device, dtype = torch.device(args.device), args.dtype or torch.float32
    pool = torch.cuda.graph_pool_handle() if device.type == "cuda" else None  # outputs are never read
    for row, model in jobs:
        run_ = _runner(model, row.get("setting"), pool)
        for bs in (1, args.batch_size):
            progress(f"{row['model']} {row['setting'].label}: batch {bs}")
            x = torch.randn(bs, row["frames"], 3, row["input_size"], row["input_size"], device=device, dtype=dtype)
            sec = time_fn(lambda f=run_, x=x: f(x), device, args.warmup, args.repeats)
            if bs == 1:
                row["ms_per_video"] = 1000 * sec
            if bs == args.batch_size:
                row["videos_per_s"] = bs / sec
        if args.no_breakdown or not row["baseline"] or type(model).forward is not AdaFocusBase.forward:
            continue  # the part breakdown follows the shared pipeline; Uni-AdaFocus has its own
        progress(f"{row['model']}: parts")
        x = torch.randn(1, row["frames"], 3, row["input_size"], row["input_size"], device=device, dtype=dtype)
        row["parts_ms"] = {
            k: 1000 * time_fn(fn, device, args.warmup, args.repeats) for k, fn in part_fns(model, x).items()
        }
        row["in_forward_ms"] = split_forward(model, x, device, args.warmup, args.repeats)
        row["overhead"] = row["in_forward_ms"]["other"] / row["in_forward_ms"]["forward"]


def _runner(model: nn.Module, setting: Setting | None, pool: Any = None) -> Callable[[torch.Tensor], Any]:
    """What a timed call runs: ``infer(model, x)``, or its CUDA graph replay."""
    if setting is not None and setting.cuda_graphs:
        return GraphedInfer(model, pool=pool)
    return lambda x: infer(model, x)


def split_forward(model: nn.Module, x: torch.Tensor, device: torch.device, warmup: int, repeats: int) -> dict:
    """Median ms of the whole forward and of f_G / f_L inside it (timed by hooks, same calls).

    ``other`` = forward - f_G - f_L: the policy, the crop, the classifier and the glue between them,
    which is what the overhead target is about.
    """
    spent: dict[str, float] = {}

    def hooks(name: str, net: nn.Module) -> list:
        def pre(*_):
            _sync(device)
            spent[name + "_start"] = time.perf_counter()

        def post(*_):
            _sync(device)
            spent[name] = spent.get(name, 0.0) + time.perf_counter() - spent[name + "_start"]

        return [net.register_forward_pre_hook(pre), net.register_forward_hook(post)]

    handles = hooks("f_G", model.global_cnn) + hooks("f_L", model.local_cnn)
    runs = []
    try:
        with torch.inference_mode():
            for i in range(warmup + max(1, repeats)):
                spent.clear()
                start = time.perf_counter()
                infer(model, x)
                _sync(device)
                total = time.perf_counter() - start
                if i >= warmup:
                    runs.append((total, spent.get("f_G", 0.0), spent.get("f_L", 0.0)))
    finally:
        for h in handles:
            h.remove()
    fwd, g, ell = (1000 * statistics.median(r[k] for r in runs) for k in range(3))
    rest = 1000 * statistics.median(t - a - b for t, a, b in runs)  # per run: a slow f_L in one run is not "rest"
    return {"forward": fwd, "f_G": g, "f_L": ell, "other": max(0.0, rest)}


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Speed-ups over each row's baseline (timed in the same setting) next to the FLOPs ratio;
    "realised" is their quotient (1: the FLOPs saving is all turned into time)."""
    by = {(r["model"], r["session"]): r for r in rows}
    for r in rows:
        base = by.get((r["baseline"], r["session"]))
        if base is None:
            continue
        r["flops_ratio"] = base["gflops"] / r["gflops"]
        r["speedup_bs1"] = base["ms_per_video"] / r["ms_per_video"]
        r["speedup_batch"] = r["videos_per_s"] / base["videos_per_s"]
        r["realised_bs1"] = r["speedup_bs1"] / r["flops_ratio"]
        r["realised_batch"] = r["speedup_batch"] / r["flops_ratio"]


def print_tables(rows: list[dict[str, Any]], batch_size: int, out=None) -> None:
    out = out or sys.stdout  # looked up per call: a default bound at import goes stale under capture

    def f(v: Any, spec: str) -> str:
        return format(v, spec) if isinstance(v, (int, float)) else format("-", spec[:-2].split(".")[0])

    head = (f"{'model':<26}{'setting':<14}{'GFLOPs':>8}{'ms/video':>10}{f'vid/s@{batch_size}':>11}"
            f"{'FLOPs x':>9}{'speed bs1':>10}{'real.':>7}{f'speed@{batch_size}':>10}{'real.':>7}")  # fmt: skip
    print(head, file=out)
    print("-" * len(head), file=out)
    for r in rows:
        print(f"{r['model']:<26}{_setting(r):<14}{r['gflops']:>8.3g}{r['ms_per_video']:>10.1f}"
              f"{r['videos_per_s']:>11.2f}{f(r.get('flops_ratio'), '>9.2f')}"
              f"{f(r.get('speedup_bs1'), '>10.2f')}"
              f"{f(r.get('realised_bs1'), '>7.2f')}{f(r.get('speedup_batch'), '>10.2f')}"
              f"{f(r.get('realised_batch'), '>7.2f')}", file=out)  # fmt: skip
    parts = [r for r in rows if "parts_ms" in r]
    if parts:
        names = list(parts[0]["parts_ms"])
        print("\nAdaFocus at batch 1, ms: each part timed alone | inside the forward (hooks): f_G, f_L, the rest "
              "(policy + crop + classifier + glue); overhead = rest / forward; eager calls, also in +cg settings",
              file=out)  # fmt: skip
        print(f"{'model':<26}{'setting':<14}" + "".join(f"{n:>11}" for n in names) + " |"
              f"{'forward':>9}{'f_G':>8}{'f_L':>8}{'rest':>7}{'overhead':>10}", file=out)  # fmt: skip
        for r in parts:
            ms, inner = r["parts_ms"], r["in_forward_ms"]
            cells = "".join(f"{ms[n]:>11.2f}" for n in names)
            tail = (f" |{inner['forward']:>9.1f}{inner['f_G']:>8.1f}{inner['f_L']:>8.1f}{inner['other']:>7.1f}"
                    f"{100 * r['overhead']:>9.2f}%")  # fmt: skip
            print(f"{r['model']:<26}{_setting(r):<14}{cells}{tail}", file=out)


def _setting(r: dict[str, Any]) -> str:
    return r["setting"].label


def _models(args: argparse.Namespace) -> list[str]:
    """The architectures to time, each AdaFocus model's baseline added (timed with the same settings)."""
    names = args.models.split(",") if args.models else default_models()
    known = architectures(include_tests=True)
    unknown = [n for n in names if _arch(n) not in known]
    if unknown:
        raise UsageError(f"--models: unknown {unknown}; choose from {known}")
    for n in list(names):
        b = _arch(get_entry(n).baseline)
        if b and b not in names:
            names.append(b)
    return names


def _settings(args: argparse.Namespace) -> list[Setting]:
    """The one setting the flags describe, or with ``--ablate`` each optimisation added in turn."""
    if args.cuda_graphs and not args.device.startswith("cuda"):
        raise UsageError("--cuda-graphs needs --device cuda")
    q8, q_glance = args.quantize_heads, args.quantize_glance or args.quantize_local
    if not args.ablate:
        return [Setting(args.channels_last, args.fold_bn, args.compile, q8, q_glance, args.quantize_local,
                        args.cuda_graphs)]  # fmt: skip
    settings = [Setting(False, False), Setting(True, False), Setting(True, True)]
    settings += [Setting(quantize_heads=True)] if q8 else []
    settings += [Setting(quantize_heads=q8, quantize_glance=True)] if q_glance else []
    settings += [Setting(quantize_heads=q8, quantize_glance=True, quantize_local=True)] if args.quantize_local else []
    settings += [Setting(compile=True, quantize_heads=q8)] if args.compile else []
    return settings + ([Setting(cuda_graphs=True)] if args.cuda_graphs else [])


def run(args: argparse.Namespace) -> int:
    """``adafocus benchmark``: time the models under each setting, print (or ``--json``) the tables."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: CUDA is not available here")
    names, settings = _models(args), _settings(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.compile:  # every model's backbones share a few forward code objects; each shape is a new entry
        import torch._dynamo as dynamo

        for limit in ("recompile_limit", "cache_size_limit"):
            if hasattr(dynamo.config, limit):
                setattr(dynamo.config, limit, max(getattr(dynamo.config, limit), 256))
    args.allocator = "glibc, freed memory kept" if args.keep_freed_memory and keep_freed_memory() else "system"
    args.dtype = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[args.dtype]

    def progress(msg: str) -> None:
        if not args.json:
            print(f"[benchmark] {msg}", file=sys.stderr, flush=True)

    rows = []
    for session, setting in enumerate(settings):
        jobs = [build(n, args, setting) for n in names]
        measure(jobs, args, progress)
        rows += [dict(row, session=session) for row, _ in jobs]
        del jobs
    add_ratios(rows)
    if args.plot:
        from .plot import realised_chart

        title = (f"realised share of the FLOPs saving, {args.device}, {torch.get_num_threads()} threads "
                 f"(solid: batch 1, hatched: batch {args.batch_size})")  # fmt: skip
        progress(f"wrote {realised_chart(rows, args.plot, title, device=args.device)}")
    if args.json:
        print(json.dumps([dict(r, setting=r["setting"].__dict__) for r in rows], indent=2))
        return 0
    print(f"device={args.device} threads={torch.get_num_threads()} dtype={args.dtype or torch.float32} "
          f"warmup={args.warmup} repeats={args.repeats} (mean per call, torch.utils.benchmark); "
          f"glance_size={args.glance_size or 'input'}; allocator: {args.allocator}; "
          "settings apply to baselines too")  # fmt: skip
    print_tables(rows, args.batch_size)
    return 0
