"""The three training stages of AdaFocus (paper Sec. 3.2, Appendix B), one LightningModule each."""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from pytorch_lightning.utilities import rank_zero_info, rank_zero_warn

from .base import AdaFocusStage, EvalPolicy
from .ppo import normalised_returns, ppo_loss
from .reward import rollout

LrInterval = Literal["epoch", "step"]


def official_cosine_factor(epoch: int, max_epochs: int) -> float:
    """The official V1 ``adjust_learning_rate`` (``lr_type=cos``) as a factor of the initial lr.

    The official loop runs ``range(0, epochs + 1)`` and sets ``0.5 * lr * (1 + cos(pi * e / epochs))``
    at the start of epoch ``e``: ``epochs + 1`` epochs, the last one at lr 0. Here ``max_epochs`` is
    the number of epochs actually run, so the official ``epochs`` is ``max_epochs - 1``.
    """
    return 0.5 * (1.0 + math.cos(math.pi * epoch / max(1, max_epochs - 1)))


def _sgd_cosine(
    module: AdaFocusStage,
    groups: list[dict],
    weight_decay: float,
    momentum: float,
    *,
    nesterov: bool,
    lr_interval: LrInterval,
) -> dict[str, Any]:
    """SGD over the groups with a positive lr, annealed to 0 by a cosine.

    ``lr_interval="epoch"``: :func:`official_cosine_factor`, set once per epoch (the official V1
    schedule); ``"step"``: ``CosineAnnealingLR`` over ``estimated_stepping_batches``, set per batch.
    """
    if lr_interval not in ("epoch", "step"):
        raise ValueError(f"lr_interval must be 'epoch' or 'step', got {lr_interval!r}")
    groups = [g for g in groups if g["lr"] > 0]
    opt = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    epochs = module.trainer.max_epochs
    if lr_interval == "epoch" and not (epochs and epochs > 0):
        # a run bounded by max_steps alone has no epoch count to anneal over
        rank_zero_warn(f"lr_interval='epoch' needs trainer.max_epochs (got {epochs}); annealing per step instead")
        lr_interval = "step"
    if lr_interval == "epoch":
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda e: official_cosine_factor(e, epochs))
    else:
        total = max(1, int(module.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": lr_interval}}


class WarmupStage(AdaFocusStage):
    """Stage I: f_L and f_C learn from uniformly random patches (Eq. 5); pi is not used.

    Every stage also takes :class:`AdaFocusStage`'s arguments (``net``, ``init_from``, ...).

    Args:
        eval_policy: validation uses random patches by default (pi is untrained in stage I).
        lr_local / lr_classifier / lr_global: initial SGD learning rates (paper: 5e-4 / 0.05 / f_G
            frozen). ``lr_global=0`` freezes f_G (requires_grad off, BN in eval mode).
        weight_decay, momentum, nesterov: SGD (official: 1e-4, 0.9, no Nesterov), weight decay on every
            parameter (BN and biases too, as in the official code).
        lr_interval: ``"epoch"`` (official): cosine set once per epoch, ``0.5 lr (1 + cos(pi e /
            (max_epochs - 1)))``, so ``max_epochs = epochs + 1`` of the official code reproduces its
            schedule, last epoch at lr 0; ``"step"``: cosine per batch over all training steps.
    """

    def __init__(
        self,
        num_classes: int,
        eval_policy: EvalPolicy = "random",
        lr_local: float = 5e-4,
        lr_classifier: float = 0.05,
        lr_global: float = 0.0,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        nesterov: bool = False,
        lr_interval: LrInterval = "epoch",
        **kwargs: Any,
    ) -> None:
        if lr_interval not in ("epoch", "step"):
            raise ValueError(f"lr_interval must be 'epoch' or 'step', got {lr_interval!r}")
        self.frozen_parts = ("policy", "skip_policy") + (("global_cnn",) if lr_global <= 0 else ())
        super().__init__(num_classes, eval_policy=eval_policy, **kwargs)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        frames, labels = batch["frames"], batch["label"]
        out = self.model(
            frames, policy="random", generator=self.step_generator(), glance_input=batch.get("glance_frames")
        )
        loss = self.clip_loss(out.logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def configure_optimizers(self):
        h = self.hparams
        groups = [
            {"params": list(self.model.local_cnn.parameters()), "lr": h.lr_local},
            {"params": list(self.model.classifier.parameters()), "lr": h.lr_classifier},
            {"params": list(self.model.global_cnn.parameters()), "lr": h.lr_global},
        ]
        return _sgd_cosine(self, groups, h.weight_decay, h.momentum, nesterov=h.nesterov, lr_interval=h.lr_interval)


class PolicyStage(AdaFocusStage):
    """Stage II: pi (and pi' for AdaFocus+) learn by PPO; f_G, f_L and f_C are frozen.

    Manual optimisation: each batch is one rollout of T decisions per video, scored with Eq. 7
    (and Eq. 10), discounted with ``gamma``, then ``ppo_epochs`` Adam steps on the clipped
    surrogate. Note that every optimiser step counts as a Lightning ``global_step``: ``max_steps``
    is *batches x ppo_epochs* (with the default ``ppo_epochs=1``, simply batches).

    Args:
        lr, betas: Adam (official: 3e-4, (0.9, 0.999)).
        gamma: discount (paper: 0.7).
        clip, value_coef, entropy_coef, ppo_epochs: PPO (official: 0.2, 0.5, 0.01, 1).
        skip_penalty: lambda of Eq. 10 (paper: 1e-6), used when the net has a skip policy.
        grad_clip: max gradient norm for pi/pi' (``None``: no clipping).
    """

    frozen_parts = ("global_cnn", "local_cnn", "classifier")

    def __init__(
        self,
        num_classes: int,
        lr: float = 3e-4,
        betas: tuple[float, float] = (0.9, 0.999),
        gamma: float = 0.7,
        clip: float = 0.2,
        value_coef: float = 0.5,
        entropy_coef: float = 0.01,
        ppo_epochs: int = 1,
        skip_penalty: float = 1e-6,
        grad_clip: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, **kwargs)
        self.automatic_optimization = False

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        h = self.hparams
        frames, labels = batch["frames"], batch["label"]
        ro = rollout(
            self.model,
            frames,
            labels,
            generator=self.step_generator(),
            skip_penalty=h.skip_penalty,
            glance_input=batch.get("glance_frames"),
        )
        returns = normalised_returns(ro.rewards, h.gamma)
        keep_returns = normalised_returns(ro.keep_rewards, h.gamma) if ro.keep is not None else None
        opt = self.optimizers()
        kw = dict(clip=h.clip, value_coef=h.value_coef, entropy_coef=h.entropy_coef)
        for _ in range(h.ppo_epochs):
            loss, stats = ppo_loss(self.model.policy, ro.feature_maps, ro.actions, ro.log_probs, returns, **kw)
            if keep_returns is not None:
                kloss, kstats = ppo_loss(
                    self.model.skip_policy, ro.feature_maps, ro.keep, ro.keep_log_probs, keep_returns, **kw
                )
                loss = loss + kloss
                stats.update({f"keep_{k}": v for k, v in kstats.items()})
            opt.zero_grad()
            self.manual_backward(loss)
            if h.grad_clip:
                self.clip_gradients(opt, gradient_clip_val=h.grad_clip, gradient_clip_algorithm="norm")
            opt.step()
        bs = len(labels)
        self.log("train/reward", ro.rewards.mean(), prog_bar=True, batch_size=bs)
        self.log("train/loss", loss.detach(), batch_size=bs)
        self.log_dict({f"train/{k}": v for k, v in stats.items()}, batch_size=bs)
        if ro.keep is not None:
            self.log("train/keep_ratio", ro.keep.mean(), batch_size=bs)

    def configure_optimizers(self):
        params = list(self.model.policy.parameters())
        if self.model.skip_policy is not None:
            params += list(self.model.skip_policy.parameters())
        return torch.optim.Adam(params, lr=self.hparams.lr, betas=tuple(self.hparams.betas))


class FinetuneStage(AdaFocusStage):
    """Stage III: f_C (and optionally f_L) fine-tuned on the patches the learned policy picks (Eq. 5).

    Args:
        lr_classifier: SGD learning rate of f_C (paper: 5e-3 ActivityNet/FCVID, 5e-4 Mini-Kinetics).
        lr_local: learning rate of f_L; 0 (default, as in the paper) keeps it frozen.
        weight_decay, momentum, nesterov, lr_interval: as for :class:`WarmupStage` (official: 1e-4, 0.9,
            no Nesterov, cosine set per epoch).
        sample_policy: ``False`` (default): take pi's argmax patch, as the official code does in
            stage III (``training=False``); ``True``: sample it, v_t ~ pi (the paper's Eq. 5 wording).
        keep_ratio: AdaFocus+ — before training, set rho so that f_L runs on this share of the
            training frames (eta); ``None`` keeps the current threshold.
        threshold_batches: training batches used to solve rho.
    """

    def __init__(
        self,
        num_classes: int,
        lr_classifier: float = 5e-3,
        lr_local: float = 0.0,
        weight_decay: float = 1e-4,
        momentum: float = 0.9,
        sample_policy: bool = False,
        keep_ratio: float | None = None,
        threshold_batches: int = 50,
        nesterov: bool = False,
        lr_interval: LrInterval = "epoch",
        **kwargs: Any,
    ) -> None:
        if lr_interval not in ("epoch", "step"):
            raise ValueError(f"lr_interval must be 'epoch' or 'step', got {lr_interval!r}")
        self.frozen_parts = ("global_cnn", "policy", "skip_policy") + (("local_cnn",) if lr_local <= 0 else ())
        super().__init__(num_classes, **kwargs)

    def on_fit_start(self) -> None:
        if self.hparams.keep_ratio is None or self.model.skip_policy is None:
            return
        probs = []
        loader = self.trainer.datamodule.train_dataloader()
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if i >= self.hparams.threshold_batches:
                    break
                fmap, _ = self.model.glance(batch["frames"].to(self.device))
                probs.append(torch.sigmoid(self.model.skip_policy(fmap).logits.squeeze(-1)))
        gathered = self.all_gather(torch.cat(probs))
        rho = self.model.solve_keep_threshold(gathered, self.hparams.keep_ratio)
        rank_zero_info(f"AdaFocus+: rho = {rho:.4f} keeps {self.hparams.keep_ratio:.0%} of training frames")

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        frames, labels = batch["frames"], batch["label"]
        out = self.model(
            frames,
            sample=self.hparams.sample_policy,
            generator=self.step_generator(),
            glance_input=batch.get("glance_frames"),
        )
        loss = self.clip_loss(out.logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(labels))
        return loss

    def configure_optimizers(self):
        h = self.hparams
        groups = [
            {"params": list(self.model.classifier.parameters()), "lr": h.lr_classifier},
            {"params": list(self.model.local_cnn.parameters()), "lr": h.lr_local},
        ]
        return _sgd_cosine(self, groups, h.weight_decay, h.momentum, nesterov=h.nesterov, lr_interval=h.lr_interval)
