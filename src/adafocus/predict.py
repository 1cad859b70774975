"""Run a trained AdaFocus on video files: ``adafocus predict`` and its Python API.

::

    from adafocus.predict import load_model, predict_video

    model = load_model("model.pt")                 # stage .ckpt, `adafocus export` or converted file
    result = predict_video(model, "clip.mp4", topk=5)
    result["topk"]                                 # [{"class": 3, "name": None, "score": 0.97}, ...]
    result["boxes"]                                # [[y, x, h, w], ...] per frame, model-input pixels

A video of any length is read like an evaluation sample of the data layer: T frames at the centres
of T equal segments (TSN), shorter side resized to ``scale_size``, centre crop ``input_size``,
ImageNet normalisation. The model runs in eval mode (the learned policy takes its argmax).
``test_crops=3`` / ``test_clips=N`` (``--test-crops`` / ``--test-clips``) add the data layer's
multi-view test protocol: the views' softmax scores are averaged, and the boxes, frame indices and
frames reported are the first view's (clip 0, centre crop: the single-view input).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .accelerate.prepare import first_parameter
from .checkpoint import CheckpointError, load_model
from .models.base import AdaFocusBase
from .models.fixed_policies import FIXED_POLICIES
from .preprocess import IMAGENET_MEAN, IMAGENET_STD, Preprocess, preprocess_for

__all__ = ["clip_preprocess", "collect_inputs", "load_model", "predict_video", "read_clip", "run_predict"]
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv", ".wmv", ".3gp", ".ogv")
LIST_EXTENSIONS = (".txt", ".lst", ".list", ".csv", ".tsv")
POLICIES = ("learned", *FIXED_POLICIES)


# ---- loading ----------------------------------------------------------------------------------
def clip_preprocess(model: nn.Module) -> Preprocess:
    """How ``model`` is fed: what its file recorded (``model.preprocess``), completed from the model."""
    return preprocess_for(model, getattr(model, "preprocess", None))


# ---- one video -------------------------------------------------------------------------------
def read_clip(
    path: str | os.PathLike,
    *,
    num_frames: int,
    input_size: int,
    scale_size: int | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    test_crops: int = 1,
    test_clips: int = 1,
) -> tuple[torch.Tensor, list[int], int]:
    """Decode ``num_frames`` TSN evaluation frames of a video file, transformed for the model.

    Returns ``(frames (T, 3, input_size, input_size) float, frame indices, frames in the video)``;
    an unreadable file raises :class:`adafocus.data.DataError` naming it. With several views
    (``test_crops`` 3 and / or ``test_clips`` > 1, as :class:`~adafocus.data.VideoDataModule`'s)
    ``frames`` is ``(V, T, 3, input_size, input_size)``, clip-major, decoded once
    (:func:`adafocus.data.dataset.read_views`), and the indices are clip 0's.
    """
    from .data.dataset import read_views
    from .data.errors import DataError
    from .data.sampling import tsn_indices
    from .data.sources import VideoSource
    from .data.transforms import apply_clip_transform, build_transform

    path = os.fspath(path)
    scale_size = scale_size or int(round(input_size * 256 / 224))
    transform = build_transform(train=False, input_size=input_size, scale_size=scale_size, mean=mean, std=std,
                                crops=test_crops)  # fmt: skip
    if isinstance(test_clips, bool) or not isinstance(test_clips, int) or test_clips < 1:
        raise ValueError(f"test_clips must be an integer >= 1, got {test_clips!r}")
    try:
        clip = VideoSource().open(path)
        try:
            total = clip.num_frames
            if test_crops * test_clips > 1:
                views, clips = read_views(clip, num_frames, test_clips, transform)
                return views, clips[0], total
            indices = tsn_indices(clip.num_frames, num_frames, train=False)
            raw = clip.read(indices)
        finally:
            clip.close()
        frames = apply_clip_transform(transform, raw)
    except DataError:
        raise
    except (OSError, RuntimeError, ValueError) as e:  # anything else a broken file can provoke
        raise DataError(f"{e.__class__.__name__}: {e}", path=path) from None
    return frames, indices, total


def predict_video(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    topk: int = 5,
    policy: str = "learned",
    scale_size: int | None = None,
    class_names: Sequence[str] | None = None,
    seed: int = 0,
    return_frames: bool = False,
    exit_policy: Any = None,
    test_crops: int = 1,
    test_clips: int = 1,
) -> dict[str, Any]:
    """Classify one video file and report where the model looked.

    Args:
        model: an :class:`~adafocus.AdaFocus` or :class:`~adafocus.AdaFocusTSM` (e.g. from
            :func:`load_model`); it runs in eval mode under ``torch.inference_mode`` on its own
            device, and its train/eval modes are restored after.
        path: a video file PyAV can decode, of any length.
        num_frames: T (default: the model's preprocessing, :func:`clip_preprocess`).
        topk: how many classes to report.
        policy: ``"learned"`` or a fixed baseline ``"random" | "centre" | "gaussian"``.
        scale_size: shorter side before the centre crop (default: the model's preprocessing).
        class_names: names by class index (the ``"name"`` fields; default ``model.class_names``;
            ``None`` where missing).
        seed: seeds the random / gaussian policies, so results are reproducible.
        return_frames: add ``"frames"``: the model's input as uint8 ``(T, H, W, 3)`` (for drawing).
        exit_policy: an :class:`adafocus.early_exit.ExitPolicy`: stream the frames and stop at the exit
            (learned policy only); adds ``"exit"`` (frames used, GFLOPs spent) and leaves ``None``
            boxes for the frames never processed.
        test_crops: 1 (centre crop) or 3 (centre, left, right along the longer side).
        test_clips: clips per video, shifted within the TSN segments (2: TSM's twice sampling).
            With ``V = test_crops * test_clips > 1`` the model runs on the V views as one batch and
            ``topk`` scores are the views' mean softmax; ``frame_indices``, ``boxes``, ``keep`` and
            ``frames`` are the first view's (clip 0, centre crop), and ``views`` gives ``{"crops",
            "clips"}``.

    Returns a JSON-ready dict: ``path``, ``num_frames`` (T), ``video_frames`` (frames in the file),
    ``frame_indices``, ``policy``, ``input_size``, ``patch_size``, ``topk`` (``[{class, name,
    score}]``, softmax of the prediction after the last frame), ``boxes`` (``[y, x, h, w]`` per
    frame in the ``input_size`` frame) and, for AdaFocus+, ``keep`` (``True`` where f_L ran).
    """
    if topk < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if policy not in (*POLICIES, "center"):
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if not isinstance(model, AdaFocusBase):
        raise ValueError(f"predict_video needs a model that picks patches; {type(model).__name__} has none")
    if isinstance(test_crops, bool) or test_crops not in (1, 3):
        raise ValueError(f"test_crops must be 1 or 3, got {test_crops!r}")
    if isinstance(test_clips, bool) or not isinstance(test_clips, int) or test_clips < 1:
        raise ValueError(f"test_clips must be an integer >= 1, got {test_clips!r}")
    views = test_crops * test_clips
    if views > 1 and exit_policy is not None:
        raise ValueError("early exit streams one clip; it cannot be combined with test_crops / test_clips")
    pre = clip_preprocess(model)
    t = int(num_frames or pre.num_frames)
    frames, indices, total = read_clip(path, num_frames=t, input_size=pre.input_size,
                                       scale_size=scale_size or pre.scale_size, mean=pre.mean, std=pre.std,
                                       test_crops=test_crops, test_clips=test_clips)  # fmt: skip
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    param = first_parameter(model)
    device = param.device if param is not None else torch.device("cpu")
    modes = {m: m.training for m in model.modules()}
    model.eval()
    exited: dict[str, Any] | None = None
    try:
        with torch.inference_mode():
            if exit_policy is not None:
                out, exited = _stream_to_exit(model, frames.to(device), exit_policy, policy)
            else:
                gen = torch.Generator(device=device).manual_seed(seed)
                # several views: one batch of V clips, row 0 the first view (whose boxes are reported)
                batch = frames if views > 1 else frames.unsqueeze(0)
                out = model(batch.to(device), policy=policy, sample=False, generator=gen,
                            policy_stats=False)  # fmt: skip
    finally:
        for m, was in modes.items():
            m.training = was
    # the views' mean softmax score, as in the data module's multi-view evaluation
    probs = torch.softmax(out.prediction.float(), dim=-1).mean(0).cpu()
    scores, classes = probs.topk(min(topk, probs.numel()))
    p = int(model.patch_size)
    result: dict[str, Any] = {
        "path": os.fspath(path),
        "num_frames": t,
        "video_frames": total,
        "frame_indices": [int(i) for i in indices],
        "policy": policy,
        "input_size": int(model.input_size),
        "patch_size": p,
        "topk": [
            {"class": int(c), "name": _name(class_names, int(c)), "score": float(s)}
            for s, c in zip(scores.tolist(), classes.tolist())
        ],
        "boxes": [None if y < 0 else [int(y), int(x), p, p] for y, x in model.in_time_order(out.offsets)[0].tolist()],
    }
    if getattr(out, "frame_indices", None) is not None:  # Uni-AdaFocus: f_L saw these frames, in these windows
        corners, sides = out.offsets[0].cpu(), out.window_sides[0].float().cpu()
        result["focus_frames"] = [int(i) for i in out.frame_indices[0].tolist()]
        result["boxes"] = [[int(y), int(x), int(round(h)), int(round(w))]
                           for (y, x), (h, w) in zip(corners.tolist(), sides.tolist())]  # fmt: skip
    if views > 1:
        result["views"] = {"crops": test_crops, "clips": test_clips}
    if exited is not None:
        result["exit"] = exited
    if out.keep is not None:
        result["keep"] = [bool(k) for k in out.keep[0].cpu().tolist()]
    if return_frames:
        from .viz import denormalise

        result["frames"] = denormalise(frames[0] if views > 1 else frames, pre.mean, pre.std)
    return result


def _name(names: Sequence[str] | None, c: int) -> str | None:
    return names[c] if names is not None and 0 <= c < len(names) else None


# ---- inputs ----------------------------------------------------------------------------------
@dataclass
class _Item:
    path: str
    label: int | None = None
    list_file: str | None = None
    line: int | None = None


def _is_list(path: str) -> bool:
    return os.path.isfile(path) and path.lower().endswith(LIST_EXTENSIONS)


def collect_inputs(target: str, *, root: str | None = None, delimiter: str = " ") -> tuple[list[_Item], list[str]]:
    """The videos named by ``target`` (a video file, a folder of videos, or a list file) and the
    problems found while reading it (one line each, naming the file or ``list:line``)."""
    from .data.annotations import parse_line, resolve
    from .data.errors import DataError

    if os.path.isdir(target):
        names = sorted(n for n in os.listdir(target) if n.lower().endswith(VIDEO_EXTENSIONS))
        if not names:
            return [], [f"{target}: no video files ({', '.join(VIDEO_EXTENSIONS)}) in this folder"]
        return [_Item(os.path.join(target, n)) for n in names], []
    if not _is_list(target):
        return [_Item(target)], []
    items: list[_Item] = []
    errors: list[str] = []
    base = os.path.dirname(os.path.abspath(target))

    def locate(p: str) -> str:
        if root is not None:
            return resolve(root, p)
        if os.path.isabs(p) or os.path.exists(p):
            return p
        return os.path.join(base, p)  # relative to the list's folder (as `adafocus data synth` writes them)

    try:
        with open(target, encoding="utf-8-sig") as f:  # a BOM is not part of the first path
            lines = list(f)
    except (OSError, UnicodeDecodeError) as e:
        return [], [f"{target}: cannot read the list ({e.__class__.__name__}: {e})"]
    for n, text in enumerate(lines, start=1):
        s = text.strip()
        if not s or s.startswith("#"):
            continue
        fields = s.split() if delimiter == " " else s.split(delimiter)
        if len(fields) == 1 or os.path.exists(locate(s)):  # one path per line (spaces allowed)
            items.append(_Item(locate(s), None, target, n))
            continue
        try:
            sample = parse_line(text, delimiter=delimiter, list_file=target, line=n)
        except DataError as e:
            errors.append(str(e))
            continue
        items.append(_Item(locate(sample.path), sample.label, target, n))
    if not items and not errors:
        errors.append(f"{target}: the list names no videos")
    return items, errors


# ---- command line ----------------------------------------------------------------------------
def _describe(r: dict[str, Any]) -> str:
    size = f"{r['input_size']}x{r['input_size']}"
    lines = [
        f"{r['path']}  (T={r['num_frames']} of {r['video_frames']} frames, input {size}, "
        f"patch {r['patch_size']}, policy {r['policy']})"
    ]
    if r.get("views"):
        v = r["views"]
        lines.append(f"  views:   {v['crops']} crops x {v['clips']} clips, mean softmax; patches of the first view")
    if r.get("label") is not None:
        name = f" ({r['label_name']})" if r.get("label_name") else ""
        lines.append(f"  label:   class {r['label']}{name}")
    head = f"  top-{len(r['topk'])}:"
    for rank, c in enumerate(r["topk"], start=1):
        name = f" ({c['name']})" if c["name"] else ""
        lines.append(f"{head if rank == 1 else '':<9}{rank}. class {c['class']}{name}  {c['score']:.4f}")
    keep = r.get("keep")
    frames = r.get("focus_frames") or range(len(r["boxes"]))
    boxes = [
        f"{t}:"
        + ("not seen" if b is None else f"({b[0]},{b[1]})" + ("" if keep is None or keep[t] else " skipped"))
        + ("" if b is None or "focus_frames" not in r else f" {b[2]}x{b[3]}")
        for t, b in zip(frames, r["boxes"])
    ]
    if r.get("exit"):
        e = r["exit"]
        lines.append(f"  early exit after {e['frames_used']} of {r['num_frames']} frames: "
                     f"{e['gflops']:.4g} of {e['full_gflops']:.4g} GFLOPs")  # fmt: skip
    lines.append(f"  patches, frame:(y,x) of the {r['patch_size']}px box in the {size} input: " + "  ".join(boxes))
    return "\n".join(lines)


def _title(r: dict[str, Any]) -> str:
    top = r["topk"][0]
    pred = top["name"] or str(top["class"])
    head = os.path.basename(r["path"])
    if r.get("label") is not None:
        label = r.get("label_name") or str(r["label"])
        return f"{head}: label {label} / pred {pred} ({top['score']:.2f})"
    return f"{head}: pred {pred} ({top['score']:.2f})"


def _enlarge(frames: np.ndarray, min_side: int = 160) -> np.ndarray:
    k = max(1, -(-min_side // min(frames.shape[1:3])))
    return frames if k == 1 else frames.repeat(k, axis=1).repeat(k, axis=2)


def _visualize(r: dict[str, Any], out_dir: str, used: set[str]) -> dict[str, str]:
    from .viz import draw_boxes, save_gif, save_strip_png

    stem = os.path.splitext(os.path.basename(r["path"]))[0] or "video"
    name, k = stem, 1
    while name in used:
        name, k = f"{stem}_{k}", k + 1
    used.add(name)
    shown = [i for i, b in enumerate(r["boxes"]) if b is not None]  # early exit: the frames processed
    frames = r["frames"][r["focus_frames"]] if r.get("focus_frames") else r["frames"][shown]
    boxes = [b for b in r["boxes"] if b is not None]
    keep = r.get("keep")
    boxed = draw_boxes(frames, [b[:2] for b in boxes], r["patch_size"], sizes=[b[2:] for b in boxes],
                       keep=None if keep is None else [keep[i] for i in shown])  # fmt: skip
    png, gif = os.path.join(out_dir, name + ".png"), os.path.join(out_dir, name + ".gif")
    save_strip_png(png, [boxed], [_title(r)])
    save_gif(gif, _enlarge(boxed), fps=4)
    return {"png": png, "gif": gif}


def read_class_names(path: str) -> list[str]:
    """Class names from a text file, one per line (line i = class i); trailing blank lines dropped."""
    with open(path, encoding="utf-8") as f:
        names = [line.strip() for line in f]
    while names and not names[-1]:
        names.pop()
    return names


def _speed_up(model: nn.Module, items: list[_Item], args: argparse.Namespace) -> str | None:
    """``--fast`` / ``--int8-glance``: tune ``model`` in place; an error message, or None."""
    from .accelerate.memory import keep_freed_memory
    from .accelerate.prepare import prepare_for_inference
    from .accelerate.quantize import quantize_glance
    from .data.errors import DataError

    if args.int8_glance is not None and args.int8_glance < 1:
        return f"--int8-glance needs a number of calibration videos >= 1, got {args.int8_glance}"
    if args.int8_glance and args.device != "cpu":
        return f"--int8-glance runs on the CPU only (got --device {args.device})"
    prepare_for_inference(model)
    if args.device == "cpu":
        keep_freed_memory()
    if not args.int8_glance:
        return None
    pre = clip_preprocess(model)
    t = int(args.num_frames or pre.num_frames)
    scale = args.scale_size or pre.scale_size
    clips = []
    for item in items[: args.int8_glance]:
        try:
            clips.append(read_clip(item.path, num_frames=t, input_size=pre.input_size, scale_size=scale,
                                   mean=pre.mean, std=pre.std)[0])  # fmt: skip
        except DataError:
            continue  # reported when it is predicted
    if not clips:
        return f"--int8-glance: none of the first {args.int8_glance} inputs could be decoded for calibration"
    quantize_glance(model, torch.stack(clips))
    return None


def _stream_to_exit(model: AdaFocusBase, frames: torch.Tensor, policy: Any, patch_policy: str):
    """Early exit: stream ``frames`` ``(T, ...)`` and stop at the exit; an output-like object with the
    exit step's logits and offsets ``(1, T, 2)`` (-1 for frames never processed), and the exit summary."""
    from types import SimpleNamespace

    from .early_exit import stream_with_exit

    if patch_policy != "learned":
        raise ValueError("--budget (early exit) runs the learned policy; drop --policy")
    logits, used, offsets = stream_with_exit(model, frames, policy)
    t = frames.shape[0]
    full = torch.full((1, t, 2), -1, dtype=torch.long)
    full[0, :used] = offsets.cpu()
    out = SimpleNamespace(prediction=logits.unsqueeze(0), offsets=full, keep=None)
    summary = {"frames_used": used, "gflops": float(policy.step_gflops[used - 1]),
               "full_gflops": float(policy.step_gflops[-1])}  # fmt: skip
    return out, summary


def fit_budget(model: AdaFocusBase, items: list, budget: float, args: argparse.Namespace) -> Any:
    """Exit thresholds meeting ``budget`` GFLOPs per video, fitted on the calibration videos ``items``."""
    from tqdm import tqdm

    from .early_exit import fit_exit_policy, step_gflops

    pre = clip_preprocess(model)
    t = int(args.num_frames or pre.num_frames)
    gflops = step_gflops(model, t)
    logits = []
    model.eval()
    with torch.inference_mode():
        for item in tqdm(items, desc="calibrating early exit", unit="video", file=sys.stderr, disable=len(items) < 2):
            frames = read_clip(item.path, num_frames=t, input_size=pre.input_size,
                               scale_size=args.scale_size or pre.scale_size, mean=pre.mean, std=pre.std)[0]  # fmt: skip
            logits.append(model(frames.unsqueeze(0).to(args.device), sample=False, policy_stats=False).logits.cpu())
    return fit_exit_policy(torch.cat(logits), gflops, budget, confidence=args.exit_confidence)


class _Refused(Exception):
    """A problem that ends ``adafocus predict`` before any video (printed as one line, exit 1)."""


def _load_for_predict(args: argparse.Namespace) -> tuple[AdaFocusBase, list[str] | None]:
    """The model (on ``--device``) and the class names to report."""
    if args.topk < 1:
        raise _Refused(f"--topk must be >= 1, got {args.topk}")
    if args.num_frames is not None and args.num_frames < 1:
        raise _Refused(f"--num-frames must be >= 1, got {args.num_frames}")
    crops, clips = getattr(args, "test_crops", 1), getattr(args, "test_clips", 1)
    if crops not in (1, 3):
        raise _Refused(f"--test-crops must be 1 or 3, got {crops}")
    if clips < 1:
        raise _Refused(f"--test-clips must be >= 1, got {clips}")
    if crops * clips > 1 and getattr(args, "budget", None) is not None:
        raise _Refused("--budget (early exit) streams one clip; drop --test-crops / --test-clips")
    names = None
    if args.labels:
        try:
            names = read_class_names(args.labels)
        except (OSError, UnicodeDecodeError) as e:
            raise _Refused(f"cannot read --labels {args.labels}: {e}") from None
    try:
        model = load_model(args.checkpoint, trust=args.trust_checkpoint)
    except CheckpointError as e:
        raise _Refused(str(e)) from None
    if not isinstance(model, AdaFocusBase):
        raise _Refused(f"{args.checkpoint}: a {type(model).__name__} picks no patches; predict needs an AdaFocus model")
    if names is not None and len(names) != model.num_classes:
        print(f"adafocus predict: warning: {args.labels} has {len(names)} names for {model.num_classes} classes",
              file=sys.stderr)  # fmt: skip
    try:
        model.to(args.device)
    except (RuntimeError, ValueError) as e:
        raise _Refused(f"--device {args.device}: {e}") from None
    return model, names if names is not None else model.class_names


def _predict_item(model: AdaFocusBase, item: _Item, names: list[str] | None, args: argparse.Namespace,
                  used: set[str]) -> dict[str, Any]:  # fmt: skip
    """One input's result document, or ``{"path", "error"}`` naming the file (and list line)."""
    from .data.errors import DataError

    try:
        r = predict_video(model, item.path, num_frames=args.num_frames, topk=args.topk, policy=args.policy,
                          scale_size=args.scale_size, class_names=names, seed=args.seed,
                          return_frames=bool(args.visualize),
                          exit_policy=getattr(args, "exit_policy", None),
                          test_crops=getattr(args, "test_crops", 1),
                          test_clips=getattr(args, "test_clips", 1))  # fmt: skip
    except DataError as e:
        return {"path": item.path, "error": str(e.located(list_file=item.list_file, line=item.line)
                                                if item.list_file else e)}  # fmt: skip
    except (ValueError, RuntimeError) as e:  # e.g. --num-frames against a model with a fixed clip length
        where = f"{item.list_file}:{item.line} " if item.list_file else ""
        return {"path": item.path, "error": f"{where}{item.path}: {str(e).splitlines()[0]}"}
    if item.label is not None:
        r["label"], r["label_name"] = item.label, _name(names, item.label)
    if args.visualize:
        r["visualization"] = _visualize(r, args.visualize, used)
    r.pop("frames", None)
    return r


def _budget(model: AdaFocusBase, args: argparse.Namespace) -> Any:
    """The ``--budget`` exit policy, fitted on ``--calibration``; refusals name the argument at fault."""
    from .data.errors import DataError

    if not args.calibration:
        raise _Refused(
            "--budget needs --calibration LIST: videos to fit the exit thresholds on (e.g. the training list)"
        )
    if not os.path.exists(args.calibration):
        raise _Refused(f"--calibration {args.calibration}: file not found")
    items, errors = collect_inputs(args.calibration, root=args.root, delimiter=args.delimiter)
    if errors or not items:
        raise _Refused(f"--calibration {args.calibration}: {errors[0] if errors else 'no videos'}")
    try:
        policy = fit_budget(model, items, args.budget, args)
    except DataError as e:
        raise _Refused(f"--calibration: {e}") from None
    except ValueError as e:
        raise _Refused(f"--budget {args.budget:g}: {e}") from None
    full = float(policy.step_gflops[-1])
    print(f"adafocus predict: early exit at {args.budget:g} GFLOPs per video: {policy.expected_gflops:.4g} "
          f"GFLOPs on the {len(items)} calibration videos (full: {full:.4g})", file=sys.stderr)  # fmt: skip
    return policy


def run_predict(args: argparse.Namespace) -> int:
    """``adafocus predict``; returns the exit code (1 if any input failed)."""
    from tqdm import tqdm

    try:
        model, names = _load_for_predict(args)
        if not os.path.exists(args.input):
            raise _Refused(f"{args.input}: file not found")
        items, errors = collect_inputs(args.input, root=args.root, delimiter=args.delimiter)
        for msg in errors:
            print(f"error: {msg}", file=sys.stderr)
        msg = _speed_up(model, items, args) if args.fast or args.int8_glance is not None else None
        if msg:
            raise _Refused(msg)
        args.exit_policy = _budget(model, args) if args.budget is not None else None
    except _Refused as e:
        print(f"adafocus predict: {e}", file=sys.stderr)
        return 1
    results: list[dict[str, Any]] = []
    used: set[str] = set()
    with tqdm(items, unit="video", file=sys.stderr, disable=len(items) <= 1, dynamic_ncols=True) as bar:
        for item in bar:
            r = _predict_item(model, item, names, args, used)
            results.append(r)
            if "error" in r:
                bar.write(f"error: {r['error']}", file=sys.stderr)
            elif not args.json:
                bar.write(_describe(r), file=sys.stdout)
    if args.json:
        print(json.dumps(results, indent=2))
    failed = len(errors) + sum("error" in r for r in results)
    if failed and len(items) + len(errors) > 1:
        print(f"adafocus predict: {failed} of {len(items) + len(errors)} inputs failed", file=sys.stderr)
    return 1 if failed else 0
