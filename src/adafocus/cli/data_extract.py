"""``adafocus data extract``: videos -> frame folders / short-GOP MP4s and their list (parallel, resumable,
sharded). Only argparse here: :mod:`adafocus.data.extract` (PyAV, Pillow) loads when the command runs."""

from __future__ import annotations

import argparse
import os
import sys

FORMATS = {"frames": ("frames",), "video": ("video",), "both": ("frames", "video")}


def _default_workers() -> int:
    """The CPUs this process may use (its affinity mask: what SLURM or taskset granted)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows: no affinity mask
        return max(1, os.cpu_count() or 1)


def _run(args: argparse.Namespace) -> int:
    from ..data import extract as ex
    from ..errors import UsageError

    if args.merge:
        if args.input or args.out:
            raise UsageError("extract --merge DIR takes no INPUT or --out: it joins the shard lists in DIR")
        report = ex.merge(args.merge)
        print(f"merged the shards in {args.merge}")
    else:
        if not args.input or not args.out:
            raise UsageError("extract: give INPUT (a list or a folder of videos) and --out DIR, or --merge DIR")
        if args.workers < 1:
            raise UsageError(f"extract --workers={args.workers}: must be at least 1")
        settings = ex.Settings(
            formats=FORMATS[args.format],
            short_side=args.short_side,
            fps=ex.parse_fps(args.fps),
            quality=args.quality,
            frame_template=args.frame_template,
            gop=args.gop,
            crf=args.crf,
            codec=args.codec,
        )
        if args.shard is not None:
            i, n, where = (*ex.parse_shard(args.shard), "--shard")
        else:
            i, n, where = ex.shard_from_env()
        if where and where != "--shard":
            print(f"shard {i}/{n} from {where} (pass --shard 0/1 to extract everything here)", file=sys.stderr)
        if args.root and os.path.isdir(args.input):
            raise UsageError(f"extract --root applies to a list; INPUT {args.input} is a folder (paths are under it)")
        extensions = [e for e in args.extensions.split(",") if e.strip()]
        inp = ex.read_input(
            args.input,
            root=args.root,
            delimiter=args.delimiter,
            extensions=extensions,
            exclude=args.out,
            encoding=args.encoding,
        )
        report = ex.extract(inp, args.out, settings, workers=args.workers, shard=(i, n), progress=not args.no_progress)
        print(
            f"{report.extracted} extracted ({report.frames} frames in {report.seconds:.1f} s), "
            f"{report.skipped} skipped (already done), {len(report.failures)} failed"
        )
    for line in report.summary():
        print(line)
    for line in report.failure_lines():
        print(line, file=sys.stderr)
    return 1 if report.failures else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register ``data extract`` under ``data``'s subcommands."""
    p = sub.add_parser(
        "extract",
        help="videos -> JPEG frame folders and/or short-GOP MP4s + their list (parallel, resumable, sharded)",
        description="Extract every video of an annotation list (or a folder, recursively) into --out: frame "
        "folders <path>/img_00001.jpg and/or <path>.mp4 re-encodes with a keyframe every --gop frames, and "
        "frames.txt / videos.txt with the frames written. Finished outputs are skipped on a re-run; a bad "
        "video is listed in failures.tsv and the run goes on (exit status 1).",
    )
    p.add_argument("input", nargs="?", help="annotation list, or a folder of videos (labels: class folders)")
    p.add_argument("--out", help="output folder (lists, frame folders, videos)")
    p.add_argument("--root", default="", help="prefix for the list's relative paths")
    p.add_argument("--delimiter", default=" ", help="the list's field separator (also used for the lists written)")
    p.add_argument("--encoding", default="utf-8", help="the list's text encoding (a BOM is dropped); output is UTF-8")
    p.add_argument(
        "--extensions",
        default="mp4,mkv,webm,avi,mov,m4v,flv,mpg,mpeg,3gp,wmv,ogv,ts",
        help="video file extensions searched in a folder input (comma-separated)",
    )
    p.add_argument("--format", choices=sorted(FORMATS), default="frames", help="what to write (default: frames)")
    p.add_argument("--short-side", type=int, default=None, help="resize so the shorter side is S (default: keep)")
    p.add_argument("--fps", default=None, help="resample to F frames/s by presentation time (default: every frame)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality 1-100 (default 90)")
    p.add_argument("--frame-template", default="img_{:05d}.jpg", help="frame file names, numbered from 1")
    p.add_argument("--gop", type=int, default=8, help="re-encodes: a keyframe every GOP frames (default 8)")
    p.add_argument("--crf", type=int, default=23, help="re-encodes: libx264 CRF (default 23)")
    p.add_argument(
        "--codec",
        choices=["auto", "libx264", "mpeg4"],
        default="auto",
        help="re-encodes: auto = libx264 if this PyAV has it, else mpeg4 (fixed quantiser 3)",
    )
    p.add_argument(
        "--workers", type=int, default=_default_workers(), help="processes (default: the CPUs this process may use)"
    )
    p.add_argument(
        "--shard",
        default=None,
        metavar="I/N",
        help="extract items I, I+N, ... (0-based); default from RANK/WORLD_SIZE, else SLURM_PROCID/SLURM_NTASKS, "
        "else NODE_RANK/NUM_NODES (x LOCAL_RANK/LOCAL_WORLD_SIZE), else 0/1",
    )
    p.add_argument("--merge", metavar="DIR", default=None, help="join the shard lists in DIR into one (input order)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)
