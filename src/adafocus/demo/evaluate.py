"""Held-out evaluation for the demo: accuracy, online accuracy and GFLOPs per video, per policy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..flops import count_flops, count_macs
from ..models.base import AdaFocusBase


@dataclass
class Row:
    """One line of the results table."""

    method: str
    policy: str
    top1: float  # % after all T frames
    gflops: float  # per video, 1 multiply-add = 1 FLOP
    online: list[float] = field(default_factory=list)  # % after frames 1..T
    keep_ratio: float = 1.0  # share of frames whose patch went through f_L
    patch_size: int | None = None
    latency_ms: float | None = None  # measured per streamed video on this CPU (early-exit rows)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _progress(iterable, desc: str, total: int | None, show: bool = True):
    return tqdm(iterable, desc=desc, total=total, leave=False, disable=not show)


@torch.inference_mode()
def evaluate_adafocus(
    model: AdaFocusBase,
    loader,
    policy: str,
    *,
    method: str,
    seed: int = 0,
    progress: bool = True,
    flops_model: AdaFocusBase | None = None,
) -> Row:
    """Top-1 and online top-1 of ``model`` with ``policy`` over ``loader``; GFLOPs at the measured keep ratio.

    ``flops_model``: the float model to count FLOPs on when ``model`` has int8 parts (same multiply-adds).
    """
    model.eval()
    gen = torch.Generator().manual_seed(seed)
    hits, kept, n = None, 0.0, 0
    for batch in _progress(loader, f"eval {method} / {policy}", len(loader), progress):
        out = model(batch["frames"], policy=policy, sample=False, generator=gen)
        correct = (out.logits.argmax(-1) == batch["label"].unsqueeze(1)).sum(0).double()  # (T,)
        hits = correct if hits is None else hits + correct
        kept += float(out.keep.sum()) if out.keep is not None else float(out.logits.shape[0] * out.logits.shape[1])
        n += len(batch["label"])
    t = hits.numel()
    keep_ratio = kept / (n * t)
    flops = count_flops(flops_model or model, t, keep_ratio=keep_ratio).total
    online = (100 * hits / n).tolist()
    return Row(method, policy, online[-1], flops, online, keep_ratio, model.patch_size)


@torch.inference_mode()
def evaluate_full_frames(local_cnn: nn.Module, head: nn.Module, loader, *, method: str, progress: bool = True) -> Row:
    """The full-frame baseline: f_L on every whole frame, frame-averaged logits (stage 0's head)."""
    local_cnn.eval()
    head.eval()
    hits, n, shape = None, 0, None
    for batch in _progress(loader, f"eval {method}", len(loader), progress):
        frames = batch["frames"]
        b, t = frames.shape[:2]
        shape = frames.shape[2:]
        logits = head(local_cnn(frames.flatten(0, 1)).mean((-2, -1))).view(b, t, -1)
        running = logits.cumsum(1) / torch.arange(1, t + 1).view(1, t, 1)  # online: average so far
        correct = (running.argmax(-1) == batch["label"].unsqueeze(1)).sum(0).double()
        hits = correct if hits is None else hits + correct
        n += b
    t = hits.numel()
    per_frame = count_macs(lambda x: head(local_cnn(x).mean((-2, -1))), torch.zeros(1, *shape))
    online = (100 * hits / n).tolist()
    return Row(method, "full frames", online[-1], per_frame * t / 1e9, online, 1.0, None)


def evaluate_early_exit(
    model,
    calibration_loader,
    test_loader,
    budgets: tuple[float, ...],
    sweep_budgets: tuple[float, ...],
    *,
    latency_clips: int,
    method: str,
    progress: bool = True,
) -> tuple[list[Row], list[dict[str, Any]]]:
    """Early exit fitted on ``calibration_loader`` at each budget (a share of the model's full GFLOPs),
    scored on ``test_loader``: table rows for ``budgets`` and the points of the sweep, each with the
    latency of streaming ``latency_clips`` test videos one by one, stopping at the exit."""
    from .. import early_exit as ee

    calib_logits, _ = ee.collect_logits(model, calibration_loader, progress=progress)
    test_logits, labels = ee.collect_logits(model, test_loader, progress=progress)
    gflops = ee.step_gflops(model, test_logits.shape[1])
    full = float(gflops[-1])
    clips = torch.cat([b["frames"] for b in test_loader])[:latency_clips]
    rows, sweep = [], []
    for share in _progress(sorted(set(budgets) | set(sweep_budgets)), "early-exit budgets", None, progress):
        policy = ee.fit_exit_policy(calib_logits, gflops, share * full)
        top1, spent, steps = ee.exit_accuracy(test_logits, labels, policy)
        latency = ee.measure_latency_ms(model, clips, policy)
        sweep.append(dict(budget_share=share, gflops=spent, share_of_full=spent / full, top1=top1,
                          mean_frames=float(steps.double().mean()) + 1, latency_ms=latency,
                          thresholds=policy.as_dict()["thresholds"]))  # fmt: skip
        if share in budgets:
            rows.append(Row(f"{method} + early exit ({share:.0%} budget)", "learned", top1, spent, [], 1.0,
                            model.patch_size, latency))  # fmt: skip
    return rows, sweep
