"""The demo's pictures: chosen patches (Fig. 7), accuracy vs GFLOPs (Fig. 5), online accuracy (Fig. 6)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..models.adafocus import AdaFocus  # noqa: E402
from ..viz import denormalise, draw_boxes, save_gif_grid, save_strip_png  # noqa: E402
from .evaluate import Row  # noqa: E402

_STYLE = {
    "learned": ("tab:red", "*"),
    "random": ("tab:blue", "o"),
    "centre": ("tab:green", "s"),
    "gaussian": ("tab:purple", "^"),
    "full frames": ("black", "D"),
}


def _style(row: Row) -> tuple[str, str]:
    if row.method.startswith("AdaFocus+"):  # darker for the lower keep ratio
        return ("tab:orange" if row.keep_ratio >= 0.65 else "saddlebrown"), "P"
    return _STYLE.get(row.policy, ("grey", "x"))


def _label(row: Row) -> str:
    return row.method if row.policy in ("learned", "full frames") else f"{row.method}, {row.policy} patches"


def _save(fig, ax, path: str | os.PathLike, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def accuracy_vs_gflops(rows: Sequence[Row], path: str | os.PathLike, title: str) -> None:
    """Fig. 5-like scatter: top-1 against GFLOPs per video, one point per row."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in rows:
        colour, marker = _style(r)
        ax.scatter(r.gflops * 1e3, r.top1, c=colour, marker=marker, s=110 if marker == "*" else 60, label=_label(r))
    _save(fig, ax, path, "MFLOPs per video (1 multiply-add = 1 FLOP)", "top-1 accuracy on held-out videos (%)", title)


def online_accuracy(rows: Sequence[Row], path: str | os.PathLike, title: str) -> None:
    """Fig. 6-like curves: accuracy of the prediction emitted after each frame."""
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for r in rows:
        colour, marker = _style(r)
        ls = "--" if r.policy == "full frames" else "-"
        ax.plot(range(1, len(r.online) + 1), r.online, color=colour, marker=marker, ls=ls, ms=5, label=_label(r))
    _save(fig, ax, path, "frames seen", "top-1 accuracy (%)", title)


@torch.inference_mode()
def patch_pictures(
    model: AdaFocus,
    batch: dict[str, torch.Tensor],
    png: str | os.PathLike,
    gif: str | os.PathLike | None,
    *,
    num_videos: int = 4,
    class_names: Sequence[str] | None = None,
) -> None:
    """Fig. 7-like: the learned policy's patches drawn over the frames of ``num_videos`` clips."""
    model.eval()
    frames, labels = batch["frames"][:num_videos], batch["label"][:num_videos]
    out = model(frames, sample=False)
    probs = out.prediction.softmax(-1)
    videos, titles = [], []
    for i in range(len(frames)):
        keep = out.keep[i].bool() if out.keep is not None else None
        videos.append(draw_boxes(denormalise(frames[i]), out.offsets[i], model.patch_size, keep=keep))
        pred = int(probs[i].argmax())
        name = (lambda k: class_names[k]) if class_names else str
        extra = f", f_L on {int(keep.sum())}/{len(keep)} frames" if keep is not None else ""
        titles.append(f"label {name(int(labels[i]))} | prediction {name(pred)} ({probs[i, pred]:.2f}){extra}")
    save_strip_png(png, videos, titles)
    if gif is not None:
        save_gif_grid(gif, videos, fps=3)
