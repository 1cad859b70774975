"""Pictures of where AdaFocus looked: patch boxes on frames, PNG strips and animated GIFs.

All functions take and return plain uint8 RGB arrays ``(T, H, W, 3)`` (torch tensors are accepted
as input); ``denormalise`` turns the model's ImageNet-normalised input back into such frames::

    frames = denormalise(clip)                          # clip: (T, 3, H, W) as fed to the model
    keep = None if out.keep is None else out.keep[0]     # AdaFocus+ only
    boxed = draw_boxes(frames, out.offsets[0], model.patch_size, keep=keep)
    save_strip_png("strip.png", [boxed], ["pred 3 (0.97)"])
    save_gif("clip.gif", boxed, fps=4)

Nothing here needs a display: PNGs are drawn with matplotlib's Agg canvas (no pyplot state), GIFs
with Pillow.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .preprocess import IMAGENET_MEAN, IMAGENET_STD

SKIP_COLOUR = (150, 150, 150)  # AdaFocus+ frames where f_L did not run: a thin grey box


def _as_numpy(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _as_frames(frames: Any, what: str = "frames") -> np.ndarray:
    """``(T, H, W, 3)`` uint8; a ``(T, 3, H, W)`` tensor/array is transposed."""
    arr = _as_numpy(frames)
    if arr.ndim == 3:  # a single frame
        arr = arr[None]
    if arr.ndim != 4:
        raise ValueError(f"{what} must be (T, H, W, 3), got shape {arr.shape}")
    if arr.shape[-1] != 3 and arr.shape[1] == 3:
        arr = arr.transpose(0, 2, 3, 1)
    if arr.shape[-1] != 3:
        raise ValueError(f"{what} must be RGB (T, H, W, 3), got shape {arr.shape}")
    if arr.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 (use denormalise() for model inputs), got {arr.dtype}")
    return arr


def denormalise(
    frames: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> np.ndarray:
    """Undo the normalisation (ImageNet's by default) of ``(T, 3, H, W)`` float frames: uint8
    ``(T, H, W, 3)``; any leading dimensions are kept (``(B, T, 3, H, W)`` gives ``(B, T, H, W, 3)``).
    """
    x = torch.as_tensor(frames).detach().float().cpu()
    if x.dim() < 3 or x.shape[-3] != 3:
        raise ValueError(f"frames must be (..., 3, H, W), got shape {tuple(x.shape)}")
    mean = torch.tensor(list(mean)).view(3, 1, 1)
    std = torch.tensor(list(std)).view(3, 1, 1)
    x = (x * std + mean).clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.movedim(-3, -1).contiguous().numpy()


def draw_boxes(
    frames: np.ndarray | torch.Tensor,
    offsets: Any,
    patch_size: int,
    *,
    keep: Any = None,
    sizes: Any = None,
    colour: tuple[int, int, int] = (255, 220, 0),
    width: int = 2,
) -> np.ndarray:
    """Draw each frame's patch as a box (``torchvision.utils.draw_bounding_boxes``); returns a new
    uint8 ``(T, H, W, 3)`` array.

    Args:
        frames: uint8 ``(T, H, W, 3)`` (a ``(T, 3, H, W)`` tensor is accepted too).
        offsets: ``(T, 2)`` top-left pixel ``(y, x)`` of each patch (``AdaFocusOutput.offsets[b]``).
        patch_size: P; the box covers rows ``y .. y+P-1`` and columns ``x .. x+P-1``.
        keep: optional ``(T,)`` bool/0-1 (AdaFocus+): frames with ``keep == 0`` (f_L skipped) get a
            thin grey box instead.
        sizes: optional ``(T, 2)`` box ``(h, w)`` per frame (Uni-AdaFocus's windows), instead of P x P.
        colour: RGB of the solid boxes.
        width: line width in pixels, drawn *inside* the patch, so the box's outer edge is exactly
            the patch border and nothing outside the patch changes.
    """
    img = _as_frames(frames).copy()
    offs = _as_numpy(offsets)
    if offs.ndim == 3 and offs.shape[0] == 1:
        offs = offs[0]
    t = img.shape[0]
    if offs.shape != (t, 2):
        raise ValueError(f"offsets must be (T, 2) = ({t}, 2), got shape {offs.shape}")
    if patch_size < 1 or width < 1:
        raise ValueError(f"patch_size and width must be >= 1, got {patch_size}, {width}")
    kept = None
    if keep is not None:
        kept = _as_numpy(keep).reshape(-1).astype(bool)
        if kept.shape != (t,):
            raise ValueError(f"keep must have T={t} entries, got {kept.size}")
    from torchvision.utils import draw_bounding_boxes

    hw = np.full((t, 2), int(patch_size)) if sizes is None else np.rint(_as_numpy(sizes)).astype(int).reshape(t, 2)
    for i in range(t):
        y, x = (int(v) for v in offs[i])
        h, w = (int(v) for v in hw[i])
        lw = min(int(width), (min(h, w) + 1) // 2)
        skipped = kept is not None and not kept[i]
        # PIL draws the outline inwards from the box's edge: the patch's last row / column is y+P-1 / x+P-1
        box = torch.tensor([[x, y, x + w - 1, y + h - 1]])
        frame = torch.from_numpy(img[i]).permute(2, 0, 1)
        drawn = draw_bounding_boxes(frame, box, colors=[SKIP_COLOUR if skipped else tuple(colour)],
                                    width=1 if skipped else lw)  # fmt: skip
        img[i] = drawn.permute(1, 2, 0).numpy()
    return img


def _pick(n: int, max_frames: int | None) -> np.ndarray:
    """Evenly spaced frame indices (first and last included) when there are more than ``max_frames``."""
    if not max_frames or n <= max_frames:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_frames).round().astype(int))


def _row_image(frames: np.ndarray, gap: int) -> np.ndarray:
    """Frames side by side with ``gap`` white pixels between them."""
    t, h, w, _ = frames.shape
    row = np.full((h, t * w + (t - 1) * gap, 3), 255, np.uint8)
    for i in range(t):
        row[:, i * (w + gap) : i * (w + gap) + w] = frames[i]
    return row


def save_strip_png(
    path: str | os.PathLike,
    videos: list[np.ndarray],
    titles: list[str] | None = None,
    max_frames: int | None = None,
) -> None:
    """A grid PNG: one row per video (its frames side by side), each row titled.

    Args:
        videos: uint8 ``(T, H, W, 3)`` arrays (e.g. from :func:`draw_boxes`); sizes may differ.
        titles: one per video, e.g. ``"label 3 / pred 3 (0.97)"``.
        max_frames: show at most this many frames per row, evenly spaced (first and last kept);
            each frame is labelled with its index in the video.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not videos:
        raise ValueError("save_strip_png: no videos given")
    if titles is not None and len(titles) != len(videos):
        raise ValueError(f"save_strip_png: {len(titles)} titles for {len(videos)} videos")
    gap = 2
    rows, picks = [], []
    for v in videos:
        arr = _as_frames(v, "videos[i]")
        idx = _pick(len(arr), max_frames)
        rows.append(_row_image(arr[idx], gap))
        picks.append((idx, arr.shape[2]))
    dpi = 100
    # small frames are enlarged so that titles and frame numbers stay readable
    scale = max(1.0, 96.0 / min(r.shape[0] for r in rows))
    width_in = max(4.0, max(r.shape[1] for r in rows) * scale / dpi + 0.4)
    heights = [r.shape[0] * scale / dpi + 0.55 for r in rows]  # image + title + frame numbers
    total_in = sum(heights) + 0.35  # + room above the first row's title
    fig = Figure(figsize=(width_in, total_in), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), 1, squeeze=False, gridspec_kw=dict(height_ratios=heights))[:, 0]
    for k, (ax, row, (idx, w)) in enumerate(zip(axes, rows, picks)):
        ax.imshow(row, interpolation="nearest")
        ax.set_xticks([i * (w + gap) + w / 2 - 0.5 for i in range(len(idx))])
        ax.set_xticklabels([str(int(i)) for i in idx], fontsize=7)
        ax.set_yticks([])
        ax.tick_params(length=0, pad=1)
        for s in ax.spines.values():
            s.set_visible(False)
        if titles is not None:
            ax.set_title(titles[k], fontsize=9, loc="left", pad=3)
    fig.subplots_adjust(left=0.01, right=0.99, top=1 - 0.3 / total_in, bottom=0.02, hspace=0.45)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=dpi, facecolor="white")


def save_gif(path: str | os.PathLike, frames: np.ndarray, fps: int = 4) -> None:
    """An animated GIF (looping) of one video's uint8 ``(T, H, W, 3)`` frames."""
    from PIL import Image

    arr = _as_frames(frames)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    images = [Image.fromarray(f) for f in arr]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    images[0].save(
        path, format="GIF", save_all=True, append_images=images[1:], duration=max(20, round(1000 / fps)), loop=0
    )


def save_gif_grid(path: str | os.PathLike, videos: Sequence[np.ndarray], fps: int = 4, gap: int = 4) -> None:
    """One GIF showing several videos side by side, frame by frame.

    Videos may differ in length (a shorter one holds its last frame) and height (padded in white).
    """
    if not videos:
        raise ValueError("save_gif_grid: no videos given")
    arrs = [_as_frames(v, "videos[i]") for v in videos]
    t = max(len(a) for a in arrs)
    h = max(a.shape[1] for a in arrs)
    w = sum(a.shape[2] for a in arrs) + gap * (len(arrs) - 1)
    out = np.full((t, h, w, 3), 255, np.uint8)
    x = 0
    for a in arrs:
        n, ah, aw = a.shape[:3]
        out[:n, :ah, x : x + aw] = a
        out[n:, :ah, x : x + aw] = a[-1]
        x += aw + gap
    save_gif(path, out, fps=fps)
