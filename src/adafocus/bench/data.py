"""Data-loading benchmark: clips/s and frames/s per worker for 340x256 H.264 clips of 10 s at T=16.

    python -m adafocus.bench.data [--clips 6] [--seconds 10] [--frames 16] [--gop 250 12] [--dir DIR]

Writes the clips (and their JPEG frame folders) once, then times ``VideoDataset.__getitem__``
in one process with one thread, i.e. one DataLoader worker: decode (seek or decode-through as
the GOP allows) + the training transform to 224x224 float. Not a test; figures vary by machine.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import torch
from torchvision.io import write_jpeg

from adafocus.data.dataset import VideoDataset
from adafocus.data.encode import write_video
from adafocus.data.transforms import build_transform


def _frames(rng: np.random.Generator, n: int, h: int = 256, w: int = 340) -> list[np.ndarray]:
    """Moving textured content, so the encoder produces realistic P-frames (not all-skip)."""
    base = rng.integers(0, 255, (h // 8, w // 8 + n, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    return [np.ascontiguousarray(base[:, t : t + w]) for t in range(n)]


def make_clips(out: str, *, clips: int, seconds: int, fps: int, gop: int) -> tuple[str, str]:
    """Write ``clips`` videos and frame folders under ``out``; return the two list files."""
    rng = np.random.default_rng(0)
    vlines, flines = [], []
    for i in range(clips):
        frames = _frames(rng, seconds * fps)
        video = os.path.join(out, f"gop{gop}_{i}.mp4")
        if not os.path.exists(video):
            write_video(video, frames, fps=fps, gop=gop)
        folder = os.path.join(out, f"frames_{i}")
        if not os.path.isdir(folder):
            os.makedirs(folder)
            for k, f in enumerate(frames, start=1):
                write_jpeg(torch.from_numpy(f).permute(2, 0, 1).contiguous(), os.path.join(folder, f"img_{k:05d}.jpg"))
        vlines.append(f"{video} {len(frames)} 0")
        flines.append(f"{folder} {len(frames)} 0")
    vlist, flist = os.path.join(out, f"videos_gop{gop}.txt"), os.path.join(out, "frames.txt")
    for path, lines in ((vlist, vlines), (flist, flines)):
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
    return vlist, flist


def bench(list_file: str, source: str, frames: int, repeats: int) -> tuple[float, float]:
    ds = VideoDataset(
        list_file, source=source, num_frames=frames, train=True, transform=build_transform(train=True), on_error="raise"
    )
    ds[0]  # warm-up: imports, allocator
    t0 = time.perf_counter()
    n = 0
    for _ in range(repeats):
        for i in range(len(ds)):
            ds[i]
            n += 1
    dt = time.perf_counter() - t0
    return n / dt, n * frames / dt


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m adafocus.bench.data", description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--frames", type=int, default=16, help="T, frames per clip")
    ap.add_argument("--gop", type=int, nargs="+", default=[250, 12], help="keyframe intervals to test")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--dir", default=None, help="keep the clips here (default: a temporary folder)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)  # one DataLoader worker = one core
    with tempfile.TemporaryDirectory() as tmp:
        out = args.dir or tmp
        os.makedirs(out, exist_ok=True)
        print(
            f"{args.clips} clips, 340x256 H.264, {args.seconds} s at {args.fps} fps, T={args.frames}, "
            "train sampling + transform to 224, 1 thread (= per worker)"
        )
        flist = None
        for gop in args.gop:
            vlist, flist = make_clips(out, clips=args.clips, seconds=args.seconds, fps=args.fps, gop=gop)
            cps, fps_ = bench(vlist, "video", args.frames, args.repeats)
            print(f"video  (PyAV, GOP {gop:>3}):  {cps:6.1f} clips/s  {fps_:7.0f} frames/s per worker")
        cps, fps_ = bench(flist, "frames", args.frames, args.repeats)
        print(f"frame folders (JPEG):    {cps:6.1f} clips/s  {fps_:7.0f} frames/s per worker")


if __name__ == "__main__":
    main()
