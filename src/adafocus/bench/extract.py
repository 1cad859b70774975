"""Extraction throughput: source frames/s (total and per worker) of ``adafocus data extract`` on H.264 MP4s.

    python -m adafocus.bench.extract [--clips 4] [--seconds 10] [--fps 30] [--size 640x360] [--workers 1 2]
                                     [--format frames video] [--short-side S] [--dir DIR]

Writes the clips once (textured content moving a few pixels a frame, so the encoder makes real P/B
frames), then extracts them into a fresh folder per run, as the command does (the worker processes'
start is included), and times a re-run that finds everything done. Besides wall-clock rates it prints
frames per CPU-second (this process and its workers, from ``getrusage``): the per-core figure, which
holds on a machine other jobs share too. Not a test; figures vary by machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time

import numpy as np

from adafocus.data import extract as ex
from adafocus.data.encode import write_video


def _frames(rng: np.random.Generator, n: int, w: int, h: int):
    """Random 8x8 blocks sliding 1 px per frame (same content as :mod:`adafocus.bench.data`)."""
    base = rng.integers(0, 255, (h // 8, w // 8 + n // 8 + 1, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
    for t in range(n):
        yield np.ascontiguousarray(base[:, t : t + w])


def make_clips(folder: str, *, clips: int, seconds: int, fps: int, size: tuple[int, int]) -> str:
    """Write ``clips`` MP4s (x264 defaults: GOP 250) under ``folder`` once; return their list file."""
    rng = np.random.default_rng(0)
    lines = []
    w, h = size
    for i in range(clips):
        name = f"clip{i}_{w}x{h}_{fps}fps_{seconds}s.mp4"
        path = os.path.join(folder, name)
        if not os.path.exists(path):
            write_video(path, _frames(rng, seconds * fps, w, h), fps=fps)
        lines.append(f"{name} {seconds * fps} {i % 2}")
    lst = os.path.join(folder, "clips.txt")
    with open(lst, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return lst


def _cpu_seconds() -> float:
    """User + system CPU time of this process and of its finished children (the pool's workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m adafocus.bench.extract", description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--fps", type=int, default=30)
    ap.add_argument("--size", default="640x360", help="WxH of the clips")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--format", nargs="+", choices=list(ex.KINDS), default=list(ex.KINDS))
    ap.add_argument("--short-side", type=int, default=None, help="also resize (default: keep the size)")
    ap.add_argument("--dir", default=None, help="keep the clips here (default: a temporary folder)")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        src = args.dir or os.path.join(tmp, "clips")
        os.makedirs(src, exist_ok=True)
        lst = make_clips(src, clips=args.clips, seconds=args.seconds, fps=args.fps, size=(w, h))
        inp = ex.read_input(lst, root=src)
        total = args.clips * args.seconds * args.fps
        print(
            f"{args.clips} clips, {w}x{h} H.264, {args.seconds} s at {args.fps} fps ({total} frames); "
            f"short side {args.short_side or 'kept'}; {os.cpu_count()} CPUs on this machine"
        )
        for fmt in args.format:
            settings = ex.Settings(formats=(fmt,), short_side=args.short_side)
            what = "JPEG q90" if fmt == "frames" else f"{ex.resolve_codec('auto')} GOP 8"
            for workers in args.workers:
                out = os.path.join(tmp, f"out_{fmt}_{workers}")
                shutil.rmtree(out, ignore_errors=True)
                cpu = _cpu_seconds()
                report = ex.extract(inp, out, settings, workers=workers, progress=False, log=lambda _: None)
                cpu = _cpu_seconds() - cpu  # the pool has shut down: its workers' time is counted
                if report.failures:
                    raise SystemExit(f"extraction failed: {report.failures[0]}")
                rate = total / report.seconds
                print(
                    f"{fmt:6} ({what}), {workers} worker{'s' if workers > 1 else ' '}: {report.seconds:6.1f} s  "
                    f"{rate:6.0f} frames/s  {rate / workers:6.0f} per worker  {total / cpu:6.0f} frames per CPU-second"
                )
                t0 = time.perf_counter()
                again = ex.extract(inp, out, settings, workers=workers, progress=False, log=lambda _: None)
                assert again.skipped == args.clips
            print(f"{fmt:6} re-run, all {args.clips} done: {time.perf_counter() - t0:.2f} s (skipped)")


if __name__ == "__main__":
    main()
