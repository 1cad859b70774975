"""Evaluation metrics: offline top-1/top-5 and mAP (torchmetrics), online accuracy per step."""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MultilabelAveragePrecision


class OnlineAccuracy(Metric):
    """Top-1 accuracy of the prediction after each of the first t frames (paper Fig. 6).

    States are summed across processes, so the value is exact under DDP.
    """

    full_state_update = False

    def __init__(self, max_steps: int = 64) -> None:
        super().__init__()
        self.add_state("correct", torch.zeros(max_steps), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("steps", torch.tensor(0), dist_reduce_fx="max")
        self.max_steps = max_steps

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        t = logits.shape[1]
        if t > self.max_steps:
            raise ValueError(f"clip has {t} steps; OnlineAccuracy was built for max_steps={self.max_steps}")
        hit = (logits.argmax(-1) == labels.view(-1, 1)).float().sum(0)
        self.correct[:t] += hit
        self.total += logits.shape[0]
        self.steps = torch.maximum(self.steps, torch.tensor(t, device=self.steps.device))

    def compute(self) -> torch.Tensor:
        return self.correct[: int(self.steps)] / self.total.clamp(min=1)


def offline_metrics(num_classes: int, multi_label: bool) -> MetricCollection:
    """Top-1/top-5 accuracy on the last step; macro mAP on softmax scores for multi-label sets."""
    metrics = {
        "top1": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
        "top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
    }
    if multi_label:
        metrics["mAP"] = MultilabelAveragePrecision(num_classes, average="macro")
    return MetricCollection(metrics)
