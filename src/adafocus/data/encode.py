"""Writing small H.264/MPEG-4 videos with PyAV (synthetic data, tests, the benchmark)."""

from __future__ import annotations

import os
from collections.abc import Iterable

import av
import numpy as np


def write_video(
    path: str | os.PathLike,
    frames: Iterable[np.ndarray],
    *,
    fps: int = 25,
    codec: str = "libx264",
    gop: int | None = None,
    crf: int = 23,
    gray: bool = False,
    faststart: bool = False,
) -> int:
    """Encode ``frames`` (each ``(H, W, 3)`` uint8 RGB, or ``(H, W)`` when ``gray``) into ``path``.

    ``gop`` is the keyframe interval (``None``: the encoder's default, 250 for x264). Returns the
    number of frames written. ``gray=True`` stores a single luma plane (pix_fmt ``gray``), which is
    how grayscale sources arrive in practice. ``faststart`` writes the MP4 index before the data.
    """
    it = iter(frames)
    first = next(it, None)
    if first is None:
        raise ValueError(f"write_video({path}): no frames given")
    h, w = first.shape[:2]
    if h % 2 or w % 2:
        # yuv420p needs even sides; failing here is clearer than FFmpeg's message
        raise ValueError(f"write_video({path}): frame size {w}x{h} must be even")
    n = 0
    with av.open(str(path), mode="w", options={"movflags": "faststart"} if faststart else None) as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = w, h
        if gray:
            stream.pix_fmt = "gray"
        else:
            stream.pix_fmt = "yuv420p"
        options = {}
        if codec == "libx264":
            options = {"crf": str(crf), "preset": "veryfast"}
        if gop is not None:
            stream.codec_context.gop_size = gop
            if codec == "libx264":
                # x264 ignores gop_size for scene cuts unless keyint/min-keyint are set explicitly
                options["x264-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0"
        stream.options = options
        fmt = "gray" if gray else "rgb24"
        for img in _chain(first, it):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format=fmt)
            for packet in stream.encode(frame):
                container.mux(packet)
            n += 1
        for packet in stream.encode():
            container.mux(packet)
    return n


def _chain(first: np.ndarray, rest: Iterable[np.ndarray]) -> Iterable[np.ndarray]:
    yield first
    yield from rest
