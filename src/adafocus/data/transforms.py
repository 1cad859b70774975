"""The paper's clip transforms, on uint8 video tensors ``(T, 3, H, W)`` with torchvision.transforms.v2.

v2 transforms draw their random parameters once per call and apply them to every leading
(frame) dimension, so one call on the whole clip gives every frame the same crop and flip.

Train: random scaling as in TSN's multi-scale crop (crop side = shorter side x one of ``scales``
per axis, aspect distortion at most one step, at one of 13 fixed positions), resize to
``input_size``, horizontal flip (off for Something-Something, where left/right is the label).
Eval: resize the shorter side to ``scale_size``, centre crop ``input_size``.
Both end in float32 and normalisation (ImageNet's unless told otherwise).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from ..preprocess import IMAGENET_MEAN, IMAGENET_STD

DEFAULT_SCALES = (1.0, 0.875, 0.75, 0.66)


class MultiScaleCrop(v2.Transform):
    """TSN-style random scaling + crop, then resize to ``size x size``; one draw per clip."""

    def __init__(self, size: int, scales: Sequence[float] = DEFAULT_SCALES, max_distort: int = 1) -> None:
        super().__init__()
        if not scales or any(not 0 < s <= 1 for s in scales):
            raise ValueError(f"scales must be non-empty and in (0, 1], got {list(scales)}")
        self.size, self.scales, self.max_distort = size, tuple(scales), max_distort

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        base = min(h, w)
        sides = [max(1, int(base * s)) for s in self.scales]
        pairs = [(ch, cw) for i, ch in enumerate(sides) for j, cw in enumerate(sides) if abs(i - j) <= self.max_distort]
        ch, cw = pairs[int(torch.randint(len(pairs), ()))]
        # 13 fixed positions (corners, edge centres, centre, quarter points) as in TSN's
        # "more_fix_crop": fewer, more distinct crops than uniform offsets
        sy, sx = (h - ch) / 4, (w - cw) / 4
        grid = [(0, 0), (0, 4), (4, 0), (4, 4), (2, 2), (0, 2), (4, 2), (2, 0), (2, 4), (1, 1), (1, 3), (3, 1), (3, 3)]
        gy, gx = grid[int(torch.randint(len(grid), ()))]
        return dict(top=int(gy * sy), left=int(gx * sx), height=ch, width=cw)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return F.resized_crop(inpt, **params, size=[self.size, self.size], antialias=True)


def build_transform(
    *,
    train: bool,
    input_size: int = 224,
    scale_size: int = 256,
    flip: bool = True,
    scales: Sequence[float] = DEFAULT_SCALES,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> v2.Compose:
    """Clip transform for training (``train=True``) or evaluation; input uint8 ``(T, 3, H, W)``;
    ``mean`` / ``std``: the normalisation (ImageNet's by default)."""
    if train:
        ops: list[Any] = [MultiScaleCrop(input_size, scales)]
        if flip:
            ops.append(v2.RandomHorizontalFlip())
    else:
        ops = [v2.Resize(scale_size, antialias=True), v2.CenterCrop(input_size)]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def apply_clip_transform(transform: v2.Transform, clip: torch.Tensor) -> torch.Tensor:
    """Run ``transform`` on a ``(T, 3, H, W)`` uint8 clip as one video, returning a plain tensor."""
    out = transform(tv_tensors.Video(clip))
    return out.as_subclass(torch.Tensor)
