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
(:func:`adafocus.accelerate.batchnorm.fold_batchnorm`), the activations enter the blocked layout at the first
convolution and leave it after ``layer4`` (after ``layer3`` when ``layer4`` runs as GEMMs, below);
forward hooks do the conversions, so the trunk's state_dict keys stay those of the dense trunk.
The temporal shift of a TSM trunk moves channels
between frames, which oneDNN tensors cannot do, and converting every block's input for it cost
more than blocking saved; there only ``layer4`` is converted, its convolutions to dense GEMMs on
channels_last maps (:class:`GemmConv2d`), so its shifts need no conversion either. Plain ResNets
told that their inputs are at most 96 px (f_L on AdaFocus' P=96 patches) also run ``layer4`` as
GEMMs: on 3x3 maps oneDNN's blocked kernels reached 100-118 GMAC/s for 9 of ``layer4``'s 10
convolutions of ResNet-50, against 143-187 at 224 px.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from ..models.backbones.tsm import TemporalShift, temporal_shift


@functools.cache
def available() -> bool:
    """True if this torch build has oneDNN on CPU *and* the undocumented oneDNN ops this module
    rests on (``torch._C._nn.mkldnn_reorder_conv2d_weight``, ``torch.mkldnn_convolution``,
    ``torch.ops.mkldnn._reorder_linear_weight`` / ``_linear_pointwise``) exist and agree with
    ``F.conv2d`` on a tiny convolution. Checked once per process; where it is False,
    ``prepare_for_inference(blocked_layout=True)`` keeps the plain convolutions (with a warning)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        with torch.no_grad():
            conv = nn.Conv2d(4, 8, 3, padding=1, bias=True).eval()
            x = torch.randn(2, 4, 5, 5)
            ref = conv(x)
            blocked = BlockedConv2d(conv)(x.to_mkldnn()).to_dense()
            gemm = GemmConv2d(conv)(x.to(memory_format=torch.channels_last))
        return bool(torch.allclose(blocked, ref, atol=1e-4) and torch.allclose(gemm, ref, atol=1e-4))
    except (AttributeError, RuntimeError, TypeError, NotImplementedError):  # op gone or changed in this torch
        return False


class _PackedWeights(nn.Module):
    """Holds a weight in a oneDNN layout (reordered once); ``state_dict``, ``torch.save`` and
    ``deepcopy`` see the dense Conv2d weight and bias, so checkpoints are unchanged."""

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        raise NotImplementedError

    def _dense(self) -> dict[str, torch.Tensor | None]:
        raise NotImplementedError

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        for name, value in self._dense().items():
            if value is not None:
                destination[prefix + name] = value

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors) -> None:
        if prefix + "weight" not in state_dict:
            missing.append(prefix + "weight")
            return
        self._pack(state_dict[prefix + "weight"], state_dict.get(prefix + "bias"))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_buffers"] = self._dense()
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._pack(self._buffers["weight"], self._buffers["bias"])


class BlockedConv2d(_PackedWeights):
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

    def _dense(self) -> dict[str, torch.Tensor | None]:
        return {"weight": self.weight.to_dense(), "bias": None if self.bias is None else self.bias.to_dense()}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.mkldnn_convolution(x, self.weight, self.bias, *self.args)

    def extra_repr(self) -> str:
        padding, stride, _, groups = self.args
        return f"{self.in_channels}, {self.out_channels}, stride={stride}, padding={padding}, groups={groups}"


class GemmConv2d(_PackedWeights):
    """A Conv2d as one matrix product over channels_last maps (im2col first for k > 1), its
    ``(C_out, k*k*C_in)`` weight matrix reordered once for oneDNN's matmul.

    Used for ``layer4`` where its maps are tiny: TSM trunks (5x5 maps at P=144, where the temporal
    shifts then need no layout conversion) and plain ResNets on inputs up to 96 px (3x3 maps).
    With 16 patches of 96 px, ResNet-50 took ~4% less time than with a blocked ``layer4``, ~1% more
    with 64 patches; at 128 px +1.5% / -1.4%, and at 224 px blocked is ahead, so those stay blocked.
    Packing the weight once made ResNet-50's ``layer4`` products 9-13% faster than ``F.linear``,
    which re-packs it at every call, with 16 patches of 96 px and 0-10% with 64 (TSM-ResNet-50 on
    12 / 48 patches of 144 px, whole trunk: +0.4% / +0.8%).
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__()
        if not gemm_ready(conv):
            raise ValueError(f"GemmConv2d needs groups=1, dilation=1 and numeric zero padding, got {conv}")
        self.kernel_size, self.stride, self.padding = conv.kernel_size, conv.stride, conv.padding
        self.in_channels, self.out_channels = conv.in_channels, conv.out_channels
        self._pack(conv.weight.detach(), None if conv.bias is None else conv.bias.detach())

    def _pack(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        matrix = weight.float().permute(0, 2, 3, 1).reshape(self.out_channels, -1).contiguous()  # (kh, kw, C) columns
        self.register_buffer("weight", torch.ops.mkldnn._reorder_linear_weight(matrix, None))
        self.register_buffer("bias", None if bias is None else bias.float().contiguous())

    def _dense(self) -> dict[str, torch.Tensor | None]:
        kh, kw = self.kernel_size
        weight = self.weight.to_dense().view(self.out_channels, kh, kw, self.in_channels).permute(0, 3, 1, 2)
        return {"weight": weight.contiguous(), "bias": self.bias}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        rows = x.permute(0, 2, 3, 1)  # (N, H, W, C): a view of channels_last maps
        if (kh, kw, ph, pw) == (1, 1, 0, 0):
            rows = rows[:, ::sh, ::sw]
        else:
            rows = F.pad(rows, (0, 0, pw, pw, ph, ph)).unfold(1, kh, sh).unfold(2, kw, sw)  # (N, Ho, Wo, C, kh, kw)
            rows = rows.permute(0, 1, 2, 4, 5, 3)  # columns in the weight's (kh, kw, C) order
        ho, wo = rows.shape[1:3]
        out = torch.ops.mkldnn._linear_pointwise(rows.reshape(n * ho * wo, -1), self.weight, self.bias, "none", [], "")
        return out.view(n, ho, wo, self.out_channels).permute(0, 3, 1, 2)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"


def gemm_ready(conv: nn.Module) -> bool:
    """True for a Conv2d that :class:`GemmConv2d` computes exactly (groups 1, no dilation, zero padding)."""
    return (
        isinstance(conv, nn.Conv2d)
        and conv.groups == 1
        and conv.dilation == (1, 1)
        and conv.padding_mode == "zeros"
        and not isinstance(conv.padding, str)
    )


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


def _enter_blocked(module: nn.Module, args: tuple) -> tuple:
    """Forward pre-hook of a blocked region's first module: its input becomes a oneDNN tensor."""
    x = args[0]
    return (x if x.is_mkldnn else x.to_mkldnn(), *args[1:])


def _leave_blocked(module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor:
    """Forward hook of a blocked region's last module: its output becomes a dense tensor again.

    Plain contiguous NCHW, what ``to_dense`` gives: a trunk's maps are only pooled next, and a
    further copy to channels_last cost more than the pooling itself (16 x 2048 x 3 x 3 maps:
    to_dense + mean 108 us, with that copy 700 us).
    """
    return output.to_dense() if output.is_mkldnn else output


def _mark_region(first: nn.Module, last: nn.Module) -> None:
    # hooks, not wrapper modules, so that the trunk's state_dict keys stay those of the dense trunk
    first.register_forward_pre_hook(_enter_blocked)
    last.register_forward_hook(_leave_blocked)


def enters_blocked(module: nn.Module) -> bool:
    """True if ``module`` starts a blocked region (converts its input to a oneDNN tensor)."""
    return any(h is _enter_blocked for h in module._forward_pre_hooks.values())


def leaves_blocked(module: nn.Module) -> bool:
    """True if ``module`` ends a blocked region (converts its output back to a dense tensor)."""
    return any(h is _leave_blocked for h in module._forward_hooks.values())


def _convert(module: nn.Module, *, gemm: bool = False) -> int:
    """Swap every Conv2d below ``module`` for its blocked (or GEMM) version, and in a blocked region
    every TemporalShift; count the convs."""
    n = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, TemporalShift) and not gemm:
                setattr(parent, name, BlockedTemporalShift(child))
            elif isinstance(child, nn.Conv2d):
                setattr(parent, name, GemmConv2d(child) if gemm else BlockedConv2d(child))
                n += 1
    return n


def _resnet(backbone: nn.Module) -> nn.Module | None:
    from torchvision.models import ResNet

    model = getattr(backbone, "model", backbone)
    return model if isinstance(model, ResNet) else None


def is_resnet(backbone: nn.Module) -> bool:
    """True if ``backbone`` (or its ``.model``) is a torchvision ResNet trunk."""
    return _resnet(backbone) is not None


GEMM_MAX_SIDE = 3  # plain ResNets: layer4 as GEMMs when its maps are at most 3x3 (inputs up to 96 px)


def use_blocked_layout(backbone: nn.Module, *, input_size: int | None = None) -> int:
    """Run a ResNet trunk (``backbone`` or ``backbone.model``) in oneDNN's blocked layout, in place.

    Plain ResNets go blocked from ``conv1`` to the end of ``layer4``, or, when ``input_size`` (the
    side of the square inputs it will see) gives ``layer4`` maps of at most 3x3, to the end of
    ``layer3``, with ``layer4``'s convolutions as GEMMs (:class:`GemmConv2d`). TSM ResNets convert
    only ``layer4`` (see the module doc), to GEMMs. A dilated or grouped ``layer4`` stays blocked.
    Returns how many convolutions were converted; raises ``ValueError`` for a model that is not a
    ResNet trunk, has unfolded BatchNorms, is in training mode or not float32 on CPU, and
    ``RuntimeError`` without oneDNN.
    """
    if not available():
        raise RuntimeError(
            "use_blocked_layout: this torch build lacks oneDNN or the oneDNN ops it uses (see available())"
        )
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
        raise ValueError("use_blocked_layout: fold the BatchNorms first (adafocus.accelerate.batchnorm.fold_batchnorm)")
    gemm4 = all(gemm_ready(m) for m in model.layer4.modules() if isinstance(m, nn.Conv2d))
    if shifted:
        if gemm4:
            return _convert(model.layer4, gemm=True)
        n = _convert(model.layer4)
        _mark_region(model.layer4, model.layer4)
        return n
    gemm4 = gemm4 and input_size is not None and -(-input_size // 32) <= GEMM_MAX_SIDE
    stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
    layers = ("layer1", "layer2", "layer3") if gemm4 else ("layer1", "layer2", "layer3", "layer4")
    n = _convert(stem) + sum(_convert(getattr(model, name)) for name in layers)
    model.conv1 = stem[0]
    _mark_region(model.conv1, model.layer3 if gemm4 else model.layer4)
    return n + (_convert(model.layer4, gemm=True) if gemm4 else 0)
