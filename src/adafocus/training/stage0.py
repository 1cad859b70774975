"""Stage 0 (paper Appendix B.1): fine-tune f_G and f_L as frame classifiers on full frames.

The ImageNet backbones are adapted to the dataset before stage I; the two temporary linear heads
are discarded at hand-off (``init_from`` of stage I takes only the AdaFocus weights).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .base import AdaFocusStage
from .stages import _sgd_cosine


class FullFrameStage(AdaFocusStage):
    """f_G and f_L each classify every full frame (frame-averaged logits, TSN style).

    Args:
        lr: SGD learning rate of both backbones and heads (paper: 0.01 for 15 epochs).
    """

    frozen_parts = ("policy", "skip_policy", "classifier")

    def __init__(
        self,
        num_classes: int,
        lr: float = 0.01,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        self.global_head = nn.Linear(self.model.global_cnn.num_features, num_classes)
        self.local_head = nn.Linear(self.model.local_cnn.num_features, num_classes)

    def _frame_logits(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames.flatten(0, 1)
        b, t = frames.shape[:2]
        # f_G learns on the frames (AdaFocus-TSM: its 8 of 12) and at the resolution it sees later
        g = self.global_head(self.model.glance(self.model.glance_frames(frames))[1]).mean(1)
        loc = self.local_head(self.model.local_cnn(x).mean((-2, -1))).view(b, t, -1).mean(1)
        return g, loc

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        g, loc = self._frame_logits(batch["frames"])
        loss = F.cross_entropy(g, batch["label"]) + F.cross_entropy(loc, batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        g, loc = self._frame_logits(batch["frames"])
        labels = batch["label"]
        loss = F.cross_entropy(loc, labels)
        self.val_metrics["top1"].update(loc.softmax(-1), labels)
        self.val_metrics["top5"].update(loc.softmax(-1), labels)
        if "mAP" in self.val_metrics:
            self.val_metrics["mAP"].update(loc.softmax(-1), batch["target"].long())
        self.log("val/loss", loss, sync_dist=True, batch_size=len(labels))
        self.log("val/global_top1", (g.argmax(-1) == labels).float().mean(), sync_dist=True, batch_size=len(labels))
        return loss

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def configure_optimizers(self):
        h = self.hparams
        params = [*self.model.global_cnn.parameters(), *self.model.local_cnn.parameters(),
                  *self.global_head.parameters(), *self.local_head.parameters()]  # fmt: skip
        return _sgd_cosine(self, [{"params": params, "lr": h.lr}], h.weight_decay, h.momentum)
