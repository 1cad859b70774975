"""Lightning training of the AdaFocus family: one LightningModule per stage (V1: three, V2: one), all
holding one family model."""

from .base import AdaFocusStage, load_adafocus_weights
from .end_to_end import EndToEndStage, UniAdaFocusStage
from .predictions import PredictionWriter
from .stage0 import FullFrameStage
from .stages import FinetuneStage, PolicyStage, WarmupStage

__all__ = [
    "AdaFocusStage",
    "EndToEndStage",
    "FinetuneStage",
    "FullFrameStage",
    "PolicyStage",
    "PredictionWriter",
    "UniAdaFocusStage",
    "WarmupStage",
    "load_adafocus_weights",
]
