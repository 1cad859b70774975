"""Uni-AdaFocus's two policies (official ``models/uni_adafocus.py``): which frames f_L sees (temporal)
and where, how large, its patch is (spatial); and the frame selection from the temporal weights."""

from __future__ import annotations

import torch
from torch import nn


class TemporalPolicy(nn.Module):
    """Scores the glanced frames from their pooled e_G: two (3 x 1) temporal convolutions with batch norm
    and ReLU, a 1 x 1 convolution to one score per frame; ``(softmax(s), softmax(s / temperature))``."""

    def __init__(self, in_dim: int, *, hidden_dim: int = 64, temperature: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.score = nn.Sequential(
            nn.Conv2d(in_dim, hidden_dim, (3, 1), padding=(1, 0), bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(),
            nn.Conv2d(hidden_dim, hidden_dim, (3, 1), padding=(1, 0), bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.ReLU(),
            nn.Conv2d(hidden_dim, 1, 1, bias=False),
        )
        self.temperature = temperature

    def forward(self, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, G, D)`` pooled glance features -> frame weights ``(B, G)`` and their tempered version."""
        s = self.score(pooled.transpose(1, 2).unsqueeze(-1)).flatten(1)
        return torch.softmax(s, 1), torch.softmax(s / self.temperature, 1)


class SpatialPolicy(nn.Module):
    """``(y, x, s_y, s_x)`` in ``[0, 1]`` per glanced frame from the stacked e_G maps: a 1x1x1 and two
    3x3x3 3-D convolutions (batch norm, ReLU) over (frames, h, w), then one over the whole map, sigmoid.
    ``(y, x)`` place the window's corner as in :func:`~.crop.sample_patches`; ``s`` sets its side."""

    def __init__(self, in_channels: int, feature_hw: tuple[int, int], *, hidden_dim: int = 128) -> None:
        super().__init__()
        h, w = feature_hw
        self.encoder = nn.Sequential(
            nn.Conv3d(in_channels, hidden_dim, 1, bias=False),
            nn.BatchNorm3d(hidden_dim),
            nn.ReLU(),
            nn.Conv3d(hidden_dim, hidden_dim, 3, padding=1, bias=False),
            nn.BatchNorm3d(hidden_dim),
            nn.ReLU(),
            nn.Conv3d(hidden_dim, hidden_dim, 3, padding=1, bias=False),
            nn.BatchNorm3d(hidden_dim),
            nn.ReLU(),
            nn.Conv3d(hidden_dim, 4, (1, h, w), bias=False),
            nn.Sigmoid(),
        )
        self.in_channels, self.feature_hw = in_channels, (h, w)

    def forward(self, feature_maps: torch.Tensor) -> torch.Tensor:
        """``(B, G, C, h, w)`` -> actions ``(B, G, 4)``."""
        if tuple(feature_maps.shape[2:]) != (self.in_channels, *self.feature_hw):
            raise ValueError(
                f"spatial policy expects (B, G, {self.in_channels}, {self.feature_hw[0]}, {self.feature_hw[1]}), "
                f"got {tuple(feature_maps.shape)}"
            )
        return self.encoder(feature_maps.transpose(1, 2)).flatten(2).transpose(1, 2)


def select_frames(
    weights: torch.Tensor, num_segments: int, num_frames: int, *, sample: bool, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``num_frames`` increasing indices among ``num_segments`` frames, by inverting the CDF of ``weights``.

    The ``G`` weights spread uniformly over the clip form a piecewise-linear CDF; frame i is taken at
    quantile ``(i + u) / num_frames`` (``u ~ U(0, 1)`` when sampling, 1/2 otherwise), so frames gather
    where the weights are high. Indices are then made strictly increasing and kept inside the clip.
    Not differentiable: the weights learn through the Monte-Carlo loss instead.
    """
    b, g = weights.shape
    if num_frames > num_segments:
        raise ValueError(f"cannot pick {num_frames} frames among {num_segments}")
    cdf = torch.cat([weights.new_zeros(b, 1), weights.detach().float().cumsum(1)], 1)
    cdf[:, -1] = 1.0
    steps = torch.arange(num_frames, device=weights.device, dtype=cdf.dtype).expand(b, num_frames)
    u = torch.rand(steps.shape, device=weights.device, generator=generator) if sample else torch.full_like(steps, 0.5)
    q = (steps + u) / num_frames
    seg = (cdf.unsqueeze(2) >= q.unsqueeze(1)).float().argmax(1).clamp(1, g) - 1  # the CDF piece holding q
    lo, hi = cdf.gather(1, seg), cdf.gather(1, seg + 1)
    x = (seg + (q - lo) / (hi - lo).clamp_min(1e-12)) / g  # linear inverse of that piece, in [0, 1]
    idx = torch.floor(x * num_segments).long()
    for i in range(1, num_frames):
        idx[:, i] = torch.maximum(idx[:, i], idx[:, i - 1] + 1)
    last = num_segments - num_frames + torch.arange(num_frames, device=weights.device)
    return torch.minimum(idx, last)
