"""A tiny in-memory clip data module for smoke tests and CLI checks (no files, no decoding).

Each clip is noise plus a bright square whose position encodes nothing and whose *colour channel*
encodes the label, so a model can learn it quickly from patches that cover the square.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler


class EpochShuffleSampler(Sampler[int]):
    """Shuffles with ``seed + epoch``; Lightning calls ``set_epoch``, so a resumed run replays the same order."""

    def __init__(self, n: int, seed: int = 0) -> None:
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        return iter(torch.randperm(self.n, generator=g).tolist())

    def __len__(self) -> int:
        return self.n


class _ToyClips(Dataset):
    def __init__(self, n: int, num_frames: int, size: int, num_classes: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, num_classes, (n,), generator=g)
        self.frames = torch.randn(n, num_frames, 3, size, size, generator=g) * 0.3
        side = max(2, size // 4)
        for i in range(n):
            y, x = torch.randint(0, size - side, (2,), generator=g).tolist()
            self.frames[i, :, int(self.labels[i]) % 3, y : y + side, x : x + side] += 2.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"frames": self.frames[i], "label": self.labels[i], "index": torch.tensor(i)}


class ToyClipDataModule(pl.LightningDataModule):
    """Random clips ``(T, 3, size, size)`` with labels; ``num_classes`` is linked to the model."""

    def __init__(
        self,
        num_classes: int = 3,
        num_frames: int = 4,
        size: int = 64,
        num_train: int = 16,
        num_val: int = 8,
        batch_size: int = 4,
        shuffle: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        self.train_set = _ToyClips(h.num_train, h.num_frames, h.size, h.num_classes, h.seed)
        self.val_set = _ToyClips(h.num_val, h.num_frames, h.size, h.num_classes, h.seed + 1)

    def train_dataloader(self) -> DataLoader:
        sampler = EpochShuffleSampler(len(self.train_set), self.hparams.seed) if self.hparams.shuffle else None
        return DataLoader(self.train_set, batch_size=self.hparams.batch_size, sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.hparams.batch_size)

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    def predict_dataloader(self) -> DataLoader:
        return self.val_dataloader()
