"""Backbone pre-training on still images: the demo's stand-in for the paper's ImageNet weights.

AdaFocus starts f_G and f_L from ImageNet-pretrained weights, loaded from local files. No such
weights exist for the demo's tiny CNNs, so it makes its own: each backbone learns to classify
object-centric still crops (:func:`adafocus.data.synth.still_crops`), and the resulting
``state_dict`` file is handed to the stage configs as ``global_weights`` / ``local_weights``,
exactly as a user would pass ``mobilenet_v2-b0353104.pth``.
"""

from __future__ import annotations

import os

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchvision.transforms import v2

from ..models.backbones import create_backbone
from ..preprocess import IMAGENET_MEAN, IMAGENET_STD


class StillImageClassifier(pl.LightningModule):
    """A backbone + linear head trained with Adam on still images (cross-entropy)."""

    def __init__(self, backbone: str, num_classes: int, lr: float = 2e-3) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.backbone = create_backbone(backbone)
        self.head = nn.Linear(self.backbone.num_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean((-2, -1)))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        self.log("pretrain/loss", loss, prog_bar=True)
        self.log("pretrain/acc", (logits.argmax(-1) == y).float().mean(), prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` to normalised float ``(N, 3, H, W)``, with the data module's own transform ops."""
    normalise = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return normalise(torch.from_numpy(images).permute(0, 3, 1, 2))


def pretrain_backbone(
    backbone: str,
    images: np.ndarray,
    labels: np.ndarray,
    out_path: str | os.PathLike,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    progress: bool = True,
) -> float:
    """Train ``backbone`` on the stills, save its ``state_dict`` to ``out_path``; returns the final
    epoch's training accuracy."""
    pl.seed_everything(seed, verbose=False)
    module = StillImageClassifier(backbone, int(labels.max()) + 1, lr=lr)
    data = TensorDataset(to_tensor(images), torch.from_numpy(labels))
    loader = DataLoader(data, batch_size=batch_size, shuffle=True)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=progress,
    )
    trainer.fit(module, loader)
    torch.save(module.backbone.state_dict(), out_path)
    return float(trainer.callback_metrics.get("pretrain/acc", torch.tensor(float("nan"))))
