"""int8 glance: static post-training quantization of f_G for CPU inference.

f_G runs on every full frame and is built from small-channel 1x1 and depthwise convolutions
(MobileNet-V2) that are memory-bound in fp32: on the 2-core Xeon (AMX) this project benchmarks
on, MobileNet-V2 reaches ~63 GMAC/s against ResNet-50's ~150, so the glance, 7% of the FLOPs,
takes 40% of AdaFocus' time at P=96. In int8 (oneDNN, VNNI/AMX) the same network runs ~3x
faster (16 frames of 224 px: ~70 -> ~23 ms). Only f_G is quantized here; f_L, pi and f_C keep
their precision (``quantize_recurrent_heads`` in :mod:`adafocus.accelerate` covers pi / f_C).

The conversion uses PyTorch's FX graph-mode quantization: conv + BN + activation are fused,
activation ranges come from calibration frames (a few dozen real frames are enough), weights are
quantized per channel. MobileNet-V2's ReLU6 is kept exactly: it becomes a fused conv + ReLU whose
output range is capped at 6, so int8 saturation performs the clamp; activations therefore keep
all 8 bits on every engine (PyTorch's x86/fbgemm defaults use 7, which would move that cap to 12).

On x86 CPUs without VNNI/AMX (AVX2-only Intel, AMD Zen 1-3) oneDNN and fbgemm multiply u8 x s8
with ``vpmaddubsw``, whose int16 sum of two products saturates beyond 32767: with 8-bit weights
(up to 2 x 255 x 127) the outputs came out wrong (relative error 0.26 on a test block). There
weights use 7 bits, [-64, 63] (2 x 255 x 64 fits), chosen from the CPU's flags by
:func:`int8_weight_bits`; with VNNI/AMX the products accumulate in 32 bits and weights keep 8.

    model = prepare_for_inference(model)                    # fold BN, channels_last, ...
    quantize_glance(model, calibration_clips)               # (B, T, 3, H, W) tensors
    logits = infer(model, clip)
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import fx, nn
from torch.ao.quantization import (
    HistogramObserver,
    MinMaxObserver,
    PerChannelMinMaxObserver,
    QConfig,
    QConfigMapping,
    get_default_qconfig_mapping,
)
from torch.ao.quantization.observer import ObserverBase

from ..models.base import AdaFocusBase

ENGINES = ("onednn", "x86", "fbgemm")
HEADS = ("policy", "skip_policy", "classifier")  # the recurrent heads: pi, pi' and f_C
#: /proc/cpuinfo flags of an int8 dot product that accumulates in 32 bits (no int16 saturation)
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_has_vnni(cpuinfo: str | None = None) -> bool:
    """True if the CPU has an int8 dot product that accumulates in 32 bits (VNNI or AMX), from
    /proc/cpuinfo's flags (``cpuinfo``: that file's text, for tests). False where the flags cannot
    be read: the 7-bit weights this answer then selects are correct on every CPU, only coarser."""
    if cpuinfo is None:
        try:
            with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
                cpuinfo = f.read()
        except OSError:
            return False
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return any(flag in line.split(":", 1)[-1].split() for flag in VNNI_FLAGS)
    return False


def int8_weight_bits(cpuinfo: str | None = None) -> int:
    """Bits of the int8 weights that are exact on this CPU: 8 with VNNI/AMX, else 7 (see the module doc)."""
    return 8 if cpu_has_vnni(cpuinfo) else 7


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


def quantize_backbone(
    net: nn.Module,
    calibration: Iterable[torch.Tensor],
    *,
    engine: str = "onednn",
    weight_bits: int | None = None,
) -> fx.GraphModule:
    """An int8 copy of ``net`` (a CNN on ``(N, 3, H, W)``), calibrated on ``calibration`` batches.

    ``net`` must be symbolically traceable (torchvision / tiny backbones are). Its BN layers may
    be unfolded (they are fused here) or already folded by ``prepare_for_inference``.
    ``weight_bits``: 8 or 7 (default: what is exact on this CPU, :func:`int8_weight_bits`).
    The result's ``int8_weight_bits`` records the choice.
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r}: choose one of {ENGINES}")
    if engine not in torch.backends.quantized.supported_engines:
        raise RuntimeError(f"quantized engine {engine!r} is not available in this PyTorch build")
    weight_bits = int8_weight_bits() if weight_bits is None else weight_bits
    if weight_bits not in (7, 8):
        raise ValueError(f"weight_bits must be 7 or 8, got {weight_bits!r}")
    with quantized_engine(engine):
        return _quantize(net, calibration, engine, weight_bits)


def _qconfig_mapping(engine: str, weight_bits: int) -> QConfigMapping:
    """PyTorch's default mapping for ``engine`` with 8-bit activations and ``weight_bits`` weights."""
    weight = PerChannelMinMaxObserver.with_args(
        dtype=torch.qint8,
        qscheme=torch.per_channel_symmetric,
        quant_min=-(2 ** (weight_bits - 1)),
        quant_max=2 ** (weight_bits - 1) - 1,
    )
    activation = HistogramObserver.with_args(reduce_range=False)
    return get_default_qconfig_mapping(engine).set_global(QConfig(activation=activation, weight=weight))


def _quantize(net: nn.Module, calibration: Iterable[torch.Tensor], engine: str, weight_bits: int) -> fx.GraphModule:
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
        prepared = prepare_fx(gm, _qconfig_mapping(engine, weight_bits), (first.float(),))
        capped = _cap_observers(prepared, relu6)
        if capped != n_relu6:  # a ReLU6 left unfused would run as a plain ReLU: wrong, not just slow
            raise RuntimeError(f"int8: {n_relu6} ReLU6 layers but {capped} fused conv+ReLU outputs were capped")
        with torch.no_grad():
            for x in (first, *batches):
                prepared(x.float().contiguous())
        q = convert_fx(prepared)
    if num_features is not None:
        q.num_features = num_features
    q.int8_weight_bits = weight_bits
    return q


def _glance_inputs(model: nn.Module, clips: Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
    """What f_G receives for each calibration clip: frames resized to the glance size."""
    import torch.nn.functional as F

    family = isinstance(model, AdaFocusBase)
    size = model.glance_size if family else getattr(model, "input_size", None)
    for clip in clips:
        if clip.dim() != 5:
            raise ValueError(f"calibration clips must be (B, T, 3, H, W), got shape {tuple(clip.shape)}")
        if family:
            clip = model.glance_frames(clip)
        x = clip.flatten(0, 1).float()
        if size and x.shape[-2:] != (size, size):
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
        yield x


def quantize_glance(
    model: nn.Module,
    calibration: torch.Tensor | Iterable[torch.Tensor],
    *,
    engine: str = "onednn",
    weight_bits: int | None = None,
) -> nn.Module:
    """Replace ``model.global_cnn`` (f_G) by its int8 version, calibrated on ``calibration`` clips.

    ``calibration``: one ``(B, T, 3, H, W)`` tensor or an iterable of them (normalised like the
    model's inputs; a few dozen frames of real video). Works on AdaFocus, AdaFocusTSM and the
    full-frame TSMPlus baselines (anything with a ``global_cnn``); CPU only. Returns ``model``.
    ``weight_bits``: 8 or 7 (default: what is exact on this CPU, see :func:`int8_weight_bits`).

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
        model.global_cnn = quantize_backbone(net, _glance_inputs(model, clips), engine=engine, weight_bits=weight_bits)
    return model


def quantize_recurrent_heads(model: nn.Module) -> int:
    """int8 dynamic quantization of the GRU / Linear layers of ``model``'s heads (in place).

    Uses ``torch.ao.quantization.quantize_dynamic`` (deprecated in favour of torchao, but built in;
    its deprecation warning is silenced). Returns how many head modules were quantized.
    """
    from torch.ao.quantization import quantize_dynamic

    # packed for fbgemm (x86) whichever engine the process has set: its batch-1 GRU step ran ~1.5x
    # faster than oneDNN's here
    engines = torch.backends.quantized.supported_engines
    n = 0
    with quantized_engine(next((e for e in ("x86", "fbgemm") if e in engines), torch.backends.quantized.engine)):
        for name in HEADS:
            head = getattr(model, name, None)
            if isinstance(head, nn.Module):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    quantize_dynamic(head, {nn.GRU, nn.Linear}, dtype=torch.qint8, inplace=True)
                n += 1
    return n


@contextmanager
def quantized_engine(engine: str) -> Iterator[None]:
    """Set ``torch.backends.quantized.engine`` for the block, then give the caller's back.

    Quantization packs weights for the engine set at that moment; the packed modules then run the
    same whichever engine is set later, so there is no reason to leave a process-wide change behind.
    """
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        yield
    finally:
        torch.backends.quantized.engine = previous
