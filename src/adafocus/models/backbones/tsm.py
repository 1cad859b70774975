"""Temporal Shift Module (TSM, Lin et al. 2019) for the AdaFocus-TSM backbones (paper Sec. 4.2).

A TSM backbone sees the frames of a clip as one batch ``(N*T, C, H, W)`` (video-major: the T frames
of video 0, then video 1, ...). Before the first convolution of every residual block, 1/8 of the
channels move one frame back in time, another 1/8 one frame forward, the rest stay (zero padded at
the clip ends). The shift sits on the *residual branch* only ("residual shift"), so the identity
path still carries the unshifted frame.

``num_frames`` (T) is a plain attribute of every :class:`TemporalShift`: the registered ``tsm_*``
backbones are built for 8 frames, and a model whose f_G/f_L sees another count calls
:func:`set_num_frames` (``AdaFocusTSM`` does this for its 8 global / 12 local frames).
"""

from __future__ import annotations

import torch
from torch import nn

from .registry import register_backbone
from .torchvision import TorchvisionBackbone, adapt_state_dict

DEFAULT_FRAMES = 8


def temporal_shift(x: torch.Tensor, num_frames: int, fold_div: int = 8) -> torch.Tensor:
    """Shift ``C // fold_div`` channels of ``x`` ``(N*T, C, H, W)`` back and as many forward in time.

    Channel block 0 of frame t takes frame t+1's values, block 1 takes frame t-1's, zeros enter at
    the clip ends; the remaining channels are untouched. The memory format of ``x`` is kept.
    """
    nt, c, h, w = x.shape
    if nt % num_frames:
        raise ValueError(f"temporal shift: batch {nt} is not a multiple of num_frames={num_frames}")
    fold = c // fold_div
    v = x.view(nt // num_frames, num_frames, c, h, w)
    out = torch.zeros_like(v)  # zeros_like keeps channels_last, so the block's convs stay fast
    out[:, :-1, :fold] = v[:, 1:, :fold]  # shift left: frame t sees t+1
    out[:, 1:, fold : 2 * fold] = v[:, :-1, fold : 2 * fold]  # shift right: frame t sees t-1
    out[:, :, 2 * fold :] = v[:, :, 2 * fold :]
    return out.view(nt, c, h, w)


# one opaque node under FX tracing (int8 quantization, adafocus.accelerate.quantize): the shift moves
# values, it has nothing to quantize, and its in-place writes are not traceable
torch.fx.wrap("temporal_shift")


class TemporalShift(nn.Module):
    """Runs ``net`` on the temporally shifted input (wraps the first layer of a residual branch)."""

    def __init__(self, net: nn.Module, num_frames: int = DEFAULT_FRAMES, fold_div: int = 8) -> None:
        super().__init__()
        self.net = net
        self.num_frames = num_frames
        self.fold_div = fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(temporal_shift(x, self.num_frames, self.fold_div))

    def extra_repr(self) -> str:
        return f"num_frames={self.num_frames}, fold_div={self.fold_div}"


def insert_temporal_shift(model: nn.Module, num_frames: int = DEFAULT_FRAMES, fold_div: int = 8) -> int:
    """Put a residual temporal shift into a torchvision ResNet or MobileNet-V2 (in place).

    ResNet: before ``conv1`` of every BasicBlock / Bottleneck (TSM's ``blockres`` placement).
    MobileNet-V2: before the expansion conv of every inverted-residual block with a residual
    connection (as the official AdaFocus-TSM glancer). Returns the number of shifts inserted.
    """
    from torchvision.models.mobilenetv2 import InvertedResidual
    from torchvision.models.resnet import BasicBlock, Bottleneck

    n = 0
    for m in model.modules():
        if isinstance(m, (BasicBlock, Bottleneck)) and not isinstance(m.conv1, TemporalShift):
            m.conv1 = TemporalShift(m.conv1, num_frames, fold_div)
            n += 1
        elif isinstance(m, InvertedResidual) and m.use_res_connect and not isinstance(m.conv[0], TemporalShift):
            m.conv[0] = TemporalShift(m.conv[0], num_frames, fold_div)
            n += 1
    if n == 0:
        raise ValueError(f"no residual block to shift in {type(model).__name__}")
    return n


def set_num_frames(model: nn.Module, num_frames: int) -> int:
    """Set T of every temporal shift in ``model``; returns how many were set (0: not a TSM net)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    shifts = [m for m in model.modules() if isinstance(m, TemporalShift)]
    for m in shifts:
        m.num_frames = num_frames
    return len(shifts)


def _tsm_torchvision(model: nn.Module, builder: str | None = None) -> TorchvisionBackbone:
    insert_temporal_shift(model)
    # the wrapper adds ".net" to the wrapped conv's keys; plain torchvision files are renamed on load,
    # so the builder's torchvision weights names (IMAGENET1K_V1...) load too
    return TSMTorchvisionBackbone(model, builder)


class TSMTorchvisionBackbone(TorchvisionBackbone):
    """A torchvision trunk with temporal shifts; loads plain (un-shifted) torchvision state_dicts too."""

    def load_weights(self, state_dict, source: str) -> None:
        state_dict, source = adapt_state_dict(state_dict, self.model, source)  # timm MN2 layout first
        own = set(self.model.state_dict())
        renamed = {}
        for k, v in state_dict.items():
            if k not in own:  # "layer1.0.conv1.weight" -> "layer1.0.conv1.net.weight"
                head, _, leaf = k.rpartition(".")
                if f"{head}.net.{leaf}" in own:
                    k = f"{head}.net.{leaf}"
                elif k.count(".") >= 3:  # MobileNet-V2 "features.2.conv.0.0.weight" -> "...conv.0.net.0.weight"
                    p = k.split(".")
                    alt = ".".join(p[:4] + ["net"] + p[4:])
                    k = alt if alt in own else k
            renamed[k] = v
        super().load_weights(renamed, source)


def _build(builder: str, **kwargs) -> TSMTorchvisionBackbone:
    import torchvision

    return _tsm_torchvision(getattr(torchvision.models, builder)(weights=None, **kwargs), builder)


register_backbone("tsm_resnet50")(lambda: _build("resnet50"))
register_backbone("tsm_resnet18")(lambda: _build("resnet18"))
register_backbone("tsm_mobilenet_v2")(lambda: _build("mobilenet_v2"))


def _tiny_resnet() -> TSMTorchvisionBackbone:
    """One BasicBlock per stage, 64-512 channels: a fast TSM stand-in for tests."""
    from torchvision.models.resnet import BasicBlock, ResNet

    return _tsm_torchvision(ResNet(BasicBlock, [1, 1, 1, 1]))


def _tiny_mobilenet() -> TSMTorchvisionBackbone:
    """A 4-block MobileNet-V2 (two residual blocks): a fast TSM stand-in for tests."""
    from torchvision.models import MobileNetV2

    setting = [[1, 8, 1, 1], [2, 16, 2, 2], [2, 24, 2, 2]]
    return _tsm_torchvision(MobileNetV2(inverted_residual_setting=setting))


register_backbone("tsm_tiny_resnet")(_tiny_resnet)
register_backbone("tsm_tiny_mobilenet")(_tiny_mobilenet)
