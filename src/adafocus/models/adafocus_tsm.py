"""``AdaFocusTSM`` (paper Sec. 4.2, Table 3): one patch location per video, temporal-shift backbones.

Following the official Something-Something code (``models/gfv_net.py``):

* f_G = TSM-MobileNet-V2 on ``global_frames`` (8) frames, f_L = TSM-ResNet-50 on ``local_frames``
  (12) patches; each backbone shifts over its own frame count.
* pi sees the 8 global feature maps stacked on channels and picks **one** patch location per
  video (a single decision); the 12 frames are all cropped there, so f_L's temporal shift mixes
  patches that share one visual angle.
* f_C: frame-wise linear logits averaged over frames, the 8 global ones plus the 12 local ones
  (official: glancer head + focuser classifier, consensus ``avg`` each, summed).

The official loader samples the 8 and the 12 frames separately from the video (TSN segments);
here the clip holds the 12 f_L frames and, unless ``glance_input`` is given, f_G takes the 8 of
them nearest to 8 evenly spaced segment centres (:func:`glance_indices`). With plain backbones and
``global_frames == local_frames`` it is AdaFocus with one patch per video.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .backbones import WeightsArg
from .backbones.tsm import set_num_frames
from .base import AdaFocusBase, check_positive
from .classifier import FrameAverageClassifier
from .policy import PolicyNetwork


def glance_indices(local_frames: int, global_frames: int) -> list[int]:
    """Indices of ``global_frames`` frames among ``local_frames``: the centres of equal segments."""
    return [min(local_frames - 1, int((i + 0.5) * local_frames / global_frames)) for i in range(global_frames)]


class AdaFocusTSM(AdaFocusBase):
    """AdaFocus-TSM: one patch location per video, 8 global + 12 local frames, frame-average f_C.

    Takes :class:`~adafocus.models.base.AdaFocusBase`'s arguments and:

    Args:
        global_frames / local_frames: frames seen by f_G (8) and f_L (12); clips have ``local_frames``.
        policy_hidden_dim / policy_channels: pi's width (official Sth-Sth: 1024 / 64).
        dropout: before f_C's linear layers.
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
    ) -> None:
        check_positive(global_frames=global_frames, local_frames=local_frames)
        if global_frames > local_frames:
            raise ValueError(
                f"global_frames={global_frames} > local_frames={local_frames}: f_G's frames come from the clip"
            )
        super().__init__(num_classes, global_backbone=global_backbone, local_backbone=local_backbone,
                         global_weights=global_weights, local_weights=local_weights, patch_size=patch_size,
                         grid_size=grid_size, input_size=input_size, glance_size=glance_size,
                         gaussian_sigma=gaussian_sigma, config=locals())  # fmt: skip
        self.global_frames, self.local_frames, self.clip_frames = global_frames, local_frames, local_frames
        set_num_frames(self.global_cnn, global_frames)
        set_num_frames(self.local_cnn, local_frames)
        c, h, w = self.glance_map_shape(global_frames)  # the shift needs whole clips
        self.policy = self.make_policy(c * global_frames, (h, w), policy_hidden_dim, policy_channels)
        d_g, d_l = self.global_cnn.num_features, self.local_cnn.num_features
        self.classifier = FrameAverageClassifier(d_g, d_l, num_classes, dropout=dropout)
        self.register_buffer(
            "glance_index", torch.tensor(glance_indices(local_frames, global_frames)), persistent=False
        )

    def make_policy(self, in_channels: int, feature_hw: tuple[int, int], hidden_dim: int, channels: int) -> nn.Module:
        """pi over the stacked glance maps: a categorical choice among the G x G candidates."""
        return PolicyNetwork(
            in_channels, feature_hw, self.grid_size**2, hidden_dim=hidden_dim, reduced_channels=channels
        )

    def decisions(self, num_frames: int) -> int:
        return 1

    def glance_frames(self, frames: torch.Tensor) -> torch.Tensor:
        return frames if frames.shape[1] == self.global_frames else frames.index_select(1, self.glance_index)

    def policy_input(self, feature_maps: torch.Tensor) -> torch.Tensor:
        """All frames' e_G stacked on channels, one decision: ``(B, 1, T_G*C, h, w)``."""
        return feature_maps.reshape(feature_maps.shape[0], 1, -1, *feature_maps.shape[-2:])

    def classify(self, global_feats: torch.Tensor, local_feats: torch.Tensor, state: Any = None):
        """Final logits ``(B, 1, K)``: mean global frame logits + mean local frame logits."""
        logits, state = self.classifier(global_feats, local_feats, state)
        return logits[:, -1:], state  # equal frame counts give per-step means; keep the clip's one

    def counterfactual(
        self, global_feats: torch.Tensor, local_feats: torch.Tensor, alt_local_feats: torch.Tensor
    ) -> torch.Tensor:
        """The one decision replaced: the clip classified on the alternative patches."""
        return self.classify(global_feats, alt_local_feats)[0]
