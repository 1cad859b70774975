"""Use ``AdaFocus`` as a component of another model, without Lightning.

Run: python examples/adafocus_inside_another_model.py
(tiny backbones, so it runs in a second on a CPU; use the defaults for the paper's model)
"""

import torch
from torch import nn

from adafocus import AdaFocus


class ClipScorer(nn.Module):
    """AdaFocus features + a small regression head (e.g. a quality score per clip)."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = AdaFocus(
            num_classes=10, global_backbone="tiny_cnn", local_backbone="tiny_cnn", input_size=112, patch_size=48
        )
        dim = self.backbone.global_cnn.num_features + self.backbone.local_cnn.num_features
        self.head = nn.Linear(dim, 1)

    def forward(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.backbone(frames)  # learned policy: one patch per frame
        feats = torch.cat([out.global_features, out.local_features], dim=-1).mean(1)
        return self.head(feats).squeeze(-1), out.offsets


if __name__ == "__main__":
    model = ClipScorer().eval()
    with torch.inference_mode():
        scores, offsets = model(torch.randn(2, 8, 3, 112, 112))
    print("scores:", scores.tolist())
    print("patch top-left (y, x) of clip 0:", offsets[0].tolist())
