"""The AdaFocus family: a shared base (:mod:`.base`), one file per model, and their parts
(policy, classifier, crop, fixed policies, backbones)."""

from .adafocus import AdaFocus
from .adafocus_tsm import AdaFocusTSM
from .adafocus_v2 import AdaFocusV2, AdaFocusV2TSM
from .base import AdaFocusBase, AdaFocusOutput, StepOutput, StreamState
from .full_frame import TSMPlus
from .uni_adafocus import UniAdaFocus

__all__ = [
    "AdaFocus",
    "AdaFocusBase",
    "AdaFocusOutput",
    "AdaFocusTSM",
    "AdaFocusV2",
    "AdaFocusV2TSM",
    "StepOutput",
    "StreamState",
    "TSMPlus",
    "UniAdaFocus",
]
