"""Early exit to a GFLOPs budget, for the family members that predict after every frame.

A video stops after step s as soon as the confidence of its prediction (the top logit, as in the
official code, or the top softmax probability) reaches ``thresholds[s]``; the last step always
answers. The thresholds are fitted on calibration predictions (the official code uses the training
set) the way AdaFocusV2+ and Uni-AdaFocus do, after MSDNet's budgeted classification: a share
``p_s ∝ q**s`` of the videos is made to exit at step s, the most confident ones first. The official
scripts try a fixed list of q; here q is found by bisection so that the mean GFLOPs per video
meets the budget.

Usage::

    logits, labels = collect_logits(model, calibration_loader)   # (N, S, K) every step's prediction
    policy = fit_exit_policy(logits, step_gflops(model, T), budget=2.0)
    top1, gflops, steps = exit_accuracy(test_logits, test_labels, policy)
    logits, frames_used, offsets = stream_with_exit(model, clip, policy)   # stops computing at the exit
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .models.base import AdaFocusBase


@dataclass
class ExitPolicy:
    """Fitted thresholds and what they cost on the data they were fitted on."""

    thresholds: torch.Tensor  # (S,) exit after step s when confidence >= thresholds[s]
    step_gflops: torch.Tensor  # (S,) GFLOPs spent by a video that stops after step s
    expected_gflops: float  # mean GFLOPs per video on the fitting data
    exit_shares: list[float]  # share of the fitting videos exiting after each step
    confidence: str = "max_logit"  # the measure the thresholds apply to (:func:`confidences`)

    def as_dict(self) -> dict[str, object]:
        return {
            "thresholds": [round(float(t), 6) for t in self.thresholds],
            "step_gflops": [round(float(g), 6) for g in self.step_gflops],
            "expected_gflops": round(self.expected_gflops, 6),
            "exit_shares": [round(s, 4) for s in self.exit_shares],
            "confidence": self.confidence,
        }


def confidences(logits: torch.Tensor, kind: str = "max_logit") -> torch.Tensor:
    """``(N, S)`` confidence of every step's prediction from ``(N, S, K)`` logits: the top raw logit
    (``"max_logit"``, the official AdaFocusV2 / Uni-AdaFocus measure) or the top softmax
    probability (``"max_prob"``, MSDNet's)."""
    if logits.dim() != 3:
        raise ValueError(f"logits must be (N, S, K), got {tuple(logits.shape)}")
    if kind == "max_logit":
        return logits.float().amax(-1)
    if kind == "max_prob":
        return torch.softmax(logits.float(), -1).amax(-1)
    raise ValueError(f"confidence must be 'max_logit' or 'max_prob', got {kind!r}")


def step_gflops(model: AdaFocusBase, num_frames: int) -> torch.Tensor:
    """``(T,)`` GFLOPs per video spent up to and including step t (f_G, pi, f_L, f_C all per frame);
    for Uni-AdaFocus the exits are the glance (f_G on every glanced frame, both policies) and then each
    focused frame.

    Raises ``ValueError`` for a model that predicts once per video (one decision, e.g. AdaFocus-TSM).
    """
    from .flops import count_flops, exit_gflops

    if hasattr(model, "temporal_policy"):  # Uni-AdaFocus: exits after the glance, then per focused frame
        return exit_gflops(model)
    if model.decisions(num_frames) != num_frames:
        raise ValueError(f"{type(model).__name__} predicts once per video: it has no steps to exit after")
    total = count_flops(model, num_frames).total
    return total * torch.arange(1, num_frames + 1, dtype=torch.float64) / num_frames


def exit_steps(conf: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """``(N,)`` 0-based step after which each video stops: the first with ``conf >= threshold``."""
    if conf.dim() != 2 or conf.shape[1] != thresholds.numel():
        raise ValueError(f"confidences {tuple(conf.shape)} do not match {thresholds.numel()} thresholds")
    hit = conf >= thresholds.to(conf).view(1, -1)
    hit[:, -1] = True
    return hit.float().argmax(1)  # argmax returns the first maximal index


def _thresholds_for(conf: torch.Tensor, shares: torch.Tensor) -> torch.Tensor:
    """Thresholds that make ``shares[s]`` of the videos exit after step s, most confident first."""
    n, s = conf.shape
    thr = torch.full((s,), float("inf"), dtype=conf.dtype)
    thr[-1] = float("-inf")
    alive = torch.ones(n, dtype=torch.bool)
    quota = torch.round(shares * n).long()
    for step in range(s - 1):
        k = int(min(quota[: step + 1].sum() - (n - int(alive.sum())), int(alive.sum())))
        if k <= 0:
            continue
        c = torch.sort(conf[alive, step], descending=True).values
        # halfway to the next video's confidence: float noise in a re-run cannot flip the k-th
        t = (c[k - 1] + c[k]) / 2 if k < len(c) else c[k - 1]
        thr[step] = t
        alive &= ~(conf[:, step] >= t)
    return thr


def _cost(conf: torch.Tensor, thr: torch.Tensor, gflops: torch.Tensor) -> tuple[float, torch.Tensor]:
    steps = exit_steps(conf, thr)
    return float(gflops[steps].mean()), steps


def fit_exit_policy(
    logits: torch.Tensor, gflops: torch.Tensor, budget: float, *, confidence: str = "max_logit", iterations: int = 60
) -> ExitPolicy:
    """Thresholds whose mean GFLOPs on ``conf`` is at most ``budget`` and as close to it as the search finds.

    Args:
        logits: ``(N, S, K)`` every step's logits on a calibration set (:func:`collect_logits`).
        gflops: ``(S,)`` cumulative GFLOPs per step (:func:`step_gflops`).
        budget: target mean GFLOPs per video.
        confidence: the measure thresholded (:func:`confidences`), recorded in the policy.
    """
    conf = confidences(logits.detach(), confidence).double().cpu()
    gflops = torch.as_tensor(gflops, dtype=torch.float64).cpu()
    n, s = conf.shape
    if gflops.shape != (s,):
        raise ValueError(f"gflops must have one entry per step ({s}), got {tuple(gflops.shape)}")
    if budget < float(gflops[0]):
        raise ValueError(f"budget {budget:g} GFLOPs is below one step's cost, {float(gflops[0]):.4g} GFLOPs")
    steps = torch.arange(s, dtype=torch.float64)
    best: tuple[float, torch.Tensor] | None = None
    if budget >= float(gflops[-1]):
        thr = torch.full((s,), float("inf"), dtype=torch.float64)
        thr[-1] = float("-inf")
        best = (float(gflops[-1]), thr)
    else:
        lo, hi = -12.0, 12.0  # log q: q -> 0 exits everyone at step 0, q -> inf nobody before the end
        for _ in range(iterations):
            mid = (lo + hi) / 2
            shares = torch.softmax(mid * steps, 0)
            thr = _thresholds_for(conf, shares)
            cost, _ = _cost(conf, thr, gflops)
            if cost <= budget + 1e-12:
                lo = mid
                if best is None or cost > best[0]:
                    best = (cost, thr)
            else:
                hi = mid
        if best is None:  # every video exiting at step 0 always meets a budget >= gflops[0]
            thr = torch.full((s,), float("-inf"), dtype=torch.float64)
            best = (float(gflops[0]), thr)
    cost, thr = best
    exits = exit_steps(conf, thr)
    shares = torch.bincount(exits, minlength=s).double() / n
    return ExitPolicy(thr.float(), gflops.float(), cost, shares.tolist(), confidence)


@torch.inference_mode()
def collect_logits(model: AdaFocusBase, loader, *, progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Every step's logits ``(N, S, K)`` and the labels ``(N,)`` of ``loader``'s clips (learned patches, eval mode)."""
    from tqdm.auto import tqdm

    model.eval()
    logits, labels = [], []
    for batch in tqdm(loader, desc="per-step logits", leave=False, disable=not progress):
        logits.append(model.exit_logits(model(batch["frames"], sample=False, policy_stats=False).logits).float())
        labels.append(batch["label"])
    return torch.cat(logits), torch.cat(labels)


def exit_accuracy(logits: torch.Tensor, labels: torch.Tensor, policy: ExitPolicy) -> tuple[float, float, torch.Tensor]:
    """``(top-1 %, mean GFLOPs per video, exit steps (N,))`` of ``policy`` on per-step ``logits``."""
    steps = exit_steps(confidences(logits, policy.confidence), policy.thresholds)
    pred = logits[torch.arange(len(steps)), steps].argmax(-1)
    top1 = 100.0 * float((pred == labels).double().mean())
    return top1, float(policy.step_gflops.double()[steps].mean()), steps


@torch.inference_mode()
def stream_with_exit(
    model: AdaFocusBase, clip: torch.Tensor, policy: ExitPolicy
) -> tuple[torch.Tensor, int, torch.Tensor]:
    """Online inference of one clip ``(T, 3, H, W)`` that stops computing at the exit:
    ``(logits (K,), frames processed, their patch offsets (n, 2))``. Frames go in the model's order
    (:meth:`~adafocus.models.base.AdaFocusBase.order_frames`): the offsets follow it."""
    frames = model.order_frames(clip.unsqueeze(0))[0]
    state, offsets = model.init_state(), []
    for t in range(frames.shape[0]):
        out, state = model.step(frames[t : t + 1], state, sample=False)
        offsets.append(out.offset[0])
        if float(confidences(out.logits.unsqueeze(1), policy.confidence)[0, 0]) >= float(policy.thresholds[t]):
            break
    return out.logits[0], t + 1, torch.stack(offsets)


def measure_latency_ms(model: AdaFocusBase, clips: torch.Tensor, policy: ExitPolicy) -> float:
    """Mean wall time (ms) of :func:`stream_with_exit` per clip of ``clips`` ``(N, T, 3, H, W)`` on this
    machine, after one warm-up clip; a measurement to print, not a figure to assert."""
    import time

    model.eval()
    stream_with_exit(model, clips[0], policy)
    start = time.perf_counter()
    for clip in clips:
        stream_with_exit(model, clip, policy)
    return 1e3 * (time.perf_counter() - start) / len(clips)
