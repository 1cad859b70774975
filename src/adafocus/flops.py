"""FLOPs accounting per video, counted on the real modules with ``torch.utils.flop_counter``.

Convention (the paper's): **one multiply-add = one FLOP**. torch's counter reports two FLOPs per
multiply-add, so its totals are halved. Element-wise work (activations, pooling, the crop gather,
softmax) is not counted, as in the paper and torch's counter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from .model import AdaFocus


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
    model: AdaFocus,
    num_frames: int = 16,
    *,
    local_frames: int | None = None,
    keep_ratio: float = 1.0,
) -> FlopsBreakdown:
    """Per-component GFLOPs of one video (multiply-adds, see module doc).

    Args:
        model: the model to count (its modules are run on zero inputs of batch 1).
        num_frames: frames seen by f_G (and by f_L unless ``local_frames`` is given).
        local_frames: frames whose patch goes through f_L (12 for AdaFocus-TSM, 8 for its f_G).
        keep_ratio: fraction of patches actually processed by f_L (AdaFocus+ skips the rest).
    """
    quantized = [n for n, m in model.named_modules() if ".quantized" in type(m).__module__]
    if quantized:  # int8 kernels are invisible to FlopCounterMode: the count would silently drop them
        raise ValueError(f"count_flops: {quantized[0]!r} is int8-quantized; count FLOPs on the float model")
    t_g = num_frames
    t_l = local_frames or num_frames
    s, p = model.glance_size, model.patch_size
    was_training = model.training
    model.eval()
    try:
        # TSM backbones shift across a whole clip, so they run on one clip and are divided per frame
        n_g, n_l = getattr(model, "global_frames", 1), getattr(model, "local_frames", 1)
        g, fmap = _count(model.global_cnn, torch.zeros(n_g, 3, s, s))
        g, fmap = g / n_g, fmap[:1]  # fmap: the policy's input shape
        ell = count_macs(model.local_cnn, torch.zeros(n_l, 3, p, p)) / n_l
        steps = 1 if model.policy_scope == "video" else t_g
        state = fmap.unsqueeze(1)
        if model.policy_scope == "video":
            state = state.repeat(1, 1, model.num_frames, 1, 1)
        pol = count_macs(model.policy, state)
        if model.skip_policy is not None:  # AdaFocus+: pi' runs on every frame
            pol += count_macs(model.skip_policy, state)
        d_g, d_l = model.global_cnn.num_features, model.local_cnn.num_features
        cls = count_macs(model.classify, torch.zeros(1, t_g, d_g), torch.zeros(1, t_l, d_l))
    finally:
        model.train(was_training)
    giga = 1e9
    run = t_l * keep_ratio
    return FlopsBreakdown(
        global_cnn=g * t_g / giga,
        local_cnn=ell * run / giga,
        policy=pol * steps / giga,
        classifier=cls / giga,
        global_frames=t_g,
        local_frames=t_l,
        policy_steps=steps,
        local_frames_run=run,
    )


@dataclass(frozen=True)
class PaperConfig:
    """A configuration whose GFLOPs the paper reports (Tables 1-3)."""

    name: str
    model_kwargs: dict
    global_frames: int
    local_frames: int
    paper_gflops: float
    tsm: bool = False  # built as AdaFocusTSM (temporal shift in both CNNs, 8 f_G + 12 f_L frames)


_TSM = dict(num_classes=174, grid_size=5, global_frames=8, local_frames=12, policy_channels=64)

PAPER_CONFIGS: tuple[PaperConfig, ...] = (
    PaperConfig("AdaFocus MN2+RN50 T=16 P=128", dict(num_classes=200, patch_size=128), 16, 16, 26.6),
    PaperConfig("AdaFocus MN2+RN50 T=16 P=160", dict(num_classes=200, patch_size=160), 16, 16, 38.6),
    PaperConfig("AdaFocus-TSM 8+12 P=144", dict(_TSM, patch_size=144), 8, 12, 23.5, tsm=True),
    PaperConfig("AdaFocus-TSM 8+12 P=160", dict(_TSM, patch_size=160), 8, 12, 27.5, tsm=True),
    PaperConfig("AdaFocus-TSM 8+12 P=176", dict(_TSM, patch_size=176), 8, 12, 33.7, tsm=True),
)


def paper_table() -> list[dict[str, Any]]:
    """Count every :data:`PAPER_CONFIGS` entry; rows with ours, the paper's and the relative gap."""
    rows = []
    for cfg in PAPER_CONFIGS:
        if cfg.tsm:
            from .tsm_model import AdaFocusTSM

            model: Any = AdaFocusTSM(**cfg.model_kwargs)
        else:
            model = AdaFocus(**cfg.model_kwargs)
        br = count_flops(model, cfg.global_frames, local_frames=cfg.local_frames)
        rows.append(
            dict(
                name=cfg.name,
                **{k: round(v, 4) for k, v in br.as_dict().items() if isinstance(v, float)},
                paper=cfg.paper_gflops,
                rel_diff=(br.total - cfg.paper_gflops) / cfg.paper_gflops,
            )
        )
    return rows
