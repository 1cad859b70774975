"""Full-frame baselines: both CNNs on whole frames, no policy (TSM+ of Table 3, and the plain
MobileNet-V2 + ResNet-50 / ResNet-50 models AdaFocus is measured against)."""

from __future__ import annotations

import torch
from torch import nn

from .backbones import create_backbone
from .backbones.tsm import set_num_frames


class TSMPlus(nn.Module):
    """TSM+ (Table 3): full frames into both backbones, pooled features concatenated, one linear
    classifier, frame predictions averaged. AdaFocus-TSM without pi, f_L on whole frames.

    With plain backbones (``mobilenet_v2`` + ``resnet50``, or ``global_backbone=None`` for ResNet-50
    alone) it is the matching full-frame baseline of the non-TSM AdaFocus.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        global_backbone: str | None = "tsm_mobilenet_v2",
        local_backbone: str = "tsm_resnet50",
        num_frames: int = 8,
        input_size: int = 224,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.num_classes = num_classes
        self.global_cnn = create_backbone(global_backbone) if global_backbone else None
        self.local_cnn = create_backbone(local_backbone)
        for net in (self.global_cnn, self.local_cnn):
            if net is not None:
                set_num_frames(net, num_frames)
        self.num_frames, self.input_size = num_frames, input_size
        self.clip_frames = num_frames  # the temporal shift needs clips of exactly this length
        dim = self.local_cnn.num_features + (self.global_cnn.num_features if self.global_cnn is not None else 0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> video logits ``(B, K)``."""
        b, t = frames.shape[:2]
        x = frames.flatten(0, 1)
        feats = [self.local_cnn(x).mean(dim=(-2, -1))]
        if self.global_cnn is not None:
            feats.insert(0, self.global_cnn(x).mean(dim=(-2, -1)))
        return self.fc(self.dropout(torch.cat(feats, dim=-1))).view(b, t, -1).mean(1)
