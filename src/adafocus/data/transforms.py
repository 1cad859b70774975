"""The paper's clip transforms, on uint8 video tensors ``(T, 3, H, W)`` with torchvision.transforms.v2.

v2 transforms draw their random parameters once per call and apply them to every leading
(frame) dimension, so one call on the whole clip gives every frame the same crop and flip.

Train: random scaling as in TSN's multi-scale crop (crop side = shorter side x one of ``scales``
per axis, aspect distortion at most one step, at one of 13 fixed positions), resize to
``input_size``, horizontal flip (off for Something-Something, where left/right is the label).
Eval: resize the shorter side to ``scale_size``, centre crop ``input_size`` (or, with ``crops=3``,
:class:`ThreeCrop`: three crops along the longer side, TSM's ``--test_crops 3``). ``scale_size ==
input_size`` is full-resolution testing (TSM's ``--full_res``): the crops span the whole shorter side.
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


class ThreeCrop(v2.Transform):
    """Three square ``size`` crops spread along the longer side, stacked in a new leading dimension.

    Output ``(3, *leading, C, size, size)`` in the order centre, start (left / top), end (right /
    bottom): the centre one first, so that view 0 is the single-crop evaluation input (``v2.CenterCrop``,
    bit for bit). On the shorter side all three are centred. This is TSM's ``GroupFullResSample``
    without flips, except that the side crops touch the frame's edges exactly (TSM's ``4 * ((w - size)
    // 4)`` can stop a few pixels short).
    """

    def __init__(self, size: int) -> None:
        super().__init__()
        if size <= 0:
            raise ValueError(f"ThreeCrop size must be positive, got {size}")
        self.size = size

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        h, w = v2.query_size(flat_inputs)
        s = self.size
        if min(h, w) < s:
            raise ValueError(f"ThreeCrop: frames of {h}x{w} are smaller than the crop size {s}")
        if w >= h:  # landscape (or square): crops move along x
            top = int(round((h - s) / 2.0))  # v2.CenterCrop's rounding, so the middle crop is its crop
            corners = [(top, 0), (top, w - s)]
        else:
            left = int(round((w - s) / 2.0))
            corners = [(0, left), (h - s, left)]
        return dict(corners=corners)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        s = self.size
        crops = [F.center_crop(inpt, [s, s])] + [F.crop(inpt, y, x, s, s) for y, x in params["corners"]]
        stacked = torch.stack([c.as_subclass(torch.Tensor) for c in crops])
        return tv_tensors.wrap(stacked, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else stacked


def build_transform(
    *,
    train: bool,
    input_size: int = 224,
    scale_size: int = 256,
    flip: bool = True,
    scales: Sequence[float] = DEFAULT_SCALES,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    crops: int = 1,
) -> v2.Compose:
    """Clip transform for training (``train=True``) or evaluation; input uint8 ``(T, 3, H, W)``;
    ``mean`` / ``std``: the normalisation (ImageNet's by default).

    ``crops`` (evaluation only): 1, the centre crop ``(T, 3, s, s)``; 3, :class:`ThreeCrop`'s
    ``(3, T, 3, s, s)`` (centre, left / top, right / bottom)."""
    if crops not in (1, 3):
        raise ValueError(f"crops must be 1 or 3, got {crops!r}")
    if train and crops != 1:
        raise ValueError(f"crops={crops} is an evaluation protocol; training takes one random crop")
    if train:
        ops: list[Any] = [MultiScaleCrop(input_size, scales)]
        if flip:
            ops.append(v2.RandomHorizontalFlip())
    else:
        crop = v2.CenterCrop(input_size) if crops == 1 else ThreeCrop(input_size)
        ops = [v2.Resize(scale_size, antialias=True), crop]
    ops += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    return v2.Compose(ops)


def apply_clip_transform(transform: v2.Transform, clip: torch.Tensor) -> torch.Tensor:
    """Run ``transform`` on a ``(T, 3, H, W)`` uint8 clip as one video, returning a plain tensor
    (``(3, T, 3, s, s)`` for a three-crop transform)."""
    out = transform(tv_tensors.Video(clip))
    return out.as_subclass(torch.Tensor)
