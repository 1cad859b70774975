"""Where LightningCLI's ``predict`` puts its results: one JSON object per video in a JSON-lines file."""

from __future__ import annotations

import json
import os
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from pytorch_lightning.utilities import rank_zero_info

PREDICTIONS_FILE = "predictions.jsonl"


class PredictionWriter(BasePredictionWriter):
    """Writes every batch of :meth:`AdaFocusStage.predict_step` to ``output_dir/predictions.jsonl``
    as it comes (``predictions.rankN.jsonl`` per process under DDP), one line per video:
    ``{"index", "path", "label", "topk": [{"class", "score"}], "boxes": [[y, x, h, w], ...]}``
    (``path`` when the dataset lists its samples, ``label`` when the batch has one).

    Args:
        output_dir: folder of the file (default: the trainer's ``default_root_dir``).
        topk: classes kept per video.
    """

    def __init__(self, output_dir: str | None = None, topk: int = 5) -> None:
        super().__init__(write_interval="batch")
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        self.output_dir, self.topk = output_dir, topk
        self.path: str | None = None
        self.count = 0

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        folder = self.output_dir or trainer.default_root_dir
        name = (
            PREDICTIONS_FILE
            if trainer.world_size == 1
            else PREDICTIONS_FILE.replace(".jsonl", f".rank{trainer.global_rank}.jsonl")
        )
        os.makedirs(folder, exist_ok=True)
        self.path, self.count = os.path.join(folder, name), 0
        open(self.path, "w", encoding="utf-8").close()  # a new run replaces the old file

    def write_on_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        samples = getattr(_dataset(trainer, dataloader_idx), "samples", None)
        scores, classes = prediction["probs"].float().topk(min(self.topk, prediction["probs"].shape[-1]), dim=-1)
        patch = int(pl_module.model.patch_size)
        index = prediction.get("index")
        labels = batch.get("label") if isinstance(batch, dict) else None
        with open(self.path, "a", encoding="utf-8") as f:
            for i in range(scores.shape[0]):
                row: dict[str, Any] = {"index": int(index[i]) if index is not None else None}
                if samples is not None and row["index"] is not None:
                    row["path"] = samples[row["index"]].path
                if labels is not None:
                    row["label"] = int(labels[i])
                row["topk"] = [
                    {"class": int(c), "score": float(s)} for s, c in zip(scores[i].tolist(), classes[i].tolist())
                ]
                row["boxes"] = [[int(y), int(x), patch, patch] for y, x in prediction["offsets"][i].tolist()]
                f.write(json.dumps(row) + "\n")
                self.count += 1

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        rank_zero_info(f"wrote {self.count} predictions to {self.path}")


def _dataset(trainer: pl.Trainer, dataloader_idx: int) -> Any:
    loaders = trainer.predict_dataloaders
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[dataloader_idx]
    return getattr(loaders, "dataset", None) if isinstance(loaders, torch.utils.data.DataLoader) else None
