"""Opt-in speed-ups for offline inference, off the models' own code path.

:func:`prepare_for_inference` applies them to a trained model in place; :func:`infer` runs it.
Each feature, the measurement that keeps it and the torch API it rests on: ``docs/benchmarks.md``.
"""

from .batchnorm import fold_batchnorm
from .memory import keep_freed_memory
from .prepare import first_parameter, infer, prepare_for_inference
from .quantize import quantize_backbone, quantize_glance, quantize_recurrent_heads

__all__ = [
    "first_parameter",
    "fold_batchnorm",
    "infer",
    "keep_freed_memory",
    "prepare_for_inference",
    "quantize_backbone",
    "quantize_glance",
    "quantize_recurrent_heads",
]
