"""``prepare_for_inference`` + ``infer``: offline inference of a trained model, tuned in place.

The offline forward already batches the work (f_G: one call on all B*T frames, pi: one GRU call
over T steps, the crop: one indexing op, f_L: one call on all kept patches). What is left for speed
is the execution of the networks; each option below was kept because one benchmark run showed it
paying for itself on a supported torch API (the figures: ``docs/benchmarks.md``):

* BatchNorm folding (:mod:`.batchnorm`) and channels_last: f_G ~25% and ~10% faster on the CPU.
* int8 dynamic GRU / linear weights for pi and f_C (``quantize_heads``, ``torch.ao`` dynamic
  quantization): at batch 1 their cost fell ~3x (the heads' share of the forward 8% -> 3%).
* ``dtype=torch.bfloat16`` / ``float16`` and ``compile=True`` (``torch.compile``): GPUs, where the
  earlier H100 runs measured them; on this CPU compile bought ~2%.
* int8 f_G needs calibration frames: :func:`adafocus.accelerate.quantize.quantize_glance`.
"""

from __future__ import annotations

import warnings
from collections import deque
from typing import Any

import torch
from torch import nn

from ..models.base import AdaFocusBase
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
    compile_kwargs: dict[str, Any] | None = None,
    blocked_layout: bool | None = None,
) -> nn.Module:
    """Tune ``model`` (AdaFocus, AdaFocusTSM, TSMPlus or any module) for offline inference, in place.

    Puts it in eval mode, folds BN into convolutions, switches to channels_last and casts to
    ``dtype``; ``quantize_heads`` gives pi / pi' / f_C int8 dynamically quantized GRU and linear
    layers (CPU, float32 only); with ``compile=True`` each backbone (``global_cnn`` /
    ``local_cnn``, else the whole model) is replaced by its ``torch.compile``'d version (the
    AdaFocus forward itself has data-dependent parts — the crop offsets, AdaFocus+'s kept frames —
    and stays eager). The model is no longer trainable afterwards (BN statistics are gone).
    ``blocked_layout`` is accepted for earlier code and ignored (oneDNN's blocked layout was
    dropped: it rested on private torch ops for a few percent, see ``docs/benchmarks.md``).
    Returns ``model``.
    """
    if blocked_layout:
        warnings.warn(
            "prepare_for_inference(blocked_layout=...) was dropped and is ignored", FutureWarning, stacklevel=2
        )
    model.eval()
    if fold_bn:
        fold_batchnorm(model)
    if dtype is not None:
        model.to(dtype)
    if channels_last:  # the 2-D convolutions; Uni-AdaFocus's 3-D ones keep their layout
        for m in model.modules():
            if isinstance(m, nn.Conv2d | nn.BatchNorm2d):
                m.to(memory_format=torch.channels_last)
    if quantize_heads:
        quantize_recurrent_heads(model)
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
    if isinstance(model, AdaFocusBase):
        kwargs.setdefault("sample", False)
        kwargs.setdefault("policy_stats", False)
    with torch.inference_mode():
        return model(frames, **kwargs)
