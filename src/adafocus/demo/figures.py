"""The demo's pictures: chosen patches (Fig. 7), accuracy vs GFLOPs (Fig. 5), online accuracy (Fig. 6)."""

from __future__ import annotations

import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from ..models.base import AdaFocusBase  # noqa: E402
from ..viz import denormalise, draw_boxes, save_gif_grid, save_strip_png  # noqa: E402
from .evaluate import Row  # noqa: E402

_STYLE = {
    "learned": ("tab:red", "*"),
    "random": ("tab:blue", "o"),
    "centre": ("tab:green", "s"),
    "gaussian": ("tab:purple", "^"),
    "full frames": ("black", "D"),
}


_V2_STYLE = {"learned": ("crimson", "X"), "random": ("tab:cyan", "o"), "centre": ("tab:olive", "s")}


def _style(row: Row) -> tuple[str, str]:
    if row.method.startswith("AdaFocusV2"):
        return ("magenta", "v") if "early exit" in row.method else _V2_STYLE.get(row.policy, ("grey", "x"))
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
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))  # beside the axes: no point hidden
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def accuracy_vs_gflops(rows: Sequence[Row], path: str | os.PathLike, title: str, sweep: Sequence[dict] = ()) -> None:
    """Fig. 5-like scatter: top-1 against GFLOPs per video, one point per row; ``sweep``: the early-exit
    curve (points with ``gflops``, ``top1``, ``latency_ms``), each point labelled with its latency."""
    fig, ax = plt.subplots(figsize=(10, 5), dpi=120)
    if sweep:
        x, y = [1e3 * p["gflops"] for p in sweep], [p["top1"] for p in sweep]
        ax.plot(x, y, color="magenta", lw=1, alpha=0.6, label="AdaFocusV2 early exit, budget sweep")
        for p, xi, yi in zip(sweep, x, y):
            ax.annotate(f"{p['latency_ms']:.1f} ms", (xi, yi), textcoords="offset points", xytext=(0, -11),
                        fontsize=6, ha="center", color="purple")  # fmt: skip
    for r in rows:
        colour, marker = _style(r)
        ax.scatter(r.gflops * 1e3, r.top1, c=colour, marker=marker, s=110 if marker == "*" else 60, label=_label(r))
    _save(fig, ax, path, "MFLOPs per video (1 multiply-add = 1 FLOP)", "top-1 accuracy on held-out videos (%)", title)


def online_accuracy(rows: Sequence[Row], path: str | os.PathLike, title: str) -> None:
    """Fig. 6-like curves: accuracy of the prediction emitted after each frame."""
    fig, ax = plt.subplots(figsize=(10, 4.5), dpi=120)
    for r in rows:
        colour, marker = _style(r)
        ls = "--" if r.policy == "full frames" else "-"
        ax.plot(range(1, len(r.online) + 1), r.online, color=colour, marker=marker, ls=ls, ms=5, label=_label(r))
    _save(fig, ax, path, "frames seen", "top-1 accuracy (%)", title)


@torch.inference_mode()
def patch_pictures(
    model: AdaFocusBase,
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
        offsets = model.in_time_order(out.offsets)[i]
        videos.append(draw_boxes(denormalise(frames[i]), offsets, model.patch_size, keep=keep))
        pred = int(probs[i].argmax())
        name = (lambda k: class_names[k]) if class_names else str
        extra = f", f_L on {int(keep.sum())}/{len(keep)} frames" if keep is not None else ""
        titles.append(f"label {name(int(labels[i]))} | prediction {name(pred)} ({probs[i, pred]:.2f}){extra}")
    save_strip_png(png, videos, titles)
    if gif is not None:
        save_gif_grid(gif, videos, fps=3)
