"""Fast offline inference: ``prepare_for_inference`` + ``infer``.

The offline forward already batches the work (f_G: one call on all B*T frames, pi: one GRU call
over T steps, the crop: one indexing op, f_L: one call on all kept patches). What is left for speed is
the execution of the two CNNs, which this module tunes:

* BatchNorm folding: an eval-mode BN after a convolution is an affine map, merged into the
  convolution's weights and bias, so a whole memory pass per BN disappears (MobileNet-V2 has 52).
* channels_last: oneDNN's convolutions (depthwise ones above all) are fastest in NHWC.
* ``keep_freed_memory()`` (Linux/glibc, once per process): glibc hands every block above its mmap
  threshold (<= 32 MB) back to the OS on free, so a CNN with big activations page-faults on all of
  them at every call: ResNet-50 on 16 frames of 224 px took ~78k faults and ~90 ms (17%) more per
  call on the project's CPU, MobileNet-V2 ~30 ms (30%). jemalloc / tcmalloc or
  ``MALLOC_MMAP_MAX_=0`` in the environment do the same job.
* oneDNN's blocked layout for the ResNet trunks (``blocked_layout``, CPU float32): weights reordered
  once, activations kept blocked between convolutions; ~10% off ResNet-50 on 96-px patches, nothing
  at 224 px (:mod:`adafocus.accelerate.onednn`).
* int8 f_G: :func:`adafocus.accelerate.quantize.quantize_glance` (needs calibration frames, so not done here).
* optional ``torch.compile`` of each backbone, with inductor's freezing (weights pre-packed,
  conv + activation fused).
* optional reduced precision (``dtype=torch.bfloat16`` / ``float16``): GPUs, and CPUs with AMX (bf16).
* optional int8 weights for the recurrent heads (``quantize_heads``): at batch 1 the GRUs of pi and
  f_C are matrix-vector products that stream ~25 MB of fp32 weights per step, memory-bound; int8
  dynamic quantization cuts their time ~3-5x at a small numerical cost (logits move ~1e-2).
"""

from __future__ import annotations

import warnings
from collections import deque
from typing import Any

import torch
from torch import nn

from . import onednn
from .batchnorm import fold_batchnorm
from .quantize import quantize_recurrent_heads

BACKBONES = ("global_cnn", "local_cnn")


def prepare_for_inference(
    model: nn.Module,
    *,
    channels_last: bool = True,
    fold_bn: bool = True,
    compile: bool = False,
    dtype: torch.dtype | None = None,
    quantize_heads: bool = False,
    blocked_layout: bool = False,
    compile_kwargs: dict[str, Any] | None = None,
) -> nn.Module:
    """Tune ``model`` (AdaFocus, AdaFocusTSM, TSMPlus or any module) for offline inference, in place.

    Puts it in eval mode, folds BN into convolutions, switches to channels_last and casts to
    ``dtype``; ``quantize_heads`` gives pi / pi' / f_C int8 dynamically quantized GRU and linear
    layers (CPU, float32 only); ``blocked_layout`` runs every ResNet backbone in oneDNN's blocked
    layout (:func:`adafocus.accelerate.onednn.use_blocked_layout`; CPU, float32, not with ``compile``; other
    backbones such as MobileNet-V2 stay as they are); with ``compile=True`` each backbone (``global_cnn`` /
    ``local_cnn``, else the whole model) is replaced by its ``torch.compile``'d version (the
    AdaFocus forward itself has data-dependent parts — the crop offsets, AdaFocus+'s kept frames —
    and stays eager). The model is no longer trainable afterwards (BN statistics are gone).
    Returns ``model``.
    """
    model.eval()
    if fold_bn:
        fold_batchnorm(model)
    if dtype is not None:
        model.to(dtype)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if quantize_heads:
        quantize_recurrent_heads(model)
    if blocked_layout:
        _use_blocked_layout(model, fold_bn=fold_bn, dtype=dtype, compile=compile)
    if compile:
        # freezing: weights become constants that inductor may pre-pack and fuse with their
        # activation; on the project's CPU it bought ResNet-50 only 2-4% (96-224 px, freed memory kept)
        kw: dict[str, Any] = {"dynamic": False, "options": {"freezing": True}, **(compile_kwargs or {})}
        parts = [p for p in BACKBONES if isinstance(getattr(model, p, None), nn.Module)]
        if not parts:
            return torch.compile(model, **kw)
        for p in parts:
            net = getattr(model, p)
            compiled = torch.compile(net, **kw)
            compiled.num_features = net.num_features  # the models read it off the backbone
            setattr(model, p, compiled)
    return model


def resnet_backbones(model: nn.Module) -> list[tuple[nn.Module, int | None]]:
    """``(trunk, side of its inputs)`` of the torchvision ResNets among ``model``'s backbones (f_L
    sees ``patch_size`` crops, f_G ``glance_size`` frames), or ``[(model, None)]`` if it is one."""
    frame = getattr(model, "input_size", None)
    sides = {"local_cnn": getattr(model, "patch_size", None) or frame,
             "global_cnn": getattr(model, "glance_size", None) or frame}  # fmt: skip
    parts = [(getattr(model, p, None), sides[p]) for p in BACKBONES]
    parts = [(net, side) for net, side in parts if isinstance(net, nn.Module)] or [(model, None)]
    return [(net, side) for net, side in parts if onednn.is_resnet(net)]


def _use_blocked_layout(model: nn.Module, *, fold_bn: bool, dtype: torch.dtype | None, compile: bool) -> None:
    if compile or not fold_bn or dtype not in (None, torch.float32):
        raise ValueError("blocked_layout needs fold_bn=True, float32 and compile=False")
    if not onednn.available():  # the plain convolutions give the same results, only slower
        warnings.warn(
            "blocked_layout: this torch build lacks oneDNN or the oneDNN ops the blocked layout uses; "
            "the ResNets keep their plain convolutions",
            stacklevel=3,
        )
        return
    trunks = resnet_backbones(model)
    if not trunks:
        raise ValueError(f"blocked_layout: {type(model).__name__} has no ResNet backbone to convert")
    for net, side in trunks:
        onednn.use_blocked_layout(net, input_size=side)


def first_parameter(module: nn.Module) -> torch.Tensor | None:
    """The floating-point parameter nearest the root (breadth-first), or ``None``.

    ``next(model.parameters())`` walks modules depth-first through nested generators: on a prepared
    AdaFocus, whose int8 f_G and blocked f_L hold no ``nn.Parameter``, it visited ~300 modules and
    took ~1 ms per call (more than the crop). Level order finds the heads' weights within ~30.
    """
    queue = deque([module])
    while queue:
        m = queue.popleft()
        for p in m._parameters.values():
            if p is not None and p.is_floating_point():
                return p
        queue.extend(c for c in m._modules.values() if c is not None)
    return None


def infer(model: nn.Module, frames: torch.Tensor, **kwargs: Any) -> Any:
    """``model(frames)`` under ``torch.inference_mode`` with the model's dtype and greedy pi.

    ``kwargs`` go to the forward (``policy=``, ``locations=``...). AdaFocus models get
    ``sample=False`` and ``policy_stats=False`` (no ``log_probs`` / ``entropy``) unless given.
    """
    param = first_parameter(model)
    if param is not None and frames.is_floating_point() and frames.dtype != param.dtype:
        frames = frames.to(param.dtype)
    if hasattr(model, "policy"):
        kwargs.setdefault("sample", False)
        kwargs.setdefault("policy_stats", False)
    with torch.inference_mode():
        return model(frames, **kwargs)
