"""Lightning training of AdaFocus: one LightningModule per stage, all holding one ``AdaFocus``."""

from .base import AdaFocusStage, load_adafocus_weights
from .predictions import PredictionWriter
from .stage0 import FullFrameStage
from .stages import FinetuneStage, PolicyStage, WarmupStage

__all__ = ["AdaFocusStage", "FinetuneStage", "FullFrameStage", "PolicyStage", "PredictionWriter", "WarmupStage",
           "load_adafocus_weights"]  # fmt: skip
