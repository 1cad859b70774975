"""Lightning training of AdaFocus: one LightningModule per stage, all holding one ``AdaFocus``."""

from .base import AdaFocusStage, load_adafocus_weights
from .stages import FinetuneStage, PolicyStage, WarmupStage

__all__ = ["AdaFocusStage", "FinetuneStage", "PolicyStage", "WarmupStage", "load_adafocus_weights"]
