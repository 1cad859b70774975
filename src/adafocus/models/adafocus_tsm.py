"""``AdaFocusTSM`` (paper Sec. 4.2, Table 3): patch locations per video, temporal-shift backbones.

Following the official Something-Something code (``models/gfv_net.py``, ``models/ppo_continuous.py``):

* f_G = TSM-MobileNet-V2 on ``global_frames`` (8) frames, f_L = TSM-ResNet-50 on ``local_frames``
  (12) patches; each backbone shifts over its own frame count.
* pi sees the glance maps stacked on channels and picks **one** patch location per video
  (``decisions_per_video=1``, the official ``video_div=1``): by default a *continuous* location
  from a Gaussian policy trained by PPO (:class:`~adafocus.models.gaussian_policy.GaussianPolicy`,
  official ``ppo_continuous`` with ``action_std=0.25``); ``policy_type="categorical"`` picks among
  G x G candidates instead. The 12 frames are all cropped there, so f_L's temporal shift mixes
  patches that share one visual angle.
* ``decisions_per_video=S`` splits the clip into S equal runs of frames with a location each (the
  official ``video_div``; S = ``local_frames`` with ``global_frames == local_frames`` is one location
  per frame, as the paper's Fig. 1 draws it); pi's GRU carries the history from run to run, and
  step s's prediction averages the local frames of runs 1..s.
* f_C: the mean of the glance frames' logits plus the mean of the local frames' logits. The global
  logits come from f_G's own frame classifier (``global_head="glancer"``, official: the stage-0
  TSM-MobileNet-V2's head, frozen with f_G; trained here by :class:`~adafocus.training.FullFrameStage`),
  or from a bias-free linear layer of f_C trained with it (``global_head="classifier"``).

The official loader samples the 8 and the 12 frames separately from the video (TSN segments): so
does :class:`~adafocus.data.VideoDataModule` with ``glance_frames=8`` (the stages pass them as
``glance_input``); without them f_G takes the 8 of the clip's 12 frames nearest to 8 evenly spaced
segment centres (:func:`glance_indices`). With plain backbones and
``global_frames == local_frames`` it is AdaFocus with one patch per video.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from .backbones import WeightsArg
from .backbones.tsm import set_num_frames
from .base import AdaFocusBase, check_positive
from .classifier import FrameAverageClassifier
from .gaussian_policy import GaussianPolicy
from .policy import PolicyNetwork


def glance_indices(local_frames: int, global_frames: int) -> list[int]:
    """Indices of ``global_frames`` frames among ``local_frames``: the centres of equal segments."""
    return [min(local_frames - 1, int((i + 0.5) * local_frames / global_frames)) for i in range(global_frames)]


class AdaFocusTSM(AdaFocusBase):
    """AdaFocus-TSM: patch locations per video (default one), 8 global + 12 local frames, frame-average f_C.

    Takes :class:`~adafocus.models.base.AdaFocusBase`'s arguments (``grid_size``: the categorical
    pi's G) and:

    Args:
        global_frames / local_frames: frames seen by f_G (8) and f_L (12); clips have ``local_frames``.
        policy_hidden_dim / policy_channels: pi's width (official Sth-Sth: 1024 / 64).
        dropout: before f_C's local linear layer.
        policy_type: ``"gaussian"`` (official ``ppo_continuous``) or ``"categorical"`` (G x G grid).
        action_std: the Gaussian pi's standard deviation (official runs: 0.25).
        policy_batch_norm: BatchNorm in pi's encoder (official ``actorcritic_with_bn``, both PPO variants).
        decisions_per_video: S, locations per clip, one per equal run of frames (official ``video_div``).
        global_head: ``"glancer"`` (f_G's own frame classifier, official) or ``"classifier"`` (f_C's layer).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        global_backbone: str = "tsm_mobilenet_v2",
        local_backbone: str = "tsm_resnet50",
        global_weights: WeightsArg = None,
        local_weights: WeightsArg = None,
        patch_size: int = 144,
        grid_size: int = 5,
        input_size: int = 224,
        glance_size: int | None = None,
        global_frames: int = 8,
        local_frames: int = 12,
        policy_hidden_dim: int = 1024,
        policy_channels: int = 64,
        dropout: float = 0.5,
        gaussian_sigma: float = 0.25,
        policy_type: Literal["gaussian", "categorical"] = "gaussian",
        action_std: float = 0.25,
        policy_batch_norm: bool = True,
        decisions_per_video: int = 1,
        global_head: Literal["glancer", "classifier"] = "glancer",
    ) -> None:
        check_positive(global_frames=global_frames, local_frames=local_frames, decisions_per_video=decisions_per_video)
        if global_frames > local_frames:
            raise ValueError(
                f"global_frames={global_frames} > local_frames={local_frames}: f_G's frames come from the clip"
            )
        if policy_type not in ("gaussian", "categorical"):
            raise ValueError(f"policy_type must be 'gaussian' or 'categorical', got {policy_type!r}")
        if global_head not in ("glancer", "classifier"):
            raise ValueError(f"global_head must be 'glancer' or 'classifier', got {global_head!r}")
        if global_frames % decisions_per_video or local_frames % decisions_per_video:
            raise ValueError(
                f"decisions_per_video={decisions_per_video} must divide global_frames={global_frames} and "
                f"local_frames={local_frames} (each decision covers an equal run of frames)"
            )
        super().__init__(num_classes, global_backbone=global_backbone, local_backbone=local_backbone,
                         global_weights=global_weights, local_weights=local_weights, patch_size=patch_size,
                         grid_size=grid_size, input_size=input_size, glance_size=glance_size,
                         gaussian_sigma=gaussian_sigma, config=locals())  # fmt: skip
        self.global_frames, self.local_frames, self.clip_frames = global_frames, local_frames, local_frames
        self.policy_type, self.action_std, self.policy_batch_norm = policy_type, action_std, policy_batch_norm
        self.decisions_per_video = decisions_per_video
        set_num_frames(self.global_cnn, global_frames)
        set_num_frames(self.local_cnn, local_frames)
        c, h, w = self.glance_map_shape(global_frames)  # the shift needs whole clips
        per_decision = global_frames // decisions_per_video
        self.policy = self.make_policy(c * per_decision, (h, w), policy_hidden_dim, policy_channels)
        d_g, d_l = self.global_cnn.num_features, self.local_cnn.num_features
        glancer = global_head == "glancer"
        self.classifier = FrameAverageClassifier(None if glancer else d_g, d_l, num_classes, dropout=dropout)
        # f_G's own frame classifier (official Glancer head): part of f_G, frozen and trained with it
        self.global_head = nn.Linear(d_g, num_classes) if glancer else None
        self.register_buffer(
            "glance_index", torch.tensor(glance_indices(local_frames, global_frames)), persistent=False
        )

    @classmethod
    def upgrade_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        """Configs saved before the Gaussian policy and the glancer head were added describe the
        categorical pi and f_C's global layer: rebuild those files as they were."""
        if "policy_type" not in config:
            config = dict(config, policy_type="categorical", policy_batch_norm=False, global_head="classifier")
        return config

    def make_policy(self, in_channels: int, feature_hw: tuple[int, int], hidden_dim: int, channels: int) -> nn.Module:
        """pi over the stacked glance maps: a Gaussian over (y, x) or a choice among the G x G candidates."""
        if self.policy_type == "gaussian":
            return GaussianPolicy(in_channels, feature_hw, hidden_dim=hidden_dim, reduced_channels=channels,
                                  batch_norm=self.policy_batch_norm, action_std=self.action_std)  # fmt: skip
        return PolicyNetwork(in_channels, feature_hw, self.grid_size**2, hidden_dim=hidden_dim,
                             reduced_channels=channels, batch_norm=self.policy_batch_norm)  # fmt: skip

    def decisions(self, num_frames: int) -> int:
        return self.decisions_per_video

    def actions_to_locations(self, actions: torch.Tensor) -> torch.Tensor:
        """Candidate indices to locations; a Gaussian pi's actions already are locations ``(B, S, 2)``."""
        return actions if self.policy_type == "gaussian" else super().actions_to_locations(actions)

    def glance_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return frames if frames.shape[1] == self.global_frames else frames.index_select(1, self.glance_index)

    def policy_input(self, feature_maps: torch.Tensor) -> torch.Tensor:
        """Each decision's run of e_G maps stacked on channels: ``(B, S, T_G/S * C, h, w)``."""
        return feature_maps.reshape(feature_maps.shape[0], self.decisions_per_video, -1, *feature_maps.shape[-2:])

    def global_logits(self, global_feats: torch.Tensor) -> torch.Tensor:
        """The glance frames' mean logits ``(B, K)`` (f_G's head, or f_C's global layer)."""
        if self.global_head is not None:
            return self.global_head(global_feats).mean(1)
        return self.classifier.fc_global(self.classifier.dropout(global_feats)).mean(1)

    def classify(self, global_feats: torch.Tensor, local_feats: torch.Tensor, state: Any = None):
        """Logits ``(B, S, K)``: the global mean plus the mean local frame logits of runs 1..s."""
        frame = self.classifier.fc_local(self.classifier.dropout(local_feats))  # (B, T_L, K)
        t = frame.shape[1]
        mean_so_far = frame.cumsum(1) / torch.arange(1, t + 1, device=frame.device, dtype=frame.dtype).view(1, -1, 1)
        run = t // self.decisions_per_video
        steps = mean_so_far[:, run - 1 :: run]  # each run's last frame (a slice: no index tensor to copy)
        return steps + self.global_logits(global_feats).unsqueeze(1), None

    def counterfactual(
        self, global_feats: torch.Tensor, local_feats: torch.Tensor, alt_local_feats: torch.Tensor
    ) -> torch.Tensor:
        """Step s with run s's patch features taken from ``alt_local_feats`` (runs before it real).

        With one decision that is the clip classified on the alternative patches (the official
        reward). With several, features are spliced: the temporal shift's mixing across a run's
        border is ignored (re-running f_L per decision would cost S passes).
        """
        drop = self.classifier.dropout
        real, alt = self.classifier.fc_local(drop(local_feats)), self.classifier.fc_local(drop(alt_local_feats))
        b, t, k = real.shape
        s = self.decisions_per_video
        run_sums_real = real.view(b, s, t // s, k).sum(2)
        before = run_sums_real.cumsum(1) - run_sums_real  # runs 1..s-1
        counts = (torch.arange(1, s + 1, device=real.device, dtype=real.dtype) * (t // s)).view(1, -1, 1)
        local = (before + alt.view(b, s, t // s, k).sum(2)) / counts
        return local + self.global_logits(global_feats).unsqueeze(1)

    def set_trainable(self, **parts: bool) -> None:
        """As the base's; f_G's head (``global_head="glancer"``) follows ``global_cnn``."""
        super().set_trainable(**parts)
        if "global_cnn" in parts and self.global_head is not None:
            self.global_head.requires_grad_(parts["global_cnn"])
