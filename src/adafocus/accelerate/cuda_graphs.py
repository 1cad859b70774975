"""Offline inference replayed as CUDA graphs: ``GraphedInfer``.

At batch 1 on a GPU, AdaFocus is bound by kernel launches, not by its FLOPs: MobileNet-V2,
ResNet-50, the two GRUs and the glue between them are hundreds of small kernels, each launched
from Python, so AdaFocus took 6.5 ms a clip on an H100 (bf16) at every patch size from 96 to 160
px, more than the full-frame MobileNet-V2 + ResNet-50 (4.8 ms). A CUDA graph records those
launches once and replays them in one call: 2.0 ms against 2.4 for that baseline.

The AdaFocus forward can be captured because it never waits for the host: pi's argmax, the
patch offsets and the crop all stay on the device. AdaFocus+ (``skip_policy``) cannot be: gathering
the kept patches needs their count on the host.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .prepare import first_parameter, infer


class GraphedInfer:
    """``infer(model, frames, **kwargs)`` captured once per input shape and replayed.

    Args:
        model: a CUDA model prepared for inference (:func:`adafocus.prepare_for_inference`).
        warmup: eager calls on a side stream before each capture (cuDNN / cuBLAS pick their
            algorithms and allocate workspaces outside the graph, as CUDA graphs require).
        pool: a memory pool (``torch.cuda.graph_pool_handle()``) shared with other graphs, so that
            their scratch memory is reused instead of held once per graph (the benchmark captures
            18 graphs; fp32 at batch 64 ran out of 80 GB without this). Only for graphs that are
            replayed one at a time, with each output used before the next replay: another graph's
            replay may overwrite it.
        **kwargs: fixed keyword arguments of every call (``policy=``...).

    Calling it with ``frames`` copies them into the graph's input buffer, replays the graph and
    returns its output, whose tensors are the graph's own buffers: the next call with the same
    shape overwrites them, so ``.clone()`` what you keep.
    """

    def __init__(self, model: nn.Module, *, warmup: int = 3, pool: Any = None, **kwargs: Any) -> None:
        param = first_parameter(model)
        if param is None or param.device.type != "cuda":
            raise ValueError("GraphedInfer needs a model on a CUDA device (model.cuda() first)")
        if getattr(model, "skip_policy", None) is not None:
            raise ValueError(
                "AdaFocus+ (skip_policy) cannot be captured: gathering the kept patches needs their count "
                "on the host; call adafocus.infer(model, frames) instead"
            )
        self.model, self.warmup, self.pool, self.kwargs = model, warmup, pool, kwargs
        self.device = param.device
        self._graphs: dict[tuple, tuple[torch.Tensor, torch.cuda.CUDAGraph, Any]] = {}

    def capture(self, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        """Record the graph for inputs of ``shape`` / ``dtype`` (done by the first call of each shape)."""
        static = torch.zeros(shape, dtype=dtype, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                infer(self.model, static, **self.kwargs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph, pool=self.pool):
            out = infer(self.model, static, **self.kwargs)
        self._graphs[(tuple(shape), dtype)] = (static, graph, out)

    def __call__(self, frames: torch.Tensor) -> Any:
        key = (tuple(frames.shape), frames.dtype)
        if key not in self._graphs:
            self.capture(*key)
        static, graph, out = self._graphs[key]
        static.copy_(frames, non_blocking=True)
        graph.replay()
        return out
