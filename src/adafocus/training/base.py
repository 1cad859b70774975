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
    def view_scores(self, frames: torch.Tensor, **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Multi-view evaluation (several crops / clips per video, ``frames (B, V, T, 3, H, W)``):
        the model runs once on the ``B*V`` clips (``kwargs`` go to its forward) and the views'
        softmax scores are averaged per video, as TSM's and MMAction2's test protocols do (averaging
        probabilities, not logits, keeps one over-confident view from outvoting the others and makes
        the score a probability again).

        Returns ``(probs (B, K)`` of the final prediction, ``step_probs (B, S, K)`` after every step
        (for the online accuracy), the model output on the ``B*V`` clips, video-major: row
        ``b*V + v`` is video ``b``'s view ``v``). A ``glance_input`` ``(B, V, T_G, ...)`` (each view's own
        glance frames) is flattened alike.
        """
        b, v = frames.shape[:2]
        if kwargs.get("glance_input") is not None:
            kwargs["glance_input"] = kwargs["glance_input"].flatten(0, 1)
        out = self.model(frames.flatten(0, 1), **kwargs)
        step_probs = torch.softmax(out.logits, -1).unflatten(0, (b, v)).mean(1)
        return step_probs[:, -1], step_probs, out

    def _evaluate(self, batch: dict[str, torch.Tensor], metrics, online, stage: str) -> torch.Tensor:
        """One validation/test batch: loss, offline metrics (top-1/5, mAP) and online per-step accuracy.

        ``frames (B, V, T, 3, H, W)`` (several views, see :meth:`view_scores`): the metrics get the
        views' mean softmax scores, the online accuracy the mean per-step probabilities, and the
        loss is the cross-entropy of the mean scores, ``-log mean_v p_v[y]``, which for one view is
        the usual cross-entropy of the logits. ``(B, T, 3, H, W)``: one view, scored directly.
        """
        frames, labels = batch["frames"], batch["label"]
        gen = torch.Generator(device=self.device).manual_seed(int(self.hparams.seed))
        if frames.dim() == 6:
            return self._evaluate_views(batch, metrics, online, stage, gen)
        out = self.model(
            frames,
            policy=self.hparams.eval_policy,
            sample=False,
            generator=gen,
            glance_input=batch.get("glance_frames"),
        )
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

    def _evaluate_views(
        self, batch: dict[str, torch.Tensor], metrics, online, stage: str, gen: torch.Generator
    ) -> torch.Tensor:
        """:meth:`_evaluate` for a multi-view batch: averaged softmax scores (:meth:`view_scores`)."""
        labels = batch["label"]
        probs, step_probs, out = self.view_scores(
            batch["frames"],
            policy=self.hparams.eval_policy,
            sample=False,
            generator=gen,
            glance_input=batch.get("glance_frames"),
        )
        # the clamp keeps a probability that underflowed to 0 from making the loss infinite
        loss = F.nll_loss(probs.clamp_min(torch.finfo(probs.dtype).tiny).log(), labels)
        metrics["top1"].update(probs, labels)
        metrics["top5"].update(probs, labels)
        if "mAP" in metrics:
            metrics["mAP"].update(probs, batch["target"].long())
        online.update(step_probs, labels)  # argmax of the mean probabilities after each step
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
        """``probs (B, K)`` softmax scores, ``offsets (B, T, 2)`` patch corners and the samples' ``index``.

        Multi-view batches ``(B, V, T, 3, H, W)``: ``probs`` is the mean of the views' softmax
        scores (:meth:`view_scores`) and ``offsets`` are the first view's (clip 0, centre crop: the
        single-view input), since patches of different crops and clips do not share coordinates.
        """
        frames = batch["frames"]
        if frames.dim() == 6:
            probs, _, out = self.view_scores(
                frames, policy=self.hparams.eval_policy, sample=False, glance_input=batch.get("glance_frames")
            )
            offsets = out.offsets.unflatten(0, frames.shape[:2])[:, 0]
            return {"probs": probs, "offsets": offsets, "index": batch.get("index")}
        out = self.model(frames, policy=self.hparams.eval_policy, sample=False, glance_input=batch.get("glance_frames"))
        return {"probs": torch.softmax(out.prediction, -1), "offsets": out.offsets, "index": batch.get("index")}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["adafocus_config"] = dict(self.model.config)
        checkpoint["adafocus_class"] = model_class_name(self.model)  # which class adafocus.load_model builds
