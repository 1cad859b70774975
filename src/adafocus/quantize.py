"""int8 glance: static post-training quantization of f_G for CPU inference.

f_G runs on every full frame and is built from small-channel 1x1 and depthwise convolutions
(MobileNet-V2) that are memory-bound in fp32: on the 2-core Xeon (AMX) this project benchmarks
on, MobileNet-V2 reaches ~63 GMAC/s against ResNet-50's ~150, so the glance, 7% of the FLOPs,
takes 40% of AdaFocus' time at P=96. In int8 (oneDNN, VNNI/AMX) the same network runs ~3x
faster (16 frames of 224 px: ~70 -> ~23 ms). Only f_G is quantized here; f_L, pi and f_C keep
their precision (``quantize_recurrent_heads`` in :mod:`adafocus.inference` covers pi / f_C).

The conversion uses PyTorch's FX graph-mode quantization: conv + BN + activation are fused,
activation ranges come from calibration frames (a few dozen real frames are enough), weights are
quantized per channel. MobileNet-V2's ReLU6 is kept exactly: it becomes a fused conv + ReLU whose
output range is capped at 6, so int8 saturation performs the clamp.

    model = prepare_for_inference(model)                    # fold BN, channels_last, ...
    quantize_glance(model, calibration_clips)               # (B, T, 3, H, W) tensors
    logits = infer(model, clip)
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable

import torch
from torch import fx, nn
from torch.ao.quantization import MinMaxObserver, get_default_qconfig_mapping
from torch.ao.quantization.observer import ObserverBase

from .inference import quantized_engine

ENGINES = ("onednn", "x86", "fbgemm")


class _ReLU6Observer(MinMaxObserver):
    """Observer of a ReLU6 output: records and passes on ``min(x, cap)``.

    The ReLU6 itself became a ReLU fused into its convolution, so during calibration this observer
    applies the cap (later layers are calibrated on the values they will really receive); after
    conversion its range [0, cap] makes int8 saturation do the clamp.
    """

    def __init__(self, cap: float = 6.0, **kwargs) -> None:
        super().__init__(dtype=torch.quint8, qscheme=torch.per_tensor_affine, **kwargs)
        self.cap = cap

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.clamp(max=self.cap))


def _drop_identities(gm: fx.GraphModule) -> fx.GraphModule:
    """Remove ``nn.Identity`` calls (folded BNs) so conv -> ReLU patterns are adjacent for fusion."""
    for node in list(gm.graph.nodes):
        if node.op == "call_module" and isinstance(gm.get_submodule(node.target), nn.Identity):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
    gm.graph.eliminate_dead_code()
    gm.delete_all_unused_submodules()
    gm.recompile()
    return gm


def _relu6_to_relu(gm: fx.GraphModule) -> tuple[set[str], int]:
    """Swap every ReLU6 for a fusable ReLU: ``(names of the modules of each conv (-> BN) -> ReLU6 chain, count)``."""
    names: set[str] = set()
    n = 0
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(gm.get_submodule(node.target), nn.ReLU6):
            continue
        parent, _, name = node.target.rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, name, nn.ReLU())
        names.add(node.target)
        n += 1
        producer = node.args[0]
        while isinstance(producer, fx.Node) and producer.op == "call_module":
            names.add(producer.target)  # after fusion the chain is one module, named after one of these
            if not isinstance(gm.get_submodule(producer.target), nn.BatchNorm2d):
                break
            producer = producer.args[0]
    gm.recompile()
    return names, n


def _cap_observers(prepared: fx.GraphModule, relu6_modules: set[str]) -> int:
    """Give the output observer of every former ReLU6 chain the capped [0, 6] observer."""
    n = 0
    for node in prepared.graph.nodes:
        if node.op != "call_module" or node.target not in relu6_modules:
            continue
        for user in node.users:
            if user.op == "call_module" and isinstance(prepared.get_submodule(user.target), ObserverBase):
                setattr(prepared, user.target, _ReLU6Observer())
                n += 1
    return n


def quantize_backbone(net: nn.Module, calibration: Iterable[torch.Tensor], *, engine: str = "onednn") -> fx.GraphModule:
    """An int8 copy of ``net`` (a CNN on ``(N, 3, H, W)``), calibrated on ``calibration`` batches.

    ``net`` must be symbolically traceable (torchvision / tiny backbones are). Its BN layers may
    be unfolded (they are fused here) or already folded by ``prepare_for_inference``.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: choose one of {ENGINES}")
    if engine not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"quantized engine {engine!r} is not available in this PyTorch build")
    with quantized_engine(engine):
        return _quantize(net, calibration, engine)


def _quantize(net: nn.Module, calibration: Iterable[torch.Tensor], engine: str) -> fx.GraphModule:
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    num_features = getattr(net, "num_features", None)
    gm = _drop_identities(fx.symbolic_trace(copy.deepcopy(net).eval().float()))
    relu6, n_relu6 = _relu6_to_relu(gm)
    gm.eval()  # the new ReLUs too: fusion needs every module of a pattern in eval mode
    batches = iter(calibration)
    first = next(batches, None)
    if first is None:
        raise ValueError("quantize_backbone: calibration gave no batch; pass at least one (N, 3, H, W) tensor")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FX quantization's deprecation notice (moved to torchao)
        prepared = prepare_fx(gm, get_default_qconfig_mapping(engine), (first.float(),))
        capped = _cap_observers(prepared, relu6)
        if capped != n_relu6:  # a ReLU6 left unfused would run as a plain ReLU: wrong, not just slow
            raise RuntimeError(f"int8: {n_relu6} ReLU6 layers but {capped} fused conv+ReLU outputs were capped")
        with torch.no_grad():
            for x in (first, *batches):
                prepared(x.float().contiguous())
        q = convert_fx(prepared)
    if num_features is not None:
        q.num_features = num_features
    return q


def _glance_inputs(model: nn.Module, clips: Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
    """What f_G receives for each calibration clip: frames resized to the glance size."""
    import torch.nn.functional as F

    size = getattr(model, "glance_size", None) or getattr(model, "input_size", None)
    for clip in clips:
        if clip.dim() != 5:
            raise ValueError(f"calibration clips must be (B, T, 3, H, W), got shape {tuple(clip.shape)}")
        if hasattr(model, "select_glance_frames"):
            clip = model.select_glance_frames(clip)
        x = clip.flatten(0, 1).float()
        if size and x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        yield x


def quantize_glance(
    model: nn.Module, calibration: torch.Tensor | Iterable[torch.Tensor], *, engine: str = "onednn"
) -> nn.Module:
    """Replace ``model.global_cnn`` (f_G) by its int8 version, calibrated on ``calibration`` clips.

    ``calibration``: one ``(B, T, 3, H, W)`` tensor or an iterable of them (normalised like the
    model's inputs; a few dozen frames of real video). Works on AdaFocus, AdaFocusTSM and the
    full-frame TSMPlus baselines (anything with a ``global_cnn``); CPU only. Returns ``model``.

    Each int8 convolution keeps oneDNN's prepared primitive for the input shape of its *first*
    call; later calls with another shape work but prepare it again every time (~3.5-5.5 ms per call
    for 16 frames of 224 px), so make the first call with the shape you will serve.
    """
    net = getattr(model, "global_cnn", None)
    if not isinstance(net, nn.Module):
        raise ValueError(f"{type(model).__name__} has no global_cnn (f_G) to quantize")
    if any(p.device.type != "cpu" for p in net.parameters()):
        raise ValueError("quantize_glance: int8 f_G runs on CPU only; move the model to CPU first")
    clips = [calibration] if isinstance(calibration, torch.Tensor) else calibration
    with torch.no_grad():
        model.global_cnn = quantize_backbone(net, _glance_inputs(model, clips), engine=engine)
    return model
