"""The one-stage training of AdaFocusV2 (through the differentiable crop) and of Uni-AdaFocus."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from ..models.adafocus_v2 import DifferentiableFocus
from ..models.uni_adafocus import UniAdaFocus
from .base import AdaFocusStage


class EndToEndStage(AdaFocusStage):
    """One stage instead of three (official ``main_v2.py``).

    Each batch runs two passes that share one glance: pi's patches and uniformly random ones (the
    official "diversity augmentation"). Each pass's loss is the cross-entropy of every step's
    prediction plus, per frame, that of e_G's and e_L's auxiliary heads; the two are averaged.
    pi's input is detached, so pi learns only through the crop, f_L and the losses after it.

    Every stage also takes :class:`AdaFocusStage`'s arguments (``net`` must be an AdaFocusV2 model).

    Args:
        lr: base SGD learning rate (official: 0.002 ActivityNet / FCVID, 0.003 Mini-Kinetics, 0.01 Sth-Sth),
            for a batch of 32 (48 for Mini-Kinetics); scale it with the batch.
        lr_global_mult / lr_policy_mult / lr_local_mult / lr_classifier_mult: per-part multipliers
            (official: 0.5 / 0.1 / 1 / 5; Sth-Sth 0.5 / 0.01 / 1 / 1); f_G's and f_L's auxiliary heads
            go with their backbones.
        weight_decay, momentum, nesterov: SGD (official: 1e-4, 0.9, no Nesterov; Sth-Sth 5e-4).
        lr_interval: ``"epoch"``: cosine annealing set once per epoch (official), ``"step"``: per batch.
        random_pass: add the random-patch pass (official: yes).
        auxiliary_loss: add the e_G / e_L heads' losses (official: yes).
        grad_clip: max gradient norm (official: none; Sth-Sth 20).
    """

    trains: tuple[type, ...] = (DifferentiableFocus,)

    def __init__(
        self,
        num_classes: int,
        lr: float = 0.002,
        lr_global_mult: float = 0.5,
        lr_policy_mult: float = 0.1,
        lr_local_mult: float = 1.0,
        lr_classifier_mult: float = 5.0,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        nesterov: bool = False,
        lr_interval: str = "epoch",
        random_pass: bool = True,
        auxiliary_loss: bool = True,
        grad_clip: float | None = None,
        **kwargs: Any,
    ) -> None:
        if lr_interval not in ("epoch", "step"):
            raise ValueError(f"lr_interval must be 'epoch' or 'step', got {lr_interval!r}")
        super().__init__(num_classes, **kwargs)
        if not isinstance(self.model, self.trains):
            raise ValueError(
                f"{type(self).__name__} trains {' / '.join(c.__name__ for c in self.trains)} models, got "
                f"{type(self.model).__name__}" + ("" if isinstance(self.model, (DifferentiableFocus, UniAdaFocus))
                                                  else ": its crop is not differentiable; use the three V1 stages")
            )  # fmt: skip

    def pass_loss(self, frames: torch.Tensor, fmap: torch.Tensor, g: torch.Tensor, labels: torch.Tensor,
                  policy: str) -> torch.Tensor:  # fmt: skip
        """One pass's loss on a shared glance: every step's prediction plus the auxiliary heads."""
        out = self.model.forward_glanced(frames, fmap, g, policy=policy, generator=self.step_generator())
        loss = self.clip_loss(out.logits, labels)
        if self.hparams.auxiliary_loss:
            global_logits, local_logits = self.model.auxiliary_logits(out)
            loss = loss + self.clip_loss(global_logits, labels) + self.clip_loss(local_logits, labels)
        return loss

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        model, labels = self.model, batch["label"]
        frames = model.order_frames(batch["frames"])
        own = batch.get("glance_frames")  # f_G's own frames, when the data module samples them apart
        fmap, g = model.glance(model.glance_frames(frames) if own is None else model.order_frames(own))
        loss = learned = self.pass_loss(frames, fmap, g, labels, "learned")
        if self.hparams.random_pass:
            loss = (learned + self.pass_loss(frames, fmap, g, labels, "random")) / 2
        bs = len(labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/loss_learned", learned.detach(), batch_size=bs)
        return loss

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        clip = self.hparams.grad_clip or gradient_clip_val
        if clip:
            self.clip_gradients(optimizer, gradient_clip_val=clip, gradient_clip_algorithm="norm")

    def param_groups(self) -> list[dict[str, Any]]:
        """SGD groups with the per-part learning rates; every trainable parameter is in exactly one."""
        h, m = self.hparams, self.model
        return self._groups([
            ([m.global_cnn, m.global_fc], h.lr_global_mult),
            ([m.policy], h.lr_policy_mult),
            ([m.local_cnn, m.local_fc], h.lr_local_mult),
            ([m.classifier], h.lr_classifier_mult),
        ])  # fmt: skip

    def _groups(self, parts: list) -> list[dict[str, Any]]:
        h, m = self.hparams, self.model
        groups, seen = [], set()
        for modules, mult in parts:
            params = [p for mod in modules for p in mod.parameters() if p.requires_grad]
            seen.update(map(id, params))
            if mult > 0 and params:
                groups.append({"params": params, "lr": h.lr * mult})
        left = [n for n, p in m.named_parameters() if p.requires_grad and id(p) not in seen]
        if left:
            raise RuntimeError(f"EndToEndStage: parameters outside every learning-rate group: {left[:5]}")
        return groups

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.SGD(self.param_groups(), lr=h.lr, momentum=h.momentum, nesterov=h.nesterov,
                              weight_decay=h.weight_decay)  # fmt: skip
        epochs = self.trainer.max_epochs
        if h.lr_interval == "epoch" and epochs and epochs > 0:
            total, interval = epochs, "epoch"
        else:
            total, interval = max(1, int(self.trainer.estimated_stepping_batches)), "step"
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": interval}}


class UniAdaFocusStage(EndToEndStage):
    """Uni-AdaFocus's one stage (official ``main.py``): the loss of both patch passes (learned, random) plus,
    counted twice as in the official code, the glance's per-frame loss, the Monte-Carlo temporal loss and
    the auxiliary-crop spatial loss, all halved; plus ``kl_ratio`` KL(w || uniform) on the temporal
    weights and ``norm_ratio`` mean((s - 1)^2) on the patch scales.

    Takes :class:`EndToEndStage`'s arguments (``lr_policy_mult`` is the spatial policy's) and:

    Args:
        lr_temporal_mult: the temporal policy's learning-rate multiplier (official 0.2).
        kl_ratio / norm_ratio: official 0 / 1.0 (ActivityNet, FCVID), 0.75 (Mini-Kinetics).

    Official per-part multipliers: temporal 0.2, spatial 0.2, f_G and its heads 0.5, f_L 1, f_C 20.
    """

    trains = (UniAdaFocus,)

    def __init__(
        self,
        num_classes: int,
        lr_temporal_mult: float = 0.2,
        lr_policy_mult: float = 0.2,
        lr_classifier_mult: float = 20.0,
        weight_decay: float = 2e-4,
        kl_ratio: float = 0.0,
        norm_ratio: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, lr_policy_mult=lr_policy_mult, lr_classifier_mult=lr_classifier_mult,
                         weight_decay=weight_decay, **kwargs)  # fmt: skip

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        h, model, labels = self.hparams, self.model, batch["label"]
        o = model.forward_train(batch["frames"], generator=self.step_generator())
        ce = self.clip_loss
        loss = ce(o.learned.logits, labels) + ce(o.random.logits, labels)
        loss = loss + ce(model.local_fc(o.learned.local_features), labels)
        loss = loss + ce(model.local_fc(o.random.local_features), labels)
        loss = loss + 2 * (ce(o.global_logits, labels) + F.cross_entropy(o.temporal_logits, labels)
                           + F.cross_entropy(o.spatial_logits, labels))  # fmt: skip
        loss = loss / 2
        if h.kl_ratio:
            uniform = torch.full_like(o.weights, 1.0 / o.weights.shape[1])
            loss = loss + h.kl_ratio * F.kl_div(uniform.log(), o.weights, reduction="batchmean")
        if h.norm_ratio:
            loss = loss + h.norm_ratio * ((o.scales - 1) ** 2).mean()
        bs = len(labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=bs)
        self.log("train/window_side", o.learned.window_sides.detach().mean(), batch_size=bs)
        return loss

    def param_groups(self) -> list[dict[str, Any]]:
        h, m = self.hparams, self.model
        return self._groups([
            ([m.temporal_policy], h.lr_temporal_mult),
            ([m.spatial_policy], h.lr_policy_mult),
            ([m.global_cnn, m.global_fc, m.aux_fc], h.lr_global_mult),
            ([m.local_cnn, m.local_fc], h.lr_local_mult),
            ([m.classifier], h.lr_classifier_mult),
        ])  # fmt: skip
