"""FLOPs accounting per video, counted on the real modules with ``torch.utils.flop_counter``.

Convention (the paper's): **one multiply-add = one FLOP**. torch's counter reports two FLOPs per
multiply-add, so its totals are halved. Element-wise work (activations, pooling, the crop gather,
softmax) is not counted, as in the paper and torch's counter.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .models.base import AdaFocusBase


def count_macs(fn, *args: Any, **kwargs: Any) -> int:
    """Multiply-adds performed by ``fn(*args, **kwargs)`` (no gradients recorded)."""
    return _count(fn, *args, **kwargs)[0]


def _count(fn, *args: Any, **kwargs: Any) -> tuple[int, Any]:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = fn(*args, **kwargs)
    return counter.get_total_flops() // 2, out


@dataclass
class FlopsBreakdown:
    """GMACs (= paper GFLOPs) per video, per component."""

    global_cnn: float
    local_cnn: float
    policy: float
    classifier: float
    global_frames: int
    local_frames: int
    policy_steps: int
    local_frames_run: float

    @property
    def total(self) -> float:
        return self.global_cnn + self.local_cnn + self.policy + self.classifier

    def as_dict(self) -> dict[str, float]:
        return {**asdict(self), "total": self.total}


def count_flops(
    model: AdaFocusBase,
    num_frames: int = 16,
    *,
    local_frames: int | None = None,
    keep_ratio: float = 1.0,
) -> FlopsBreakdown:
    """Per-component GFLOPs of one video (multiply-adds, see module doc).

    Args:
        model: a member of the AdaFocus family (its modules are run on zero inputs of batch 1).
        num_frames: frames seen by f_G (and by f_L unless ``local_frames`` is given).
        local_frames: frames whose patch goes through f_L (12 for AdaFocus-TSM, 8 for its f_G).
        keep_ratio: fraction of patches actually processed by f_L (AdaFocus+ skips the rest).
    """
    quantized = [n for n, m in model.named_modules() if ".quantized" in type(m).__module__]
    if quantized:  # int8 kernels are invisible to FlopCounterMode: the count would silently drop them
        raise ValueError(f"count_flops: {quantized[0]!r} is int8-quantized; count FLOPs on the float model")
    if hasattr(model, "temporal_policy"):
        return _count_uni(model)
    t_g = num_frames
    t_l = local_frames or num_frames
    s, p = model.glance_size, model.patch_size
    was_training = model.training
    model.eval()
    try:
        # temporal-shift backbones mix the frames of a clip: they run on one clip, divided per frame
        n_g, n_l = model.global_frames or 1, model.local_frames or 1
        g, fmap = _count(model.global_cnn, torch.zeros(n_g, 3, s, s))
        ell = count_macs(model.local_cnn, torch.zeros(n_l, 3, p, p)) / n_l
        state = model.policy_input(fmap.unsqueeze(0))  # (1, S', ...): pi's states for these frames
        per_decision = count_macs(model.policy, state) / state.shape[1]
        if model.skip_policy is not None:  # AdaFocus+: pi' runs on every frame
            per_decision += count_macs(model.skip_policy, state) / state.shape[1]
        steps = model.decisions(t_l)
        d_g, d_l = model.global_cnn.num_features, model.local_cnn.num_features
        cls = count_macs(model.classify, torch.zeros(1, t_g, d_g), torch.zeros(1, t_l, d_l))
    finally:
        model.train(was_training)
    giga = 1e9
    run = t_l * keep_ratio
    return FlopsBreakdown(
        global_cnn=g / n_g * t_g / giga,
        local_cnn=ell * run / giga,
        policy=per_decision * steps / giga,
        classifier=cls / giga,
        global_frames=t_g,
        local_frames=t_l,
        policy_steps=steps,
        local_frames_run=run,
    )


def _count_uni(model) -> FlopsBreakdown:
    """Uni-AdaFocus: f_G on the glanced frames, both policies once per video, f_L on the focused frames."""
    g, f, s, p = model.glance_segments, model.focus_segments, model.glance_size, model.patch_size
    was_training = model.training
    model.eval()
    try:
        per_glance, fmap = _count(model.global_cnn, torch.zeros(1, 3, s, s))
        per_patch = count_macs(model.local_cnn, torch.zeros(1, 3, p, p))
        d_g, d_l = model.global_cnn.num_features, model.local_cnn.num_features
        policy = count_macs(model.spatial_policy, fmap.unsqueeze(0).expand(1, g, *fmap.shape[1:]))
        policy += count_macs(model.temporal_policy, torch.zeros(1, g, d_g))
        cls = count_macs(model.classifier, torch.zeros(1, g, d_g), torch.zeros(1, f, d_l))
    finally:
        model.train(was_training)
    giga = 1e9
    return FlopsBreakdown(global_cnn=per_glance * g / giga, local_cnn=per_patch * f / giga, policy=policy / giga,
                          classifier=cls / giga, global_frames=g, local_frames=f, policy_steps=1,
                          local_frames_run=float(f))  # fmt: skip


def exit_gflops(model) -> torch.Tensor:
    """Uni-AdaFocus's cost at each exit ``(F + 1,)``: after the glance (k = 0), then after k focused frames
    (each adds f_L on one patch, f_C's local MLP and one local head)."""
    br = _count_uni(model)
    f = model.focus_segments
    hidden = model.classifier.local_heads[0][1].in_features
    with torch.no_grad():
        per_local = count_macs(model.classifier.local_mlp.eval(), torch.zeros(1, model.local_cnn.num_features))
        per_local += count_macs(model.classifier.local_heads[0], torch.zeros(1, hidden))
    per_frame = br.local_cnn / f + per_local / 1e9
    return br.total - (f - torch.arange(f + 1, dtype=torch.float64)) * per_frame


def paper_table() -> list[dict[str, Any]]:
    """Count every configuration whose GFLOPs the paper reports (the registry's ``paper_gflops``,
    one row per architecture and frame count); rows with ours, the paper's and the relative gap.
    Counted once per process (it builds every paper-size model)."""
    return copy.deepcopy(_paper_table())


@functools.cache
def _paper_table() -> list[dict[str, Any]]:
    from .registry import REGISTRY

    rows, seen = [], set()
    for e in REGISTRY.values():
        key = (e.model_class, e.architecture, e.frames)
        if e.paper_gflops is None or key in seen:
            continue
        seen.add(key)
        model = e.build()
        g = model.global_frames or e.preprocess.num_frames
        br = count_flops(model, g, local_frames=e.preprocess.num_frames)
        rows.append(
            dict(
                name=f"{e.architecture} T={e.frames}",
                **{k: round(v, 4) for k, v in br.as_dict().items() if isinstance(v, float)},
                paper=e.paper_gflops,
                rel_diff=(br.total - e.paper_gflops) / e.paper_gflops,
            )
        )
    return rows
