"""Stage 0 (paper Appendix B.1): fine-tune f_G and f_L as frame classifiers on full frames.

The ImageNet backbones are adapted to the dataset before stage I; the two temporary linear heads
are discarded at hand-off (``init_from`` of stage I takes only the AdaFocus weights), except f_G's
head of a model that keeps one (AdaFocus-TSM's ``global_head="glancer"``, as the official code does).
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
        # a model whose f_G keeps its own frame classifier (AdaFocus-TSM's glancer head) trains that one
        if getattr(self.model, "global_head", None) is None:
            self.global_head = nn.Linear(self.model.global_cnn.num_features, num_classes)
        self.local_head = nn.Linear(self.model.local_cnn.num_features, num_classes)

    @property
    def frame_head(self) -> nn.Module:
        """f_G's frame classifier: the model's own (kept at hand-off) or this stage's temporary one."""
        own = getattr(self.model, "global_head", None)
        return own if own is not None else self.global_head

    def _frame_logits(
        self, frames: torch.Tensor, glance_input: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = frames.flatten(0, 1)
        b, t = frames.shape[:2]
        # f_G learns on the frames (AdaFocus-TSM: its 8 of 12) and at the resolution it sees later
        glance = self.model.glance_frames(frames) if glance_input is None else glance_input
        g = self.frame_head(self.model.glance(glance)[1]).mean(1)
        loc = self.local_head(self.model.local_cnn(x).mean((-2, -1))).view(b, t, -1).mean(1)
        return g, loc

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        g, loc = self._frame_logits(batch["frames"], batch.get("glance_frames"))
        loss = F.cross_entropy(g, batch["label"]) + F.cross_entropy(loc, batch["label"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["label"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        frames, labels = batch["frames"], batch["label"]
        if frames.dim() == 6:  # several crops / clips per video: their softmax scores are averaged
            b, v = frames.shape[:2]
            own = batch.get("glance_frames")  # each view's own glance frames, (B, V, T_G, ...)
            logits = self._frame_logits(frames.flatten(0, 1), None if own is None else own.flatten(0, 1))
            g, loc = (x.softmax(-1).unflatten(0, (b, v)).mean(1) for x in logits)
            loss = F.nll_loss(loc.clamp_min(torch.finfo(loc.dtype).tiny).log(), labels)
        else:
            g_logits, loc_logits = self._frame_logits(frames, batch.get("glance_frames"))
            loss = F.cross_entropy(loc_logits, labels)
            g, loc = g_logits.softmax(-1), loc_logits.softmax(-1)
        self.val_metrics["top1"].update(loc, labels)
        self.val_metrics["top5"].update(loc, labels)
        if "mAP" in self.val_metrics:
            self.val_metrics["mAP"].update(loc, batch["target"].long())
        self.log("val/loss", loss, sync_dist=True, batch_size=len(labels))
        self.log("val/global_top1", (g.argmax(-1) == labels).float().mean(), sync_dist=True, batch_size=len(labels))
        return loss

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute())
        self.val_metrics.reset()

    def configure_optimizers(self):
        h = self.hparams
        params = [*self.model.global_cnn.parameters(), *self.model.local_cnn.parameters(),
                  *self.frame_head.parameters(), *self.local_head.parameters()]  # fmt: skip
        # stage 0 keeps its own recipe (Nesterov, cosine per batch); docs/differences.md compares it
        return _sgd_cosine(self, [{"params": params, "lr": h.lr}], h.weight_decay, h.momentum,
                           nesterov=True, lr_interval="step")  # fmt: skip
