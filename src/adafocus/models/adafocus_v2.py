"""``AdaFocusV2`` (Wang et al., CVPR 2022): the patch is cropped by interpolation at a continuous
location, so f_G, pi, f_L and f_C train end to end in one stage
(:class:`~adafocus.training.EndToEndStage`).

Following the official code (``models/adafocus_v2.py``):

* pi (:class:`~.continuous_policy.ContinuousPolicy`) regresses ``(y, x)`` per frame from the
  **detached** e_G (stop-gradient: f_G learns only from the classification losses);
* the crop is bilinear sampling of the P x P window whose top-left corner is ``(y, x) * (H - P)``
  (``affine_grid`` + ``grid_sample``), so gradients reach pi through f_L;
* f_C (:class:`~.classifier.PoolingClassifier`) is an MLP on ``[e_G, e_L]``, a running max over the
  frames and one head per step, so every step predicts (early exit, :mod:`adafocus.early_exit`);
* auxiliary heads ``global_fc`` / ``local_fc`` classify e_G and e_L per frame (the training loss
  uses them; :meth:`auxiliary_logits`);
* frames are processed in a coarse-to-fine order (``--sample``; :func:`coarse_to_fine`), so that
  the early steps already see the whole video.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .adafocus_tsm import AdaFocusTSM
from .backbones import WeightsArg
from .base import AdaFocusBase, AdaFocusOutput, check_positive
from .classifier import PoolingClassifier
from .continuous_policy import ContinuousPolicy
from .crop import pixel_offsets, sample_patches


def coarse_to_fine(num_frames: int) -> list[int]:
    """Frame order by bisection: the middle frame, both ends, then the midpoints of the gaps, level by
    level. For 16 frames this is the official ``--sample`` order [7, 0, 15, 3, 11, 1, 5, 9, 13, 2, ...]."""
    check_positive(num_frames=num_frames)
    if num_frames <= 2:
        return list(range(num_frames))
    order = [(num_frames - 1) // 2, 0, num_frames - 1]
    gaps = [(0, order[0]), (order[0], num_frames - 1)]
    while gaps:
        nxt = []
        for lo, hi in gaps:
            if hi - lo > 1:
                mid = (lo + hi) // 2
                order.append(mid)
                nxt += [(lo, mid), (mid, hi)]
        gaps = nxt
    return order


class DifferentiableFocus:
    """What AdaFocusV2 changes in a family member (mixed in before the member's class): pi regresses
    continuous locations, the crop interpolates, and e_G / e_L get auxiliary heads."""

    policy: ContinuousPolicy
    global_fc: nn.Module
    local_fc: nn.Module

    def learned_locations(
        self,
        state: torch.Tensor,
        hidden: torch.Tensor | None,
        *,
        sample: bool,
        generator: torch.Generator | None,
        policy_stats: bool,
    ) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor | None]:
        """pi's locations are deterministic: ``sample``, ``generator`` and ``policy_stats`` do not apply."""
        locations, hidden = self.policy(state, hidden)
        return locations, {}, hidden

    def focus_at(
        self, frames: torch.Tensor, locations: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """f_L on interpolated patches (differentiable in ``locations``); offsets rounded down, for display."""
        if keep is not None:
            raise ValueError(f"{type(self).__name__} has no frame skipping (keep=)")
        b, t = frames.shape[:2]
        local = self.local_cnn(self.crop(frames, locations).flatten(0, 1)).mean(dim=(-2, -1)).view(b, t, -1)
        return local, pixel_offsets(locations.detach(), frames.shape[-2:], self.patch_size)

    def crop(self, frames: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        """Interpolated patches ``(B, T, C, P, P)`` at normalised ``locations`` ``(B, S, 2)``."""
        b, t = frames.shape[:2]
        loc = self.frame_locations(locations, t).reshape(b * t, 2)
        return sample_patches(frames.flatten(0, 1), loc, self.patch_size).view(
            b, t, -1, self.patch_size, self.patch_size
        )

    def auxiliary_logits(self, out: AdaFocusOutput) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-frame logits of e_G and of e_L alone, ``(B, T_G, K)`` and ``(B, T, K)`` (the auxiliary losses)."""
        return self.global_fc(out.global_features), self.local_fc(out.local_features)


def _head(dim: int, num_classes: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(dim, num_classes))


class AdaFocusV2(DifferentiableFocus, AdaFocusBase):
    """AdaFocusV2: a continuous patch location per frame, end-to-end training, a prediction per step.

    Takes :class:`~adafocus.models.base.AdaFocusBase`'s arguments (backbones, weights, ``patch_size``,
    ``input_size``, ``glance_size``, ``gaussian_sigma``) and:

    Args:
        num_frames: T; f_C has one head per step, so clips have exactly T frames (official: 16).
        policy_hidden_dim / policy_channels: pi's width (official scripts: 2048 / 64).
        classifier_hidden_dim: width of f_C's MLP (official: 4096).
        dropout: before every head (official scripts: 0.2, ``--dropout`` and ``--fc_dropout``).
        frame_order: the order the T frames are processed in: ``"coarse_to_fine"`` (official
            ``--sample``, :func:`coarse_to_fine`), ``"temporal"`` or an explicit permutation. Per-frame
            outputs (``locations``, ``offsets``, features, per-step ``logits``) follow this order.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        global_backbone: str = "mobilenet_v2",
        local_backbone: str = "resnet50",
        global_weights: WeightsArg = None,
        local_weights: WeightsArg = None,
        patch_size: int = 128,
        input_size: int = 224,
        glance_size: int | None = None,
        num_frames: int = 16,
        policy_hidden_dim: int = 2048,
        policy_channels: int = 64,
        classifier_hidden_dim: int = 4096,
        dropout: float = 0.2,
        frame_order: str | Sequence[int] = "coarse_to_fine",
        gaussian_sigma: float = 0.25,
    ) -> None:
        check_positive(num_frames=num_frames, policy_hidden_dim=policy_hidden_dim, policy_channels=policy_channels,
                       classifier_hidden_dim=classifier_hidden_dim)  # fmt: skip
        super().__init__(num_classes, global_backbone=global_backbone, local_backbone=local_backbone,
                         global_weights=global_weights, local_weights=local_weights, patch_size=patch_size,
                         grid_size=1, input_size=input_size, glance_size=glance_size,
                         gaussian_sigma=gaussian_sigma, config=locals())  # fmt: skip
        self.clip_frames = num_frames
        order = _frame_order(frame_order, num_frames)
        self.register_buffer("frame_order", torch.tensor(order), persistent=False)
        self.reorders = order != list(range(num_frames))
        c, h, w = self.glance_map_shape()
        self.policy = ContinuousPolicy(c, (h, w), hidden_dim=policy_hidden_dim, reduced_channels=policy_channels)
        d_g, d_l = self.global_cnn.num_features, self.local_cnn.num_features
        self.global_fc, self.local_fc = _head(d_g, num_classes, dropout), _head(d_l, num_classes, dropout)
        self.classifier = PoolingClassifier(d_g + d_l, num_classes, num_steps=num_frames,
                                            hidden_dim=classifier_hidden_dim, dropout=dropout)  # fmt: skip

    def order_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The clip's frames in :attr:`frame_order` (see the class doc)."""
        if self.reorders and frames.dim() == 5 and frames.shape[1] == self.clip_frames:
            return frames.index_select(1, self.frame_order)
        return frames

    def in_time_order(self, per_frame: torch.Tensor) -> torch.Tensor:
        if self.reorders and per_frame.shape[1] == self.clip_frames:
            return per_frame.index_select(1, torch.argsort(self.frame_order))
        return per_frame

    def classify(
        self, global_feats: torch.Tensor, local_feats: torch.Tensor, state: Any = None
    ) -> tuple[torch.Tensor, Any]:
        return self.classifier(global_feats, local_feats, state)


def _frame_order(frame_order: str | Sequence[int], num_frames: int) -> list[int]:
    if frame_order == "coarse_to_fine":
        return coarse_to_fine(num_frames)
    if frame_order == "temporal":
        return list(range(num_frames))
    if isinstance(frame_order, str) or sorted(frame_order) != list(range(num_frames)):
        raise ValueError(
            f"frame_order must be 'coarse_to_fine', 'temporal' or a permutation of range({num_frames}), "
            f"got {frame_order!r}"
        )
    return [int(i) for i in frame_order]


class AdaFocusV2TSM(DifferentiableFocus, AdaFocusTSM):
    """AdaFocusV2 for Something-Something (official ``Experiments on Sth-Sth and Jester``): one continuous
    location per video from the 8 stacked glance maps, TSM backbones on 8 + 12 frames.

    Takes :class:`~adafocus.AdaFocusTSM`'s arguments (``grid_size`` is unused) and:

    Args:
        policy_hidden_dim / policy_head_dim / policy_channels: pi's widths (official: 1024 / 512 / 64).

    f_C sums the frame-averaged linear logits of e_G and e_L computed on **detached** features (the
    official ``new_fc``), so the fused loss trains only f_C; the backbones and pi learn through the
    auxiliary heads on the live features (``new_new_fc``: :meth:`auxiliary_logits`).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        global_backbone: str = "tsm_mobilenet_v2",
        local_backbone: str = "tsm_resnet50",
        global_weights: WeightsArg = None,
        local_weights: WeightsArg = None,
        patch_size: int = 128,
        input_size: int = 224,
        glance_size: int | None = None,
        global_frames: int = 8,
        local_frames: int = 12,
        policy_hidden_dim: int = 1024,
        policy_head_dim: int = 512,
        policy_channels: int = 64,
        dropout: float = 0.5,
        gaussian_sigma: float = 0.25,
    ) -> None:
        config = dict(locals())
        check_positive(policy_head_dim=policy_head_dim)
        self._head_dim = policy_head_dim
        super().__init__(num_classes, global_backbone=global_backbone, local_backbone=local_backbone,
                         global_weights=global_weights, local_weights=local_weights, patch_size=patch_size,
                         grid_size=1, input_size=input_size, glance_size=glance_size, global_frames=global_frames,
                         local_frames=local_frames, policy_hidden_dim=policy_hidden_dim,
                         policy_channels=policy_channels, dropout=dropout, gaussian_sigma=gaussian_sigma,
                         global_head="classifier")  # fmt: skip
        self.set_config(config)
        d_g, d_l = self.global_cnn.num_features, self.local_cnn.num_features
        self.global_fc, self.local_fc = _head(d_g, num_classes, dropout), _head(d_l, num_classes, dropout)

    @classmethod
    def upgrade_config(cls, config: dict[str, Any]) -> dict[str, Any]:
        return config

    def make_policy(self, in_channels: int, feature_hw: tuple[int, int], hidden_dim: int, channels: int) -> nn.Module:
        return ContinuousPolicy(in_channels, feature_hw, hidden_dim=hidden_dim, reduced_channels=channels,
                                recurrent=False, head_dim=self._head_dim)  # fmt: skip

    def classify(self, global_feats: torch.Tensor, local_feats: torch.Tensor, state: Any = None):
        return super().classify(global_feats.detach(), local_feats.detach(), state)
