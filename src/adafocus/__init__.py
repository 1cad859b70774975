"""adafocus: spatially adaptive, efficient video recognition (AdaFocus, ICCV 2021)."""

from .backbones import create_backbone, list_backbones, register_backbone
from .crop import candidate_grid, crop_patches, pixel_offsets
from .flops import count_flops
from .model import AdaFocus, AdaFocusOutput, StepOutput, StreamState
from .policy import PolicyNetwork
from .tsm_model import AdaFocusTSM, TSMPlus
from .zoo import create_model, list_models

__all__ = [
    "AdaFocus",
    "AdaFocusOutput",
    "AdaFocusTSM",
    "PolicyNetwork",
    "StepOutput",
    "StreamState",
    "TSMPlus",
    "candidate_grid",
    "count_flops",
    "create_model",
    "create_backbone",
    "crop_patches",
    "list_backbones",
    "list_models",
    "pixel_offsets",
    "register_backbone",
]
__version__ = "0.1.0"
