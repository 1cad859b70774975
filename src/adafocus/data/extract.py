"""``adafocus data extract``: videos -> JPEG frame folders and/or short-GOP re-encodes, with the list that
points at them.

* **Input**: an annotation list (the project's formats, :mod:`adafocus.data.annotations`) or a folder
  searched recursively for video files (labels: the class folder, ``root/<class>/<video>``).
* **Outputs** under ``out``: ``<path without extension>/img_00001.jpg ...`` (``frames``) and/or
  ``<path without extension>.mp4`` (``video``: H.264 with a keyframe every ``gop`` frames, or MPEG-4
  Part 2 where the installed FFmpeg has no libx264), plus ``frames.txt`` / ``videos.txt``: TSN lines
  ``path num_frames label...`` with the frames actually written, the input's labels and delimiter.
* **Atomic and resumable**: a frame folder is written under a temporary name and renamed once its
  ``.done`` marker is in it; a video is written to a temporary file, renamed, then marked
  (``.<name>.mp4.done``). A re-run skips every output whose marker records the same settings and
  redoes the rest (missing marker, leftover temporary files, other settings).
* **Shardable**: shard ``i`` of ``n`` takes items ``i, i + n, ...`` of the input order and writes
  ``frames.shard-i-of-n.txt`` and ``shard-i-of-n.json``; :func:`merge` joins the shards' lists in the
  input order and refuses while a shard is missing.
* **Rotation**: the display matrix (phone videos) is applied, as the ``ffmpeg`` command line does by
  default: outputs are upright and carry no rotation. Audio is dropped.

Frames are resized with FFmpeg's swscale (area filter), timestamps resampled to ``fps`` by presentation
time (each output instant takes the frame on screen then), and a bad video becomes one line of
``failures.tsv``; it never stops the run.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from fractions import Fraction
from multiprocessing import get_context
from typing import Any

from ..errors import UsageError
from .annotations import format_line, parse_line, read_list, resolve
from .errors import DataError

KINDS = ("frames", "video")
LIST_NAMES = {"frames": "frames", "video": "videos"}
VIDEO_EXTENSIONS = ("mp4", "mkv", "webm", "avi", "mov", "m4v", "flv", "mpg", "mpeg", "3gp", "wmv", "ogv", "ts")
MARKER = ".done"
_TMP = ".tmp-"  # temporary outputs are hidden names with this infix: cleaned before an item is redone
_MPEG4_Q = 3  # fixed quantiser of the MPEG-4 fallback (1 best .. 31): close to CRF 23 of x264 in quality
_MAX_TB = 65535  # MPEG-4 Part 2 refuses time bases with a larger denominator (MPEG-TS sources: 1/90000)


@dataclass(frozen=True)
class Item:
    """One video to extract: ``index`` in the deterministic input order, ``src`` its file, ``rel`` the
    output path (relative to ``out``, no extension), ``where`` how messages name it (``list:line``)."""

    index: int
    src: str
    rel: str
    labels: tuple[int, ...]
    where: str


@dataclass(frozen=True)
class Settings:
    """What the outputs are made with; a marker records its kind's part, so changed settings redo outputs."""

    formats: tuple[str, ...] = ("frames",)
    short_side: int | None = None
    fps: Fraction | None = None
    quality: int = 90
    frame_template: str = "img_{:05d}.jpg"
    gop: int = 8
    crf: int = 23
    codec: str = "auto"

    def __post_init__(self) -> None:
        bad = [f for f in self.formats if f not in KINDS]
        if bad or not self.formats:
            raise UsageError(f"extract --format: expected frames, video or both, got {self.formats!r}")
        if self.short_side is not None and self.short_side < 2:
            raise UsageError(f"extract --short-side={self.short_side}: must be at least 2 pixels")
        if self.fps is not None and self.fps <= 0:
            raise UsageError(f"extract --fps={self.fps}: must be positive")
        if not 1 <= self.quality <= 100:
            raise UsageError(f"extract --quality={self.quality}: JPEG quality must be in [1, 100]")
        try:
            self.frame_template.format(1)
        except (IndexError, KeyError, ValueError):
            raise UsageError(f"extract --frame-template={self.frame_template!r}: must format one integer") from None
        if os.sep in self.frame_template or self.frame_template.startswith("."):
            raise UsageError(f"extract --frame-template={self.frame_template!r}: must be a plain, visible file name")
        if self.gop < 1:
            raise UsageError(f"extract --gop={self.gop}: must be at least 1")
        if not 0 <= self.crf <= 51:
            raise UsageError(f"extract --crf={self.crf}: must be in [0, 51]")

    def of(self, kind: str) -> dict[str, Any]:
        """The settings an output of ``kind`` depends on (JSON-ready)."""
        common = {"short_side": self.short_side, "fps": None if self.fps is None else str(self.fps)}
        if kind == "frames":
            return {**common, "quality": self.quality, "frame_template": self.frame_template}
        return {**common, "gop": self.gop, "crf": self.crf, "codec": resolve_codec(self.codec)}


def resolve_codec(codec: str) -> str:
    """``auto``: libx264 when the installed PyAV's FFmpeg has it, else mpeg4 (always built in)."""
    import av

    if codec == "auto":
        return "libx264" if "libx264" in av.codecs_available else "mpeg4"
    if codec not in ("libx264", "mpeg4"):
        raise UsageError(f"extract --codec={codec!r}: expected auto, libx264 or mpeg4")
    if codec not in av.codecs_available:
        raise UsageError(f"extract --codec={codec}: this PyAV's FFmpeg has no {codec} encoder (use --codec mpeg4)")
    return codec


def parse_fps(text: str | None) -> Fraction | None:
    """``"30"``, ``"29.97"`` or ``"30000/1001"`` -> an exact rate; ``None`` keeps every frame."""
    if text is None:
        return None
    try:
        rate = Fraction(str(text).strip())
    except (ValueError, ZeroDivisionError):
        raise UsageError(f"extract --fps={text!r}: expected a rate such as 30, 29.97 or 30000/1001") from None
    if rate <= 0:
        raise UsageError(f"extract --fps={text!r}: must be positive")
    return rate


# ---- shards --------------------------------------------------------------------------------------------


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` (0-based ``i``) -> ``(i, n)``."""
    head, sep, tail = str(text).partition("/")
    try:
        i, n = int(head), int(tail)
    except ValueError:
        i, n = -1, 0
    if not sep or not 0 <= i < n:
        raise UsageError(f"extract --shard={text!r}: expected i/n with 0 <= i < n, e.g. 0/4")
    return i, n


def _env_int(env: Mapping[str, str], name: str) -> int:
    try:
        return int(env[name])
    except ValueError:
        raise UsageError(f"extract: environment variable {name}={env[name]!r} is not an integer") from None


def shard_from_env(env: Mapping[str, str] | None = None) -> tuple[int, int, str | None]:
    """The shard the distributed environment assigns, as ``(i, n, where)``; ``(0, 1, None)`` outside one.

    Precedence (the first scheme with a variable set wins; a scheme half set is refused):

    1. ``RANK`` / ``WORLD_SIZE`` (torchrun, Lightning, most launchers);
    2. ``SLURM_PROCID`` / ``SLURM_NTASKS`` (``srun``);
    3. ``NODE_RANK`` / ``NUM_NODES``, times ``LOCAL_RANK`` / ``LOCAL_WORLD_SIZE`` (default 0 / 1) for
       several processes per machine: ``i = NODE_RANK * LOCAL_WORLD_SIZE + LOCAL_RANK``.
    """
    env = os.environ if env is None else env
    for rank, world in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank in env or world in env:
            if rank not in env or world not in env:
                have, miss = (rank, world) if rank in env else (world, rank)
                raise UsageError(f"extract: {have} is set but {miss} is not: set both, or pass --shard i/n")
            i, n = _env_int(env, rank), _env_int(env, world)
            where = f"{rank}/{world}"
            break
    else:
        if "NODE_RANK" not in env and "NUM_NODES" not in env:
            return 0, 1, None
        if "NODE_RANK" not in env or "NUM_NODES" not in env:
            have, miss = ("NODE_RANK", "NUM_NODES") if "NODE_RANK" in env else ("NUM_NODES", "NODE_RANK")
            raise UsageError(f"extract: {have} is set but {miss} is not: set both, or pass --shard i/n")
        local = _env_int(env, "LOCAL_RANK") if "LOCAL_RANK" in env else 0
        per_node = _env_int(env, "LOCAL_WORLD_SIZE") if "LOCAL_WORLD_SIZE" in env else 1
        i = _env_int(env, "NODE_RANK") * per_node + local
        n = _env_int(env, "NUM_NODES") * per_node
        where = "NODE_RANK/NUM_NODES" + ("+LOCAL_RANK/LOCAL_WORLD_SIZE" if "LOCAL_RANK" in env else "")
    if not 0 <= i < n:
        raise UsageError(f"extract: shard {i} of {n} from {where} is out of range (need 0 <= i < n)")
    return i, n, where


def shard_suffix(i: int, n: int) -> str:
    """``".shard-i-of-n"`` for a shard of several, ``""`` for a whole run."""
    return f".shard-{i}-of-{n}" if n > 1 else ""


# ---- input ---------------------------------------------------------------------------------------------


@dataclass
class Input:
    """What to extract: ``items`` in the deterministic order, ``problems`` (where, reason) found while
    reading it (bad list lines), ``classes`` when labels came from class folders, ``pad_to`` labels per line."""

    items: list[Item]
    problems: list[tuple[str, str]] = field(default_factory=list)
    classes: list[str] | None = None
    pad_to: int = 0
    delimiter: str = " "


def _out_rel(path: str) -> str:
    """Output path of a listed media path: extension dropped, absolute paths anchored under ``out``."""
    drive, rest = os.path.splitdrive(os.path.normpath(path))
    return os.path.splitext(rest.lstrip(os.sep))[0].replace(os.sep, "/")


def read_input(
    source: str,
    *,
    root: str = "",
    delimiter: str = " ",
    extensions: Sequence[str] = VIDEO_EXTENSIONS,
    exclude: str | None = None,
    encoding: str = "utf-8",
) -> Input:
    """The items of an annotation list (read with ``encoding``) or of a folder of videos.

    A list keeps its order and labels; its bad lines become problems (the rest is extracted). A folder is
    searched recursively (hidden names and ``exclude`` skipped) for the ``extensions``, sorted by path;
    a video's label is the index of its top folder among the sorted top folders (``class/video.mp4``),
    or 0 for all when some video lies directly in the folder.
    """
    if os.path.isdir(source):
        return _read_folder(source, extensions, exclude, delimiter)
    errors: list[DataError] = []
    samples = read_list(source, delimiter=delimiter, errors=errors, encoding=encoding)
    items = [
        Item(k, resolve(root, s.path), _out_rel(s.path), s.labels, f"{source}:{s.line}") for k, s in enumerate(samples)
    ]
    problems = [(f"{e.list_file}:{e.line}", e.reason) for e in errors]
    return Input(items, problems, None, max(len(s.labels) for s in samples), delimiter)


def _read_folder(folder: str, extensions: Sequence[str], exclude: str | None, delimiter: str) -> Input:
    exts = {"." + e.lower().lstrip(".") for e in extensions}
    skip = os.path.realpath(exclude) if exclude else None
    found: list[str] = []
    for top, dirs, files in os.walk(folder):
        # our own outputs (``--out`` inside the input folder) and hidden folders are not inputs
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.realpath(os.path.join(top, d)) != skip)
        for name in files:
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in exts:
                found.append(os.path.relpath(os.path.join(top, name), folder).replace(os.sep, "/"))
    if not found:
        raise DataError(f"no videos ({', '.join(sorted(e[1:] for e in exts))}) in this folder or below", path=folder)
    found.sort()
    in_classes = all("/" in rel for rel in found)
    classes = sorted({rel.split("/", 1)[0] for rel in found}) if in_classes else None
    index = {c: k for k, c in enumerate(classes or [])}
    items = [
        Item(k, os.path.join(folder, rel), _out_rel(rel), (index[rel.split("/", 1)[0]] if classes else 0,), rel)
        for k, rel in enumerate(found)
    ]
    return Input(items, [], classes, 1, delimiter)


# ---- one video -----------------------------------------------------------------------------------------


def output_path(out: str, rel: str, kind: str) -> str:
    """Where ``rel``'s output of ``kind`` goes: a folder for frames, ``.mp4`` for a video."""
    return os.path.join(out, rel) if kind == "frames" else os.path.join(out, rel + ".mp4")


def marker_path(path: str, kind: str) -> str:
    """The marker that says ``path`` is complete: inside a frame folder, hidden beside a video."""
    if kind == "frames":
        return os.path.join(path, MARKER)
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}{MARKER}")


def read_marker(path: str, kind: str) -> dict[str, Any] | None:
    """The marker of a complete output, ``None`` if there is none, it cannot be read or a frame folder
    holds another number of frames than it records (then: redo)."""
    try:
        with open(marker_path(path, kind), encoding="utf-8") as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or not isinstance(marker.get("frames"), int):
        return None
    if kind == "video" and not os.path.isfile(path):
        return None
    if kind == "frames":
        try:  # a listing is cheap beside decoding: a frame deleted since is noticed
            present = sum(1 for name in os.listdir(path) if not name.startswith("."))
        except OSError:
            return None
        if present != marker["frames"]:
            return None
    return marker


def resample(times: Iterable[Fraction | None], fps: Fraction | None, rate: Fraction | None) -> Iterator[list[int]]:
    """For each frame (presentation time, seconds) the output slots it fills: output instant ``k / fps``
    (from the first frame) takes the last frame shown at or before it; the last frame lasts ``1 / rate``.

    Yields one list per frame, one step late (a frame's slots are known when the next frame arrives),
    then the last frame's. ``fps=None``: every frame fills the next slot. Frames without a time are
    placed ``1 / rate`` after the previous one; times that go backwards count as the previous time.
    """
    step = Fraction(1, 1) / rate if rate else Fraction(1, 25)
    k, t0, prev = 0, None, None
    for t in times:
        if fps is None:
            yield [k]
            k += 1
            continue
        t = (prev + step if prev is not None else Fraction(0)) if t is None else t
        if t0 is None:
            t0, prev = t, t
            continue
        t = max(t, prev)
        slots = []
        while t0 + k / fps < t:  # instants before this frame still show the previous one
            slots.append(k)
            k += 1
        yield slots
        prev = t
    if fps is not None and t0 is not None:
        end = prev + step
        slots = []
        while t0 + k / fps < end:
            slots.append(k)
            k += 1
        yield slots


def _scaled(w: int, h: int, short_side: int | None) -> tuple[int, int]:
    if short_side is None:
        return w, h
    if w <= h:
        return short_side, max(1, round(h * short_side / w))
    return max(1, round(w * short_side / h)), short_side


def _even(x: int) -> int:
    return max(2, 2 * round(x / 2))


@dataclass(frozen=True)
class Job:
    """One video's work for a worker process (plain data: it is pickled)."""

    index: int
    src: str
    outputs: dict[str, str]  # kind -> final output path, only the kinds still to do
    settings: Settings


@dataclass
class Result:
    index: int
    counts: dict[str, int] = field(default_factory=dict)
    error: str | None = None


def _one_line(err: BaseException) -> str:
    """The reason alone (failures.tsv has the path in its own column), on one line."""
    if isinstance(err, DataError):
        return " ".join(err.reason.split())
    # FFmpeg's and the OS's errors repeat the file name after their message: keep the message
    text = getattr(err, "strerror", None) or str(err)
    return f"{err.__class__.__name__}: {' '.join(str(text).split()) or '(no message)'}"


def _clean_leftovers(path: str) -> None:
    """Remove temporary outputs a killed run left for ``path`` (they are never complete)."""
    head, name = os.path.split(path)
    for stale in glob.glob(os.path.join(glob.escape(head), f".{glob.escape(name)}{_TMP}*")):
        shutil.rmtree(stale, ignore_errors=True) if os.path.isdir(stale) else os.remove(stale)


def _tmp_name(path: str, suffix: str = "") -> str:
    head, name = os.path.split(path)
    return os.path.join(head, f".{name}{_TMP}{os.getpid()}{suffix}")


def _write_json_atomic(path: str, obj: Any) -> None:
    _write_text_atomic(path, json.dumps(obj, indent=1) + "\n")


def _write_text_atomic(path: str, text: str) -> None:
    tmp = _tmp_name(path)
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


class _FrameWriter:
    """JPEGs into a hidden temporary folder, renamed to the final one when complete."""

    def __init__(self, final: str, settings: Settings, size: tuple[int, int], rotation: int) -> None:
        self.final, self.settings, self.size, self.rotation = final, settings, size, rotation
        self.tmp = _tmp_name(final)
        os.makedirs(self.tmp)
        self.count = 0

    def add(self, frame: Any, repeat: int, t: Fraction, t0: Fraction) -> None:
        from PIL import Image

        w, h = self.size
        rgb = frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA")
        image = Image.fromarray(_rot90(rgb, self.rotation) if self.rotation else rgb)
        first = None
        for _ in range(repeat):
            self.count += 1
            path = os.path.join(self.tmp, self.settings.frame_template.format(self.count))
            if first is None:
                image.save(path, format="JPEG", quality=self.settings.quality)
                first = path
            else:  # a frame shown at several output instants (--fps above the source's): same bytes
                shutil.copyfile(first, path)

    def finish(self, source: str) -> int:
        w, h = self.size if self.rotation % 2 == 0 else self.size[::-1]
        marker = {"frames": self.count, "width": w, "height": h, "rotation": 90 * self.rotation, "source": source}
        marker["settings"] = self.settings.of("frames")
        _write_json_atomic(os.path.join(self.tmp, MARKER), marker)  # last: the folder is complete
        if os.path.isdir(self.final):
            _remove_stale_folder(self.final, self.settings.frame_template)
        os.rename(self.tmp, self.final)
        return self.count

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


def _remove_stale_folder(path: str, template: str) -> None:
    """A frame folder to replace: ours (marked, other settings) is removed; an unmarked one only if it holds
    frames and markers alone, so a wrong ``--out`` never deletes anyone's files."""
    if os.path.exists(os.path.join(path, MARKER)):  # ours, made with other settings
        shutil.rmtree(path)
        return
    prefix, _, suffix = template.partition("{")
    suffix = suffix.partition("}")[2]
    names = os.listdir(path)
    foreign = [n for n in names if not (n.startswith(".") or (n.startswith(prefix) and n.endswith(suffix)))]
    if foreign or any(os.path.isdir(os.path.join(path, n)) for n in names):
        raise DataError(f"{path} exists, has no {MARKER} marker and holds other files: not overwritten")
    shutil.rmtree(path)


class _VideoWriter:
    """A short-GOP MP4 into a hidden temporary file, renamed when complete, then marked."""

    def __init__(self, final: str, settings: Settings, size: tuple[int, int], rotation: int, in_stream: Any) -> None:
        import av

        self.final, self.settings, self.rotation = final, settings, rotation
        self.codec = resolve_codec(settings.codec)
        w, h = _even(size[0]), _even(size[1])
        self.size = (w, h)  # before rotation, as decoded
        self.tmp = _tmp_name(final, ".mp4")
        rate = settings.fps or in_stream.average_rate or in_stream.guessed_rate or Fraction(25)
        if settings.fps is not None:
            self.time_base = Fraction(1, 1) / settings.fps
        else:  # keep the source's timing (VFR stays VFR) in a time base every encoder accepts
            tb = in_stream.time_base
            self.time_base = tb if tb and tb.denominator <= _MAX_TB else Fraction(1, 60000)
        self.container = av.open(self.tmp, mode="w", format="mp4", options={"movflags": "faststart"})
        try:
            self.stream = self.container.add_stream(self.codec, rate=rate)
            self.stream.width, self.stream.height = (w, h) if rotation % 2 == 0 else (h, w)
            self.stream.pix_fmt = "yuv420p"
            self.stream.codec_context.time_base = self.time_base
            self.stream.codec_context.gop_size = settings.gop
            self.stream.codec_context.thread_count = 1  # one core per worker: --workers is the parallelism
            if self.codec == "libx264":
                self.stream.options = {
                    "crf": str(settings.crf),
                    "preset": "veryfast",
                    # a keyframe exactly every gop frames, none elsewhere: seeking cost is bounded
                    "x264-params": f"keyint={settings.gop}:min-keyint={settings.gop}:scenecut=0",
                }
            else:
                # no keyframes at scene cuts: exactly one every gop frames, as with x264
                self.stream.options = {"qmin": str(_MPEG4_Q), "qmax": str(_MPEG4_Q), "sc_threshold": "1000000000"}
        except Exception:
            self.abort()
            raise
        self.count, self.last_pts = 0, -1

    def add(self, frame: Any, repeat: int, t: Fraction, t0: Fraction) -> None:
        import av

        w, h = self.size
        if self.rotation:
            arr = _rot90(frame.to_ndarray(width=w, height=h, format="rgb24", interpolation="AREA"), self.rotation)
            out = av.VideoFrame.from_ndarray(arr, format="rgb24")
        else:
            out = frame.reformat(width=w, height=h, format="yuv420p", interpolation="AREA")
        for _ in range(repeat):
            if self.settings.fps is not None:
                pts = self.count
            else:
                pts = max(round((t - t0) / self.time_base), self.last_pts + 1)  # encoders need increasing pts
            out.pts, out.time_base = pts, self.time_base
            self.last_pts = pts
            for packet in self.stream.encode(out):
                self.container.mux(packet)
            self.count += 1

    def finish(self, source: str) -> int:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.final)
        w, h = self.size if self.rotation % 2 == 0 else self.size[::-1]
        marker = {"frames": self.count, "width": w, "height": h, "rotation": 90 * self.rotation, "source": source}
        marker["settings"] = self.settings.of("video")
        _write_json_atomic(marker_path(self.final, "video"), marker)  # after the rename: marked means complete
        return self.count

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # closing a half-written file may fail too; the file is removed either way
            pass
        if os.path.exists(self.tmp):
            os.remove(self.tmp)


def _quarter_turns(frame: Any, stream: Any) -> int:
    """Counter-clockwise quarter turns that show ``frame`` upright: its display matrix (PyAV >= 13), else
    the stream's ``rotate`` tag (older FFmpeg, clockwise degrees); the decoder's convention too."""
    degrees = getattr(frame, "rotation", 0) or 0
    if not degrees:
        try:
            degrees = -int(float(stream.metadata.get("rotate") or 0))
        except ValueError:  # a malformed tag: the matrix is the reference, and there is none
            degrees = 0
    return round(degrees / 90) % 4


def _rot90(arr: Any, quarter_turns: int) -> Any:
    import numpy as np

    return np.ascontiguousarray(np.rot90(arr, quarter_turns))


def run_job(job: Job) -> Result:
    """Extract one video (in a worker process); any failure becomes the result's one-line ``error``."""
    writers: list[Any] = []
    try:
        return Result(job.index, _extract(job, writers))
    except Exception as err:  # a bad video never stops the run: its reason goes to failures.tsv
        for w in writers:
            w.abort()
        return Result(job.index, {}, _one_line(err))


def _extract(job: Job, writers: list[Any]) -> dict[str, int]:
    import av

    if not os.path.isfile(job.src):
        raise DataError("file not found" if not os.path.exists(job.src) else "not a file", path=job.src)
    for kind, path in job.outputs.items():
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        _clean_leftovers(path)
        if kind == "video":  # a marker being written when the run was killed
            _clean_leftovers(marker_path(path, kind))
    try:
        container = av.open(job.src)
    except (av.error.FFmpegError, UnicodeDecodeError) as e:
        raise DataError(f"not a readable video ({_one_line(e)})", path=job.src) from None
    try:
        if not container.streams.video:
            raise DataError("contains no video stream", path=job.src)
        stream = container.streams.video[0]
        stream.thread_count = 1
        rate = stream.average_rate or stream.guessed_rate
        decoded: list[Any] = []  # the frame whose output slots are not known yet (one behind)
        times: list[Fraction | None] = []

        def frames() -> Iterator[Fraction | None]:
            for frame in container.decode(stream):
                decoded.append(frame)
                tb = frame.time_base or stream.time_base
                times.append(None if frame.pts is None or not tb else frame.pts * Fraction(tb))
                yield times[-1]

        s = job.settings
        n_in = 0
        t0: Fraction | None = None
        try:
            for slots in resample(frames(), s.fps, rate):
                frame = decoded.pop(0)
                t = times.pop(0)
                if not writers:  # sizes from the first frame: create the outputs
                    rotation = _quarter_turns(frame, stream)
                    size = _scaled(frame.width, frame.height, s.short_side)
                    for kind, path in job.outputs.items():
                        writers.append(
                            _FrameWriter(path, s, size, rotation)
                            if kind == "frames"
                            else _VideoWriter(path, s, size, rotation, stream)
                        )
                t = t if t is not None else n_in / Fraction(rate or 25)
                t0 = t if t0 is None else t0
                n_in += 1
                if slots:
                    for w in writers:
                        w.add(frame, len(slots), t, t0)
        except av.error.FFmpegError as e:
            raise DataError(f"decoding failed after {n_in} frames ({_one_line(e)})", path=job.src) from None
        if not writers or not any(w.count for w in writers):
            raise DataError("no frames decoded", path=job.src)
        return {kind: w.finish(job.src) for kind, w in zip(job.outputs, writers)}
    finally:
        container.close()


# ---- the run -------------------------------------------------------------------------------------------


@dataclass
class Report:
    """What a run (or a merge) did: ``lists`` written per kind, ``failures`` as (where, reason)."""

    total: int = 0  # items of this shard
    skipped: int = 0  # complete outputs found, not redone
    extracted: int = 0  # items extracted now
    frames: int = 0  # frames written now (per kind, summed)
    seconds: float = 0.0
    failures: list[tuple[str, str]] = field(default_factory=list)
    lists: dict[str, str] = field(default_factory=dict)
    lines: dict[str, int] = field(default_factory=dict)
    failures_file: str | None = None
    shard: tuple[int, int] = (0, 1)

    def summary(self) -> list[str]:
        """One line per list written."""
        return [f"wrote {path} ({self.lines[kind]} lines)" for kind, path in self.lists.items()]

    def failure_lines(self, first: int = 5) -> list[str]:
        """The failures: their count and file, then the first ``first`` (none when nothing failed)."""
        if not self.failures:
            return []
        head = f"{len(self.failures)} failed (all in {self.failures_file}); first:"
        return [head] + [f"  {where}: {why}" for where, why in self.failures[:first]]


def _fingerprint(inp: Input, settings: Settings) -> str:
    """Identifies the input and settings: shards of different runs are never merged."""
    h = hashlib.sha1()
    for it in inp.items:  # not the source paths: machines may mount the videos at different places
        h.update(f"{it.rel}\t{it.labels}\n".encode())
    h.update(json.dumps({k: settings.of(k) for k in settings.formats}, sort_keys=True).encode())
    h.update(repr((inp.delimiter, inp.pad_to, len(inp.problems))).encode())
    return h.hexdigest()


def _bad_path(it: Item, delimiter: str) -> str | None:
    if it.rel in ("", ".") or it.rel.startswith("../") or it.rel == "..":
        return f"output path {it.rel!r} would lie outside --out"
    try:  # the list written must read back (a path holding the delimiter is quoted where the format allows)
        back = parse_line(format_line(it.rel, it.labels, num_frames=1, delimiter=delimiter), delimiter=delimiter).path
    except DataError:
        back = None
    if back != it.rel:
        return f"path {it.rel!r} cannot be written in a list with delimiter {delimiter!r} (use another --delimiter)"
    return None


def extract(
    inp: Input,
    out: str,
    settings: Settings,
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    progress: bool = True,
    log: Any = None,
) -> Report:
    """Extract shard ``shard = (i, n)`` of ``inp`` into ``out`` with ``workers`` processes; write its lists
    (``frames.txt`` / ``videos.txt``, or ``*.shard-i-of-n.txt`` and ``shard-i-of-n.json``) and failures."""
    from tqdm import tqdm

    log = log or (lambda text: print(text, file=sys.stderr))
    start = time.perf_counter()
    i, n = shard
    os.makedirs(out, exist_ok=True)
    if "video" in settings.formats:
        resolve_codec(settings.codec)  # a missing encoder: one line now, not one failure per video
    problems: dict[int, str] = {}
    owner: dict[str, Item] = {}
    for it in inp.items:  # over the whole input, so every shard agrees on which item owns an output
        why = _bad_path(it, inp.delimiter)
        if why is None and it.rel in owner:
            why = f"same output {it.rel!r} as {owner[it.rel].where}"
        if why is None and "video" in settings.formats:
            if os.path.realpath(output_path(out, it.rel, "video")) == os.path.realpath(it.src):
                why = "the re-encode would overwrite its source: choose another --out"
        if why:
            problems[it.index] = why
        else:
            owner[it.rel] = it
    mine = inp.items[i::n]
    report = Report(total=len(mine), shard=shard)
    counts: dict[int, dict[str, int]] = {}
    jobs: list[Job] = []
    for it in mine:
        if it.index in problems:
            continue
        todo: dict[str, str] = {}
        counts[it.index] = {}
        for kind in settings.formats:
            path = output_path(out, it.rel, kind)
            marker = read_marker(path, kind)
            if marker is not None and marker.get("settings") == settings.of(kind):
                counts[it.index][kind] = marker["frames"]
            else:
                todo[kind] = path
        if todo:
            jobs.append(Job(it.index, it.src, todo, settings))
        else:
            report.skipped += 1
    where = f"shard {i}/{n}: " if n > 1 else ""
    log(
        f"{where}{len(mine)} videos, {report.skipped} already extracted (skipped), {len(jobs)} to extract"
        + (f" with {min(workers, len(jobs))} worker{'s' if min(workers, len(jobs)) > 1 else ''}" if jobs else "")
    )
    errors: dict[int, str] = {}
    with tqdm(total=len(jobs), unit="video", disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
        for res in _run_all(jobs, workers):
            if res.error is not None:
                errors[res.index] = res.error
            else:
                counts[res.index].update(res.counts)
                report.extracted += 1
                report.frames += sum(res.counts.values())
            bar.update(1)
            bar.set_postfix(frames=report.frames, failed=len(errors), refresh=False)
    entries: dict[str, list[tuple[int, str]]] = {k: [] for k in settings.formats}
    fails: list[tuple[int, str, str]] = [(-1, w, why) for w, why in inp.problems] if i == 0 else []
    for it in mine:
        if it.index in problems or it.index in errors:
            fails.append((it.index, it.src, problems.get(it.index) or errors[it.index]))
        for kind, frames in counts.get(it.index, {}).items():
            if it.index not in errors:
                path = it.rel if kind == "frames" else it.rel + ".mp4"
                entries[kind].append(
                    (
                        it.index,
                        format_line(path, it.labels, num_frames=frames, delimiter=inp.delimiter, pad_to=inp.pad_to),
                    )
                )
    report.failures = [(w, why) for _, w, why in fails]
    suffix = shard_suffix(i, n)
    for kind, rows in entries.items():
        report.lists[kind] = os.path.join(out, LIST_NAMES[kind] + suffix + ".txt")
        report.lines[kind] = len(rows)
        _write_text_atomic(report.lists[kind], "".join(line + "\n" for _, line in rows))
    report.failures_file = _write_failures(os.path.join(out, f"failures{suffix}.tsv"), report.failures)
    if inp.classes is not None:
        _write_text_atomic(os.path.join(out, "classes.txt"), "".join(c + "\n" for c in inp.classes))
    if n > 1:
        manifest = {
            "shard": i,
            "num_shards": n,
            "items": len(inp.items),
            "fingerprint": _fingerprint(inp, settings),
            "formats": list(settings.formats),
            "entries": entries,
            "failures": fails,
        }
        _write_json_atomic(os.path.join(out, f"shard-{i}-of-{n}.json"), manifest)  # last: the shard is complete
    report.seconds = time.perf_counter() - start
    return report


def _write_failures(path: str, failures: Sequence[tuple[str, str]]) -> str | None:
    """``path\\treason`` rows, or no file at all (an earlier run's file is removed: nothing failed now)."""
    if not failures:
        if os.path.exists(path):
            os.remove(path)
        return None
    _write_text_atomic(path, "path\treason\n" + "".join(f"{w}\t{why}\n" for w, why in failures))
    return path


def _run_all(jobs: Sequence[Job], workers: int) -> Iterator[Result]:
    """Results in completion order: in this process for one worker, else a pool of spawned processes
    (spawned, not forked: the parent may hold torch's or FFmpeg's threads)."""
    if workers <= 1 or len(jobs) <= 1:
        for job in jobs:
            yield run_job(job)
        return
    pool = ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=get_context("spawn"))
    try:
        futures = {pool.submit(run_job, job): job for job in jobs}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except BrokenProcessPool:  # a worker died (FFmpeg crashed, out of memory): its video and the queue
                yield Result(futures[fut].index, {}, "worker process died while extracting (re-run to retry)")
    finally:  # Ctrl-C: drop the queue instead of extracting it all before exiting
        pool.shutdown(wait=True, cancel_futures=True)


# ---- merging shards ------------------------------------------------------------------------------------


def merge(out: str) -> Report:
    """Join the shards' lists in ``out`` into ``frames.txt`` / ``videos.txt`` (input order) and
    ``failures.tsv``; refuses, naming it, while a shard is missing or came from another input."""
    if not os.path.isdir(out):
        raise DataError("folder not found", path=out)
    found: dict[int, dict[int, str]] = {}
    for path in glob.glob(os.path.join(glob.escape(out), "shard-*-of-*.json")):
        name = os.path.basename(path)[len("shard-") : -len(".json")]
        head, _, tail = name.partition("-of-")
        if head.isdigit() and tail.isdigit():
            found.setdefault(int(tail), {})[int(head)] = path
    if not found:
        raise DataError("no shard manifests (shard-I-of-N.json): nothing to merge", path=out)
    if len(found) > 1:
        raise DataError(
            f"shards of different runs (n = {', '.join(map(str, sorted(found)))}): remove the stale ones", path=out
        )
    ((n, shards),) = found.items()
    missing = [k for k in range(n) if k not in shards]
    if missing:
        raise DataError(
            f"shard {missing[0]} of {n} missing (shard-{missing[0]}-of-{n}.json): run it with --shard {missing[0]}/{n}"
            + (f" ({len(missing)} missing in all)" if len(missing) > 1 else ""),
            path=out,
        )
    manifests = []
    for k in range(n):
        try:
            with open(shards[k], encoding="utf-8") as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError(f"unreadable shard manifest ({_one_line(e)})", path=shards[k]) from None
        if not isinstance(manifest, dict) or not {"entries", "failures", "formats"} <= manifest.keys():
            raise DataError("not a shard manifest of adafocus data extract", path=shards[k])
        manifests.append(manifest)
    ref = manifests[0]
    for k, m in enumerate(manifests):
        if m.get("fingerprint") != ref.get("fingerprint") or m.get("num_shards") != n or m.get("shard") != k:
            raise DataError(
                f"shard {k} was made from another input or other settings than shard 0: re-run it", path=shards[k]
            )
    report = Report(total=ref.get("items", 0), shard=(0, 1))
    for kind in ref["formats"]:
        rows = sorted((idx, line) for m in manifests for idx, line in m["entries"].get(kind, []))
        report.lists[kind] = os.path.join(out, LIST_NAMES[kind] + ".txt")
        report.lines[kind] = len(rows)
        _write_text_atomic(report.lists[kind], "".join(line + "\n" for _, line in rows))
    fails = sorted((tuple(f) for m in manifests for f in m["failures"]), key=lambda f: f[0])
    report.failures = [(w, why) for _, w, why in fails]
    report.failures_file = _write_failures(os.path.join(out, "failures.tsv"), report.failures)
    return report
