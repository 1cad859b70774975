"""``adafocus data synth | check | convert``: the data layer's commands."""

from __future__ import annotations

import argparse
import sys


def _synth(args: argparse.Namespace) -> int:
    from ..data.synth import generate

    out = generate(
        args.out_dir,
        num_train=args.num_train,
        num_val=args.num_val,
        num_test=args.num_test,
        num_frames=args.num_frames,
        size=args.size,
        num_classes=args.num_classes,
        patch_hint=args.patch_hint,
        digit_size=args.digit_size,
        clutter=args.clutter,
        noise=args.noise,
        seed=args.seed,
    )
    for key in ("train", "val", "test"):
        print(f"{key}: {out[key]}")
    print(f"root: {out['root']}  num_classes: {out['num_classes']}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..data.check import check_list, read_durations
    from ..errors import UsageError

    # one durations file for every list: read once (a bad file is one line naming it)
    durations = read_durations(args.durations) if args.durations else None
    status = 0
    for lst in args.lists:
        try:
            report = check_list(
                lst,
                root=args.root,
                source=args.source,
                frame_template=args.frame_template,
                delimiter=args.delimiter,
                num_classes=args.num_classes,
                num_frames=args.num_frames,
                decode=not args.no_decode,
                deep=args.deep,
                # a bar is for a person watching: not in logs, pipes or CI
                progress=not args.no_progress and sys.stderr.isatty(),
                count_tolerance=args.count_tolerance,
                expected_fps=args.expected_fps,
                fps_tolerance=args.fps_tolerance,
                durations=durations,
                encoding=args.encoding,
            )
        except ValueError as err:  # a bad --count-tolerance / --expected-fps / --fps-tolerance value
            name, _, rest = str(err).partition("=")  # "count_tolerance='x': ..." -> "--count-tolerance='x': ..."
            raise UsageError(f"check --{name.replace('_', '-')}={rest}") from None
        for line in report.lines():
            print(line, file=sys.stdout if line.startswith(lst) else sys.stderr)
        status |= 0 if report.ok else 1
    return status


def _convert(args: argparse.Namespace) -> int:
    from ..data import convert as cv

    classes = None
    if args.classes and args.format in ("kinetics", "kinetics400", "activitynet"):
        try:
            classes = cv._read_classes(args.classes)
        except FileNotFoundError:
            classes = None  # first conversion (train): write the class list there
    if args.format == "kinetics":
        conv = cv.convert_kinetics(args.input, classes=classes, **_tmpl(args))
    elif args.format == "kinetics400":
        conv = cv.convert_kinetics400(args.input, classes=classes, **_tmpl(args))
    elif args.format == "jester":
        if not args.labels:
            print("adafocus data convert jester: --labels (jester-v1-labels.csv) is required", file=sys.stderr)
            return 2
        conv = cv.convert_jester(args.input, args.labels, sort_classes=args.label_order == "sorted", **_tmpl(args))
    elif args.format in ("ssv1", "ssv2"):
        if not args.labels:
            print(
                f"adafocus data convert {args.format}: --labels (the official labels file) is required", file=sys.stderr
            )
            return 2
        fn = cv.convert_ssv1 if args.format == "ssv1" else cv.convert_ssv2
        conv = fn(args.input, args.labels, **_tmpl(args))
    else:
        conv = cv.convert_activitynet(
            args.input, subset=args.subset, classes=classes, max_labels=args.max_labels, **_tmpl(args)
        )
    pad = args.max_labels if args.format == "activitynet" else 0
    delimiter = args.delimiter if args.delimiter is not None else ("," if args.format == "activitynet" else " ")
    n = cv.write_list(
        conv,
        args.output,
        root=args.root,
        source=args.source,
        frame_template=args.frame_template,
        delimiter=delimiter,
        pad_to=pad,
        classes_out=args.classes,
    )
    for p in conv.problems:
        print(f"warning: {p}", file=sys.stderr)
    print(
        f"wrote {n} lines to {args.output} ({len(conv.classes)} classes"
        + (f", class names in {args.classes})" if args.classes else ")")
        + f"; {len(conv.problems)} problems"
    )
    return 0 if n else 1


def _tmpl(args: argparse.Namespace) -> dict:
    return {"template": args.template} if args.template else {}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``data`` and its ``synth`` / ``check`` / ``convert`` subcommands."""
    data = subparsers.add_parser("data", help="datasets: synthetic set, list checks, annotation converters")
    sub = data.add_subparsers(dest="data_command", required=True)

    p = sub.add_parser("synth", help="write the synthetic moving-digit benchmark (MP4s + lists)")
    p.add_argument("out_dir")
    p.add_argument("--num-train", type=int, default=300)
    p.add_argument("--num-val", type=int, default=60)
    p.add_argument("--num-test", type=int, default=60)
    p.add_argument("--num-frames", type=int, default=8)
    p.add_argument("--size", type=int, default=112, help="frame side in pixels")
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--patch-hint", type=int, default=48, help="patch size P the digit is sized for")
    p.add_argument("--digit-size", type=int, default=None, help="digit side in pixels (default 0.6 P)")
    p.add_argument("--clutter", type=int, default=12, help="grey strokes per video (difficulty)")
    p.add_argument("--noise", type=float, default=12.0, help="pixel noise std (difficulty)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_synth)

    p = sub.add_parser("check", help="validate annotation lists; every problem with its line number")
    p.add_argument("lists", nargs="+", metavar="LIST")
    _media_args(p)
    p.add_argument("--delimiter", default=" ")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the lists (default utf-8), e.g. latin-1")
    p.add_argument("--num-classes", type=int, default=None, help="labels must lie in [0, K)")
    p.add_argument("--num-frames", type=int, default=16, help="T: warn about shorter videos")
    p.add_argument(
        "--no-decode",
        action="store_true",
        help="only open the media (count frame files, index video packets), do not decode frames",
    )
    p.add_argument(
        "--deep",
        action="store_true",
        help="decode every frame of videos too (slow: a full decode). Without it a video is opened, its "
        "packets indexed and the frames an evaluation clip uses plus the last one decoded; frame folders "
        "always have every frame decoded (training draws random frames), the first bad one reported",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar (none either when stderr is no TTY)")
    p.add_argument(
        "--count-tolerance",
        default="0",
        help="how far a listed num_frames may be from the frames found: frames (2) or percent (5%%); default 0",
    )
    p.add_argument(
        "--expected-fps",
        default=None,
        help="the set's frame rate: flag videos (frame folders: with --durations) far from it; 'auto': the "
        "median of the checked samples; default: no rate check",
    )
    p.add_argument(
        "--fps-tolerance", type=float, default=0.25, help="relative: flag r when max(r/F, F/r) > 1 + this (0.25)"
    )
    p.add_argument(
        "--durations",
        default=None,
        help="seconds per video for frame folders: ActivityNet JSON, {name: s} JSON or 'name seconds' lines",
    )
    p.set_defaults(func=_check)

    p = sub.add_parser("convert", help="official annotation files -> TSN list (path num_frames label...)")
    p.add_argument("format", choices=["kinetics", "kinetics400", "ssv1", "ssv2", "jester", "activitynet"])
    p.add_argument("input", help="Kinetics CSV, SSv1 / Jester CSV, SSv2 JSON or ActivityNet JSON")
    p.add_argument("output", help="list file to write")
    p.add_argument("--labels", help="SSv1 / Jester labels CSV, SSv2 labels JSON")
    p.add_argument(
        "--label-order",
        choices=["sorted", "file"],
        default="sorted",
        help="Jester class index: place among the sorted names (TSM's lists, default) or in the labels file",
    )
    p.add_argument(
        "--classes", help="class names, one per line: read if it exists (Kinetics/ActivityNet), else written"
    )
    p.add_argument("--subset", default="training", help="ActivityNet subset (training, validation)")
    p.add_argument("--max-labels", type=int, default=3, help="ActivityNet labels per video (-1 padded)")
    p.add_argument(
        "--template",
        help="media path per row, e.g. '{youtube_id}.mp4', '{id}', 'v_{id}' (kinetics400 default: "
        "'{youtube_id}_{time_start:06d}_{time_end:06d}.mp4', the CVDF downloads' names)",
    )
    p.add_argument("--delimiter", default=None, help="output field separator (default ',' for ActivityNet, else ' ')")
    _media_args(p, root_help="count frames of the media under ROOT (missing ones are dropped)")
    p.set_defaults(func=_convert)

    from . import data_extract  # argparse only, like this module: PyAV loads when `data extract` runs

    data_extract.add_parser(sub)


def _media_args(p: argparse.ArgumentParser, root_help: str = "prefix for the list's paths") -> None:
    p.add_argument("--root", default=None if "count" in root_help else "", help=root_help)
    p.add_argument("--source", choices=["video", "frames"], default="video")
    p.add_argument("--frame-template", default="img_{:05d}.jpg")
