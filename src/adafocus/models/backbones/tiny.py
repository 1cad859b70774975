"""Tiny CNNs for fast CPU tests and the CPU demo (``tiny_cnn``, ``tiny_cnn_wide``, ``demo_glance``, ``demo_local``)."""

from __future__ import annotations

import torch
from torch import nn

from .registry import Backbone, register_backbone


class TinyCNN(Backbone):
    """A few 3x3 conv-BN-ReLU layers (stride 2 each by default, total 32): a stand-in backbone for
    fast CPU tests and the CPU demo. ``strides`` sets each layer's stride (same length as ``widths``)."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 24, 32, 48), strides: tuple[int, ...] | None = None) -> None:
        super().__init__()
        strides = strides or (2,) * len(widths)
        if len(strides) != len(widths):
            raise ValueError(f"strides {strides} and widths {widths} must have the same length")
        layers: list[nn.Module] = []
        c_in = 3
        for w, s in zip(widths, strides):
            layers += [nn.Conv2d(c_in, w, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c_in = w
        self.features = nn.Sequential(*layers)
        self.num_features = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


register_backbone("tiny_cnn")(TinyCNN)
register_backbone("tiny_cnn_wide")(lambda: TinyCNN((16, 24, 32, 48, 64)))
# The CPU demo's pair (``adafocus demo``): a stride-8 glance net (~2.8 MFLOPs on a 64x64 frame) and a
# stride-8 local net (~2.3 MFLOPs on a 24x24 patch, ~16 on a whole 64x64 frame)
register_backbone("demo_glance")(lambda: TinyCNN((16, 32, 64), (2, 2, 2)))
register_backbone("demo_local")(lambda: TinyCNN((32, 64, 96, 128), (2, 2, 2, 1)))
