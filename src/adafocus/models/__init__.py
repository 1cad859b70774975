"""The AdaFocus family: a shared base (:mod:`.base`), one file per model, and their parts
(policy, classifier, crop, fixed policies, backbones)."""

from .adafocus import AdaFocus, StepOutput, StreamState
from .adafocus_tsm import AdaFocusTSM
from .base import AdaFocusBase, AdaFocusOutput
from .full_frame import TSMPlus

__all__ = ["AdaFocus", "AdaFocusBase", "AdaFocusOutput", "AdaFocusTSM", "StepOutput", "StreamState", "TSMPlus"]
