"""A synthetic benchmark where spatial focus matters: a small handwritten digit (scikit-learn's
bundled ``load_digits``, upscaled) drifts smoothly across a cluttered, noisy frame; the label is
the digit's class.

Why it tests AdaFocus: the digit is tinted (the clutter is grey), so even the glance network's
low-resolution view can find it, but at that resolution its 8x8 strokes blur together and it is
hard to classify; a ``patch_hint``-sized patch at full resolution classifies it easily, and a
randomly placed patch of that size usually misses it. Everything is fixed by ``seed``.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from .annotations import format_line
from .encode import write_video


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def _upscale(img: np.ndarray, side: int) -> np.ndarray:
    """Bilinear upscale of an 8x8 digit to ``side x side`` (numpy only, no extra dependency)."""
    n = img.shape[0]
    c = (np.arange(side) + 0.5) * n / side - 0.5
    c = np.clip(c, 0, n - 1)
    i0 = np.floor(c).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    w = c - i0
    rows = img[i0] * (1 - w)[:, None] + img[i1] * w[:, None]
    return rows[:, i0] * (1 - w)[None, :] + rows[:, i1] * w[None, :]


def _background(rng: np.random.Generator, size: int, clutter: int) -> np.ndarray:
    """Smooth grey shading plus ``clutter`` grey strokes and blocks (static within a video)."""
    coarse = rng.uniform(40, 140, (4, 4)).astype(np.float32)
    bg = _upscale(coarse / 255.0, size) * 255.0
    for _ in range(clutter):
        y, x = rng.integers(0, size, 2)
        thin, long = rng.integers(2, 5), rng.integers(8, 30)
        h, w = (thin, long) if rng.random() < 0.5 else (long, thin)
        bg[y : y + h, x : x + w] = rng.uniform(60, 230)
    return np.repeat(bg[:, :, None], 3, axis=2)


def render_video(
    digit: np.ndarray,
    rng: np.random.Generator,
    *,
    num_frames: int,
    size: int,
    digit_size: int,
    clutter: int,
    noise: float,
) -> np.ndarray:
    """``(num_frames, size, size, 3)`` uint8 frames of ``digit`` moving in a straight line."""
    bg = _background(rng, size, clutter)
    glyph = _upscale(digit, digit_size)[:, :, None]
    colour = np.array([230, 60, 40], np.float32)[rng.permutation(3)]  # saturated: stands out from grey
    start, end = rng.uniform(0, size - digit_size, (2, 2))
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    for t in range(num_frames):
        a = t / max(1, num_frames - 1)
        y, x = np.rint((1 - a) * start + a * end).astype(int)
        frames[t] = _paste(bg, glyph, colour, int(y), int(x), rng, noise)
    return frames


def _paste(
    bg: np.ndarray, glyph: np.ndarray, colour: np.ndarray, y: int, x: int, rng: np.random.Generator, noise: float
) -> np.ndarray:
    """``glyph`` tinted ``colour`` blended into a copy of ``bg`` at ``(y, x)``, plus pixel noise, as uint8."""
    f = bg.copy()
    s = glyph.shape[0]
    f[y : y + s, x : x + s] = f[y : y + s, x : x + s] * (1 - glyph) + colour * glyph
    f += rng.normal(0, noise, f.shape).astype(np.float32)
    return np.clip(f, 0, 255).astype(np.uint8)


def _pools(labels: np.ndarray, num_classes: int, seed: int) -> dict[str, np.ndarray]:
    """Digit indices per split: training videos and evaluation videos use different handwriting."""
    keep = np.random.default_rng(seed).permutation(np.flatnonzero(labels < num_classes))
    cut = int(0.7 * len(keep))
    return {"train": keep[:cut], "val": keep[cut:], "test": keep[cut:][::-1]}


def still_crops(
    num: int,
    *,
    crop: int = 24,
    size: int = 64,
    num_classes: int = 10,
    digit_size: int = 14,
    clutter: int = 12,
    noise: float = 12.0,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Object-centric still images for backbone pre-training, the demo's stand-in for ImageNet.

    Each is a ``crop x crop`` window of a rendered frame (same clutter, colours and noise as the
    videos) that contains one whole digit at a random position. Only the *training* handwriting
    of :func:`generate` with the same ``seed`` is used, so evaluation videos stay unseen.

    Returns ``(images uint8 (num, crop, crop, 3), labels int64 (num,))``.
    """
    if not digit_size <= crop <= size:
        raise ValueError(f"need digit_size <= crop <= size, got {digit_size}, {crop}, {size}")
    images, labels = _digits()
    pool = _pools(labels, num_classes, seed)["train"]
    rng = np.random.default_rng([seed, 4])
    out = np.empty((num, crop, crop, 3), np.uint8)
    ys = np.empty(num, np.int64)
    for i in range(num):
        k = pool[rng.integers(len(pool))]
        frame, (y, x) = _render_frame(images[k], rng, size, digit_size, clutter, noise)
        cy = int(np.clip(y - rng.integers(0, crop - digit_size + 1), 0, size - crop))
        cx = int(np.clip(x - rng.integers(0, crop - digit_size + 1), 0, size - crop))
        out[i], ys[i] = frame[cy : cy + crop, cx : cx + crop], labels[k]
    return out, ys


def _render_frame(
    digit: np.ndarray, rng: np.random.Generator, size: int, digit_size: int, clutter: int, noise: float
) -> tuple[np.ndarray, tuple[int, int]]:
    """One frame with ``digit`` at a random place: ``(uint8 (size, size, 3), (y, x) top-left)``."""
    bg = _background(rng, size, clutter)
    glyph = _upscale(digit, digit_size)[:, :, None]
    colour = np.array([230, 60, 40], np.float32)[rng.permutation(3)]
    y, x = (int(v) for v in rng.integers(0, size - digit_size + 1, 2))
    return _paste(bg, glyph, colour, y, x, rng, noise), (y, x)


def generate(
    out_dir: str | os.PathLike,
    *,
    num_train: int = 300,
    num_val: int = 60,
    num_test: int = 60,
    num_frames: int = 8,
    size: int = 112,
    num_classes: int = 10,
    patch_hint: int = 48,
    digit_size: int | None = None,
    clutter: int = 12,
    noise: float = 12.0,
    fps: int = 8,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the synthetic set under ``out_dir`` and return ``{"train", "val", "test"}`` list paths,
    ``"root"`` (prefix for the lists' paths) and ``"num_classes"``.

    Args:
        num_train / num_val / num_test: videos per split (val/test digits are different
            handwriting samples from the training ones).
        num_frames: frames per video (T; TSN sampling with the same T takes every frame).
        size: frame side in pixels (square; even).
        num_classes: digits 0..num_classes-1 (at most 10).
        patch_hint: the patch size P the set is designed for; the digit is ~0.6 P wide so one
            patch can hold it whole.
        digit_size: override the digit's side in pixels (difficulty: smaller is harder).
        clutter: grey strokes/blocks per frame (difficulty).
        noise: per-frame Gaussian pixel noise (std, 0-255 scale).
        fps: frame rate written to the MP4s.
        seed: fixes the whole set (digits, paths, clutter, noise).

    Lists are TSN format (``path num_frames label``); videos are H.264 MP4s.
    """
    if not 2 <= num_classes <= 10:
        raise ValueError(f"num_classes must be in [2, 10] (digits), got {num_classes}")
    if size % 2:
        raise ValueError(f"size must be even (H.264 4:2:0), got {size}")
    digit_size = digit_size or max(8, int(round(0.6 * patch_hint)))
    if not 8 <= digit_size < size:
        raise ValueError(f"digit_size={digit_size} must be in [8, size={size})")
    images, labels = _digits()
    pools = _pools(labels, num_classes, seed)
    out_dir = os.fspath(out_dir)
    result: dict[str, Any] = {"root": out_dir, "num_classes": num_classes}
    for split, count in (("train", num_train), ("val", num_val), ("test", num_test)):
        vdir = os.path.join(out_dir, "videos", split)
        os.makedirs(vdir, exist_ok=True)
        split_rng = np.random.default_rng([seed, {"train": 1, "val": 2, "test": 3}[split]])
        lines = []
        for i in range(count):
            k = pools[split][i % len(pools[split])]
            frames = render_video(
                images[k],
                split_rng,
                num_frames=num_frames,
                size=size,
                digit_size=digit_size,
                clutter=clutter,
                noise=noise,
            )
            rel = f"videos/{split}/{i:05d}.mp4"
            write_video(os.path.join(out_dir, rel), frames, fps=fps, crf=18, gop=num_frames)
            lines.append(format_line(rel, [int(labels[k])], num_frames=num_frames))
        result[split] = os.path.join(out_dir, f"{split}.txt")
        with open(result[split], "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
    meta = dict(
        num_train=num_train,
        num_val=num_val,
        num_test=num_test,
        num_frames=num_frames,
        size=size,
        num_classes=num_classes,
        patch_hint=patch_hint,
        digit_size=digit_size,
        clutter=clutter,
        noise=noise,
        fps=fps,
        seed=seed,
    )
    with open(os.path.join(out_dir, "synth.json"), "w", encoding="utf-8") as f:
        json.dump(meta, f, indent=2)
    return result
