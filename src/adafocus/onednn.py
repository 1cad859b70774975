"""oneDNN's blocked memory layout for ResNet trunks on CPU (inference only).

An eager ``nn.Conv2d`` keeps its weights in PyTorch's plain layout, so oneDNN reorders them into
its blocked layout at every call, and activations go through NHWC. That costs little when the
maps are big but a lot on AdaFocus' small patches: on 16 patches of 96 px, ResNet-50's layer4 sees
3x3 maps, streams ~60 MB of weights per call, and ran at ~77 GMAC/s against ~140 at 224 px on the
project's CPU. With weights reordered once and activations kept in oneDNN's blocked layout
(``torch.Tensor.to_mkldnn``) between the convolutions, ResNet-50 on those patches took ~10% less
time (99 -> 89 ms), on 224-px frames the same. ``torch.utils.mkldnn.to_mkldnn`` did this once but
is built on the deprecated TorchScript; ``torch.compile`` (freezing) bought these patches only ~2%
here.

:func:`use_blocked_layout` converts a torchvision ResNet trunk (an ``adafocus`` ``resnet*`` /
``tsm_resnet*`` backbone) in place: float32 only, BatchNorms folded first
(:func:`adafocus.inference.fold_batchnorm`), the activations enter the blocked layout at the first
convolution and leave it after ``layer4``. The temporal shift of a TSM trunk moves channels
between frames, which oneDNN tensors cannot do; there only ``layer4`` goes blocked, each shift
runs on a dense copy of its (small) input. Everything converted to blocked ran slower on TSM
trunks (each block's shift then converts full-size maps twice).
"""

from __future__ import annotations

import torch
from torch import nn

from .tsm import TemporalShift, temporal_shift


def available() -> bool:
    """True if this torch build has oneDNN (MKLDNN) on CPU."""
    return torch.backends.mkldnn.is_available()


class BlockedConv2d(nn.Module):
    """A Conv2d on oneDNN tensors, its weight reordered once into oneDNN's preferred layout."""

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(f"BlockedConv2d needs numeric zero padding, got {conv}")
        self.args = (list(conv.padding), list(conv.stride), list(conv.dilation), conv.groups)
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self._pack(conv.weight.detach(), None if conv.bias is None else conv.bias.detach())

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(weight.float().contiguous().to_mkldnn(), *self.args)
        self.register_buffer("weight", packed)
        self.register_buffer("bias", None if bias is None else bias.float().to_mkldnn())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mkldnn_convolution(x, self.weight, self.bias, *self.args)

    # oneDNN tensors have no storage: state_dict, torch.save and deepcopy get dense copies
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        destination[prefix + "weight"] = self.weight.to_dense()
        if self.bias is not None:
            destination[prefix + "bias"] = self.bias.to_dense()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
        if prefix + "weight" not in state_dict:
            missing.append(prefix + "weight")
            return
        self._pack(state_dict[prefix + "weight"], state_dict.get(prefix + "bias"))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_buffers"] = {k: None if v is None else v.to_dense() for k, v in self._buffers.items()}
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._pack(self._buffers["weight"], self._buffers["bias"])

    def extra_repr(self) -> str:
        padding, stride, _, groups = self.args
        return f"{self.in_channels}, {self.out_channels}, stride={stride}, padding={padding}, groups={groups}"


class BlockedTemporalShift(nn.Module):
    """A :class:`TemporalShift` inside a blocked region: shift a dense copy, convolve blocked."""

    def __init__(self, shift: TemporalShift) -> None:
        super().__init__()
        self.net = shift.net
        self.num_frames = shift.num_frames
        self.fold_div = shift.fold_div

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = temporal_shift(x.to_dense(), self.num_frames, self.fold_div)
        return self.net(shifted.to_mkldnn())


class EnterBlocked(nn.Module):
    """Runs ``net`` on the input converted to a oneDNN tensor (the region's first module)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x if x.is_mkldnn else x.to_mkldnn())


class LeaveBlocked(nn.Module):
    """Runs ``net`` and converts its oneDNN output back to a dense channels_last tensor (the region's
    last module)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.net(x)
        return y.to_dense().contiguous(memory_format=torch.channels_last) if y.is_mkldnn else y


def _convert(module: nn.Module) -> int:
    """Swap every Conv2d / TemporalShift below ``module`` for its blocked version; count the convs."""
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, TemporalShift):
                setattr(parent, name, BlockedTemporalShift(child))
            elif isinstance(child, nn.Conv2d):
                setattr(parent, name, BlockedConv2d(child))
                n += 1
    return n


def _resnet(backbone: nn.Module) -> nn.Module | None:
    from torchvision.models import ResNet

    model = getattr(backbone, "model", backbone)
    return model if isinstance(model, ResNet) else None


def is_resnet(backbone: nn.Module) -> bool:
    """True if ``backbone`` (or its ``.model``) is a torchvision ResNet trunk."""
    return _resnet(backbone) is not None


def resnet_parts(model: nn.Module) -> list[nn.Module]:
    """The ResNet trunks among ``model``'s backbones (f_G / f_L), or ``[model]`` if it is one itself."""
    from .inference import BACKBONES

    parts = [net for net in (getattr(model, p, None) for p in BACKBONES) if isinstance(net, nn.Module)]
    return [net for net in parts or [model] if is_resnet(net)]


def use_blocked_layout(backbone: nn.Module) -> int:
    """Run a ResNet trunk (``backbone`` or ``backbone.model``) in oneDNN's blocked layout, in place.

    Plain ResNets go blocked from ``conv1`` to the end of ``layer4``; TSM ResNets in ``layer4``
    only (see the module doc). Returns how many convolutions were converted; raises ``ValueError``
    for a model that is not a ResNet trunk, has unfolded BatchNorms, is in training mode or not
    float32 on CPU, and ``RuntimeError`` without oneDNN.
    """
    if not available():
        raise RuntimeError("use_blocked_layout: this torch build has no oneDNN (torch.backends.mkldnn)")
    model = _resnet(backbone)
    if model is None:
        raise ValueError(f"use_blocked_layout: {type(backbone).__name__} is not a torchvision ResNet trunk")
    if backbone.training:
        raise ValueError("use_blocked_layout: inference only, call .eval() first")
    param = next(backbone.parameters(), None)
    if param is not None and (param.device.type != "cpu" or param.dtype != torch.float32):
        raise ValueError(f"use_blocked_layout: needs a float32 CPU model, got {param.dtype} on {param.device}")
    shifted = any(isinstance(m, TemporalShift) for m in model.modules())
    region = model.layer4 if shifted else model
    if any(isinstance(m, nn.BatchNorm2d) for m in region.modules()):  # checked before anything changes
        raise ValueError("use_blocked_layout: fold the BatchNorms first (adafocus.inference.fold_batchnorm)")
    n = _convert(model.layer4)
    if shifted:
        model.layer4 = LeaveBlocked(EnterBlocked(model.layer4))
        return n
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    n += _convert(stem)
    for name in ("layer1", "layer2", "layer3"):
        n += _convert(getattr(model, name))
    model.conv1, model.bn1, model.relu, model.maxpool = EnterBlocked(stem[0]), stem[1], stem[2], stem[3]
    model.layer4 = LeaveBlocked(model.layer4)
    return n
