"""AdaFocusV2's policy: a continuous patch location regressed from the glance, trained by back-propagation
through the differentiable crop (:func:`~adafocus.models.crop.sample_patches`) instead of PPO.

As in the official code (``PolicySTN``): a 1x1 convolution with batch norm and tanh reduces e_G, a
linear layer with batch norm and tanh embeds it; then either a GRU over the frames (one location per
frame, the ActivityNet / FCVID / Mini-Kinetics models) or a second linear layer (one location per
video, the Something-Something models); a linear layer and a sigmoid give ``(y, x)`` in ``[0, 1]``.
"""

from __future__ import annotations

import torch
from torch import nn


class ContinuousPolicy(nn.Module):
    """Regresses normalised ``(y, x)`` patch locations from global feature maps.

    Args:
        in_channels: channels of pi's input map (1280 for MobileNet-V2; 8 x 1280 stacked for TSM).
        feature_hw: its spatial size (7x7 for a 224 input).
        hidden_dim: width of the embedding (and of the GRU) (official: 2048 per frame, 1024 per video).
        reduced_channels: output channels of the 1x1 convolution (official: 64).
        recurrent: a GRU over the frames (per-frame locations) or not (one location per video).
        head_dim: width of the second linear layer when not recurrent (official: 512).
    """

    def __init__(
        self,
        in_channels: int,
        feature_hw: tuple[int, int],
        *,
        hidden_dim: int = 2048,
        reduced_channels: int = 64,
        recurrent: bool = True,
        head_dim: int = 512,
    ) -> None:
        super().__init__()
        h, w = feature_hw
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, reduced_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(reduced_channels),
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(reduced_channels * h * w, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.Tanh(),
        )
        self.gru = nn.GRU(hidden_dim, hidden_dim, batch_first=True) if recurrent else None
        if recurrent:
            self.head = nn.Linear(hidden_dim, 2)
        else:
            self.head = nn.Sequential(
                nn.Linear(hidden_dim, head_dim), nn.BatchNorm1d(head_dim), nn.Tanh(), nn.Linear(head_dim, 2)
            )
        self.in_channels, self.feature_hw = in_channels, (h, w)

    def forward(
        self, feature_maps: torch.Tensor, hidden: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(B, S, C, h, w)`` -> ``(locations (B, S, 2) in [0, 1], GRU state or None)``."""
        b, s = feature_maps.shape[:2]
        if tuple(feature_maps.shape[2:]) != (self.in_channels, *self.feature_hw):
            raise ValueError(
                f"policy expects feature maps (B, S, {self.in_channels}, {self.feature_hw[0]}, {self.feature_hw[1]}), "
                f"got {tuple(feature_maps.shape)}; were the frames resized away from the model's input_size?"
            )
        z = self.encoder(feature_maps.flatten(0, 1)).view(b, s, -1)
        if self.gru is not None:
            z, hidden = self.gru(z, hidden)
            return torch.sigmoid(self.head(z)), hidden
        return torch.sigmoid(self.head(z.flatten(0, 1))).view(b, s, 2), None
