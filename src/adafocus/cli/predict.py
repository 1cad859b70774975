"""``adafocus predict``: classify video files (LightningCLI's batch predict when given its flags)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

POLICIES = ("learned", "random", "centre", "gaussian")
TRUST_HELP = (
    "unpickle the checkpoint fully even if it holds Python objects (it can then run code on this machine): "
    "only for files you trust"
)
LIGHTNING_PREDICT_FLAGS = ("--config", "--model", "--data", "--trainer", "--ckpt_path", "--print_config",
                           "--seed_everything", "--return_predictions", "--optimizer", "--lr_scheduler")  # fmt: skip


def is_lightning_predict(args: Sequence[str]) -> bool:
    """``adafocus predict ARGS`` goes to LightningCLI when ARGS hold one of its flags (``-c``,
    ``--config``, ``--model``, ``--data``, ``--trainer``, ``--ckpt_path``, ...); otherwise it is
    the video predictor."""
    return any(a == "-c" or a.split("=", 1)[0].split(".", 1)[0] in LIGHTNING_PREDICT_FLAGS for a in args)


def _run(args: argparse.Namespace) -> int:
    from ..predict import run_predict

    return run_predict(args)


def add_parser(sub: Any) -> None:
    """Register ``adafocus predict`` (the video predictor) on an argparse sub-parser collection."""
    p = sub.add_parser(
        "predict",
        help="classify video files with a trained model; print top-k classes and patch boxes",
        description=(
            "Classify a video file, every video in a folder, or the videos of a list file (TSN lines "
            "'path num_frames label' or one path per line) with a trained AdaFocus; print the top-k "
            "classes and the patch chosen in each frame. Exit code 1 if any input failed. "
            "Lightning's batch prediction over a data module is still available: an argument -c, "
            "--config, --model, --data, --trainer or --ckpt_path sends `adafocus predict` to LightningCLI "
            "(e.g. `adafocus predict --config CFG.yaml --ckpt_path X.ckpt`)."
        ),
    )
    p.add_argument("input", metavar="VIDEO_OR_LIST_OR_DIR", help="a video file, a folder of videos or a list file")
    p.add_argument(
        "--checkpoint",
        required=True,
        help="model file (adafocus export / save_model / convert-official) or stage checkpoint (.ckpt)",
    )
    p.add_argument("--trust-checkpoint", action="store_true", help=TRUST_HELP)
    p.add_argument("--topk", type=int, default=5, help="classes to report (default 5)")
    p.add_argument(
        "--num-frames",
        type=int,
        default=None,
        help="T frames sampled per video (default: the model's / its training data's, else 16)",
    )
    p.add_argument(
        "--scale-size",
        type=int,
        default=None,
        help="shorter side before the centre crop (default: the training data's, else input*256/224)",
    )
    p.add_argument(
        "--test-crops",
        type=int,
        choices=(1, 3),
        default=1,
        help="crops per clip: 1 (centre) or 3 (centre, left, right along the longer side, TSM's --test_crops 3)",
    )
    p.add_argument(
        "--test-clips",
        type=int,
        default=1,
        help="clips per video, shifted within the TSN segments (2: TSM's twice sampling); the crops x clips "
        "views' softmax scores are averaged, boxes are the first view's (clip 0, centre crop)",
    )
    p.add_argument("--policy", choices=POLICIES, default="learned", help="patch policy (fixed ones for comparison)")
    p.add_argument("--labels", help="class names, one per line (line i = class i; default: the model file's)")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per input, instead of text")
    p.add_argument("--visualize", metavar="OUT_DIR", help="write NAME.png (frame strip) and NAME.gif with the boxes")
    p.add_argument("--device", default="cpu", help="torch device (default cpu)")
    p.add_argument(
        "--fast",
        action="store_true",
        help="fold BN into convolutions, channels_last; on the CPU also keep freed memory; same results up to rounding",
    )
    p.add_argument(
        "--int8-glance",
        type=int,
        default=None,
        metavar="N",
        help="int8 f_G calibrated on the first N inputs (implies --fast; CPU; ~3x faster f_G, results may "
        "move slightly)",
    )
    p.add_argument(
        "--root",
        default=None,
        help="prefix for relative paths in a list (default: as given if it exists, else the list's folder)",
    )
    p.add_argument("--delimiter", default=" ", help="field separator of a list file (default: whitespace)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random / gaussian policies")  # fmt: skip
    p.add_argument(
        "--budget",
        type=float,
        default=None,
        metavar="GFLOPS",
        help="early exit: stop each video once confident, at this mean GFLOPs per video (models that predict "
        "after every frame; thresholds fitted on --calibration)",
    )
    p.add_argument("--calibration", metavar="LIST", help="videos to fit the --budget thresholds on (list/folder)")
    p.add_argument("--exit-confidence", choices=("max_logit", "max_prob"), default="max_logit",
                   help="what the exit thresholds compare (official: the top logit)")  # fmt: skip
    p.set_defaults(func=_run)
