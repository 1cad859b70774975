"""The LightningModule shared by the three stages: model construction, hand-off, evaluation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.utilities import rank_zero_info
from torch import nn

from ..checkpoint import model_class_name, state_dict_from_checkpoint
from ..errors import CheckpointError
from ..models import AdaFocus, AdaFocusBase
from ..serialization import read_checkpoint
from .metrics import OnlineAccuracy, offline_metrics

EvalPolicy = Literal["learned", "random", "centre", "gaussian"]


def read_init_weights(model: nn.Module, path: str, *, trust: bool = False) -> dict[str, torch.Tensor]:
    """The weights ``init_from`` hands to ``model``: read safely (``trust``: see
    :func:`adafocus.checkpoint.read_checkpoint`) from a stage checkpoint, a model file or a
    state_dict. Raises :class:`~adafocus.CheckpointError` (one line) for an unreadable file, one
    that holds none of ``model``'s weights, or weights of another shape."""
    try:
        sd = state_dict_from_checkpoint(read_checkpoint(path, trust=trust), path)
    except CheckpointError as err:
        raise type(err)(f"init_from {err}") from None
    own = model.state_dict()
    if not any(k in own for k in sd):
        raise CheckpointError(
            f"init_from {path}: holds none of this {type(model).__name__}'s weights (its keys start "
            f"{sorted(sd)[:3]}): a checkpoint of another model?"
        )
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in sd.items()
           if k in own and v.shape != own[k].shape]  # fmt: skip
    if bad:
        raise CheckpointError(
            f"init_from {path}: weights of another architecture, {len(bad)} shapes differ (e.g. {bad[0]})"
        )
    return sd


def load_adafocus_weights(model: nn.Module, path: str, *, trust: bool = False) -> tuple[list[str], list[str]]:
    """Load the model weights of a stage checkpoint (or a model file) into ``model``
    (:func:`read_init_weights`); returns ``(missing, unexpected)`` keys."""
    result = model.load_state_dict(read_init_weights(model, path, trust=trust), strict=False)
    return list(result.missing_keys), list(result.unexpected_keys)


class AdaFocusStage(pl.LightningModule):
    """Common base: builds the AdaFocus net, loads ``init_from``, evaluates with a chosen policy.

    Args:
        num_classes: linked from the data module by the CLI.
        net: a builder ``num_classes -> AdaFocus`` (in YAML: ``class_path: adafocus.AdaFocus``, or
            ``adafocus.AdaFocusTSM`` for the Sth-Sth models, plus
            ``init_args``); default: the paper's MobileNet-V2 + ResNet-50 model.
        init_from: checkpoint of the previous stage; only the AdaFocus weights are taken
            (``--ckpt_path`` instead resumes this same stage with optimizer and loop state). Read
            safely: a file holding objects other than tensors and plain data is refused.
        trust_init_from: unpickle ``init_from`` fully (it may run code): only for files you vouch for.
        multi_label: targets are multi-hot (ActivityNet, FCVID): also report macro mAP.
        eval_policy: policy used in validation/test: the learned one or a fixed baseline.
        seed: base of the per-step RNG streams (patch sampling), so that resumed runs are exact.
    """

    frozen_parts: tuple[str, ...] = ()

    def __init__(
        self,
        num_classes: int,
        net: Callable[[int], AdaFocusBase] | None = None,
        init_from: str | None = None,
        multi_label: bool = False,
        eval_policy: EvalPolicy = "learned",
        seed: int = 0,
        trust_init_from: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net"])
        self.model: AdaFocusBase = net(num_classes) if net is not None else AdaFocus(num_classes)
        if init_from:
            missing, unexpected = load_adafocus_weights(self.model, init_from, trust=trust_init_from)
            rank_zero_info(
                f"init_from {init_from}: {len(missing)} missing keys {missing[:6]}, "
                f"{len(unexpected)} unexpected keys {unexpected[:6]}"
            )
        for part in self.frozen_parts:
            self.model.set_trainable(**{part: False})
        self.train()  # Lightning captures and restores per-module modes: start with frozen parts in eval
        self.val_metrics = offline_metrics(num_classes, multi_label).clone(prefix="val/")
        self.test_metrics = offline_metrics(num_classes, multi_label).clone(prefix="test/")
        self.val_online = OnlineAccuracy()
        self.test_online = OnlineAccuracy()

    def train(self, mode: bool = True) -> AdaFocusStage:
        super().train(mode)
        for part in self.frozen_parts:  # frozen parts also keep BN statistics and dropout fixed
            if getattr(self.model, part) is not None:
                getattr(self.model, part).eval()
        return self

    def on_train_epoch_start(self) -> None:
        self.train()

    def step_generator(self) -> torch.Generator:
        """An RNG stream determined by (seed, global step, rank): exact under resume and DDP."""
        gen = torch.Generator(device=self.device)
        gen.manual_seed(hash((self.hparams.seed, self.global_step, self.global_rank)) % (2**63))
        return gen

    @staticmethod
    def clip_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Eq. 5: cross-entropy of every step's prediction, averaged over the T steps."""
        return F.cross_entropy(logits.flatten(0, 1), labels.repeat_interleave(logits.shape[1]))

    # ---- evaluation ----------------------------------------------------------------------
    def _evaluate(self, batch: dict[str, torch.Tensor], metrics, online, stage: str) -> torch.Tensor:
        frames, labels = batch["frames"], batch["label"]
        gen = torch.Generator(device=self.device).manual_seed(int(self.hparams.seed))
        out = self.model(frames, policy=self.hparams.eval_policy, sample=False, generator=gen)
        final = out.prediction
        loss = F.cross_entropy(final, labels)
        probs = torch.softmax(final, -1)
        metrics["top1"].update(probs, labels)
        metrics["top5"].update(probs, labels)
        if "mAP" in metrics:
            metrics["mAP"].update(probs, batch["target"].long())
        online.update(out.logits, labels)
        self.log(f"{stage}/loss", loss, sync_dist=True, batch_size=len(labels))
        if out.keep is not None:
            self.log(f"{stage}/keep_ratio", out.keep.float().mean(), sync_dist=True, batch_size=len(labels))
        return loss

    def _log_epoch(self, metrics, online, stage: str) -> None:
        self.log_dict(metrics.compute())
        per_step = online.compute()
        for t, acc in enumerate(per_step.reshape(-1).tolist(), start=1):  # AdaFocus-TSM: one step
            self.log(f"{stage}/online_top1_t{t:02d}", acc)
        metrics.reset()
        online.reset()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, self.val_metrics, self.val_online, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_epoch(self.val_metrics, self.val_online, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, self.test_metrics, self.test_online, "test")

    def on_test_epoch_end(self) -> None:
        self._log_epoch(self.test_metrics, self.test_online, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> dict[str, Any]:
        out = self.model(batch["frames"], policy=self.hparams.eval_policy, sample=False)
        return {"probs": torch.softmax(out.prediction, -1), "offsets": out.offsets, "index": batch.get("index")}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["adafocus_config"] = dict(self.model.config)
        checkpoint["adafocus_class"] = model_class_name(self.model)  # which class adafocus.load_model builds
