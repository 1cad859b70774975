"""adafocus: spatially adaptive, efficient video recognition (AdaFocus, ICCV 2021).

The names below are imported on first use, so that ``import adafocus`` (and the ``adafocus``
command's ``--help``) does not pay for torch until a model is touched.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .lazy import lazy_exports
from .version import __version__ as __version__

# public name -> module that defines it
_EXPORTS = {
    "AdaFocus": "models",
    "AdaFocusBase": "models",
    "AdaFocusOutput": "models",
    "StepOutput": "models",
    "StreamState": "models",
    "AdaFocusTSM": "models",
    "AdaFocusV2": "models",
    "AdaFocusV2TSM": "models",
    "EndToEndStage": "training",
    "UniAdaFocus": "models",
    "UniAdaFocusStage": "training",
    "TSMPlus": "models",
    "PolicyNetwork": "models.policy",
    "candidate_grid": "models.crop",
    "crop_patches": "models.crop",
    "pixel_offsets": "models.crop",
    "count_flops": "flops",
    "sample_patches": "models.crop",
    "create_backbone": "models.backbones",
    "list_backbones": "models.backbones",
    "register_backbone": "models.backbones",
    "create_model": "registry",
    "list_models": "registry",
    "CheckpointError": "errors",
    "load_model": "checkpoint",
    "save_model": "checkpoint",
    "register_model_class": "checkpoint",
    "Preprocess": "preprocess",
    "infer": "accelerate",
    "prepare_for_inference": "accelerate",
}
__all__ = [
    "AdaFocus",
    "AdaFocusBase",
    "AdaFocusOutput",
    "AdaFocusTSM",
    "AdaFocusV2",
    "AdaFocusV2TSM",
    "CheckpointError",
    "EndToEndStage",
    "PolicyNetwork",
    "Preprocess",
    "StepOutput",
    "StreamState",
    "TSMPlus",
    "UniAdaFocus",
    "UniAdaFocusStage",
    "candidate_grid",
    "count_flops",
    "create_backbone",
    "create_model",
    "crop_patches",
    "infer",
    "list_backbones",
    "list_models",
    "load_model",
    "pixel_offsets",
    "prepare_for_inference",
    "register_backbone",
    "register_model_class",
    "sample_patches",
    "save_model",
]


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .accelerate import infer, prepare_for_inference
    from .checkpoint import load_model, register_model_class, save_model
    from .errors import CheckpointError
    from .flops import count_flops
    from .models import (
        AdaFocus,
        AdaFocusBase,
        AdaFocusOutput,
        AdaFocusTSM,
        AdaFocusV2,
        AdaFocusV2TSM,
        StepOutput,
        StreamState,
        TSMPlus,
    )
    from .models.backbones import create_backbone, list_backbones, register_backbone
    from .models.crop import candidate_grid, crop_patches, pixel_offsets, sample_patches
    from .models.policy import PolicyNetwork
    from .preprocess import Preprocess
    from .registry import create_model, list_models
    from .training import EndToEndStage
