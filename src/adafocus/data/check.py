"""``adafocus data check``: validate an annotation list without training anything.

Every problem is reported with its list line: malformed lines, labels out of range, missing or
empty files, unreadable or truncated media, frame counts that disagree with the list, videos
shorter than T. What is decoded: every frame of a frame folder (training draws random frames per
segment, so a missing or corrupt JPEG anywhere is met sooner or later; the first one is reported
by number); of a video, the frames an evaluation clip uses and the last one, after the demux pass
that indexes every packet, or with ``deep=True`` every frame (slower: a full decode).

Two reproduction pitfalls are flagged too, each problem tagged with a kind for the summary:

* ``frame-count``: the list's ``num_frames`` disagrees with the frames found (a folder's files, a
  video's demuxed frames) by more than ``count_tolerance`` (default 0: any difference). When most
  flagged lines share one ratio (lists made at 30 fps against frames extracted at 1 fps: 30x), the
  summary names it.
* ``fps`` (videos) / ``duration`` (frame folders with a known duration, ``durations``): a frame
  rate further than ``fps_tolerance`` from ``expected_fps``. Nothing is rate-checked unless
  ``expected_fps`` is given; ``expected_fps="auto"`` takes the median rate of the checked samples
  and flags the outliers (for sets of one nominal rate; Kinetics mixes 24-30 fps).

The remaining kinds: ``list-line`` (malformed line, label out of range, not in the list's
``encoding``), ``media`` (missing, symlink loop, empty, unreadable, truncated, not a video: a still
image under a video name) and ``short`` (fewer than T frames).
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from .annotations import read_list, resolve
from .errors import DataError
from .sampling import tsn_indices
from .sources import Clip, make_source

FRAMES_PER_READ = 64  # a frame folder's JPEGs decode independently: small reads keep memory low
VIDEO_READ_BYTES = 256 * 2**20  # RGB bytes per read of a video: each read may seek back to a keyframe

KINDS = ("list-line", "media", "frame-count", "fps", "duration", "short")


@dataclass
class CheckReport:
    """The problems of one list: ``errors`` make a line unusable, ``warnings`` do not; ``kind``
    tells which check raised a problem and ``notes`` say what could not be checked."""

    list_file: str
    num_samples: int = 0
    errors: list[DataError] = field(default_factory=list)
    warnings: list[DataError] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    hint: str = ""  # the likely cause behind many frame-count flags
    _kinds: dict[int, str] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def add(self, kind: str, problem: DataError, *, error: bool = False) -> None:
        """Record ``problem`` as an error (the line is unusable) or a warning, tagged ``kind``."""
        (self.errors if error else self.warnings).append(problem)
        self._kinds[id(problem)] = kind

    def kind(self, problem: DataError) -> str:
        """The check that raised ``problem`` (lines ``read_list`` rejected are ``list-line``)."""
        return self._kinds.get(id(problem), "list-line")

    def counts(self) -> Counter[str]:
        """Problems per kind."""
        return Counter(self.kind(p) for p in self.errors + self.warnings)

    def flagged_lines(self) -> list[int]:
        """The list lines with at least one problem, in order."""
        return sorted({p.line for p in self.errors + self.warnings if p.line is not None})

    def summary(self, first: int = 5) -> str | None:
        """One line: how many lines were flagged, per kind, and the first few; ``None`` when clean."""
        flagged = self.flagged_lines()
        if not flagged:
            return None
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.counts().items(), key=lambda kv: KINDS.index(kv[0])))
        shown = ", ".join(map(str, flagged[:first])) + (", ..." if len(flagged) > first else "")
        text = f"{self.list_file}: {len(flagged)} of {self.num_samples} lines flagged ({kinds}); first lines: {shown}"
        return text + (f"; {self.hint}" if self.hint else "")

    def lines(self) -> list[str]:
        out = [f"error: {e}" for e in sorted(self.errors, key=_order)]
        out += [f"warning: {w}" for w in sorted(self.warnings, key=_order)]
        out += [f"note: {n}" for n in self.notes]
        out.append(
            f"{self.list_file}: {self.num_samples} samples, {len(self.errors)} errors, {len(self.warnings)} warnings"
        )
        summary = self.summary()
        return out + ([summary] if summary else [])


def _order(e: DataError) -> int:
    return e.line or 0


def parse_count_tolerance(value: int | float | str) -> tuple[float, bool]:
    """``2`` (frames) or ``"5%"`` (of the frames found) -> ``(amount, is_percent)``."""
    text = str(value).strip()
    percent = text.endswith("%")
    try:
        amount = float(text.rstrip("%"))
    except ValueError:
        amount = -1.0
    if amount < 0:
        raise ValueError(f"count_tolerance={value!r}: expected frames (e.g. 2) or a percentage (e.g. 5%)")
    return amount, percent


def read_durations(path: str) -> dict[str, float]:
    """Seconds per video from ``path``: an ActivityNet JSON (``{"database": {id: {"duration": s}}}``),
    a JSON object ``{name: seconds}``, or text lines ``name seconds`` (space, tab or comma)."""
    if not os.path.isfile(path):
        raise DataError("durations file not found", path=path)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if path.endswith(".json"):
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"not JSON ({e})", path=path) from None
        db = obj.get("database", obj) if isinstance(obj, dict) else None
        if not isinstance(db, dict):
            raise DataError("expected a JSON object {name: seconds} or an ActivityNet 'database'", path=path)
        out = {}
        for key, v in db.items():
            seconds = v.get("duration") if isinstance(v, dict) else v
            if not isinstance(seconds, (int, float)) or seconds <= 0:
                raise DataError(f"video {key!r}: duration {seconds!r} is not a positive number", path=path)
            out[str(key)] = float(seconds)
        return out
    out = {}
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, seconds = line.strip().replace("\t", " ").replace(",", " ").rpartition(" ")
        try:
            value = float(seconds)
        except ValueError:
            value = -1.0
        if not name.strip() or value <= 0:
            raise DataError(f"expected 'name seconds' with a positive number: {line.strip()!r}", list_file=path, line=n)
        out[name.strip()] = value
    return out


def duration_of(durations: Mapping[str, float], path: str) -> float | None:
    """The duration listed for a list entry's ``path``: by the path, its base name, the base name
    without extension, or without ActivityNet's ``v_`` prefix (``v_<id>`` folders, ``<id>`` keys)."""
    p = path.rstrip("/\\")
    base = os.path.basename(p)
    stem = os.path.splitext(base)[0]
    for key in (path, p, base, stem, stem.removeprefix("v_")):
        if key in durations:
            return durations[key]
    return None


def _ratio_hint(ratios: list[float]) -> str:
    """The likely cause when most frame-count flags share one list/found ratio far from 1."""
    if len(ratios) < 2:
        return ""
    mid = statistics.median(ratios)
    alike = sum(abs(r / mid - 1) <= 0.2 for r in ratios)
    if not (mid > 1.5 or mid < 1 / 1.5) or alike < 0.8 * len(ratios):
        return ""
    return (
        f"on {alike} of {len(ratios)} frame-count flags the list's count is {mid:.3g}x the frames found: "
        "frames extracted at another rate than the list was made for? (re-extract, or rewrite the list "
        "with `adafocus data convert ... --root`)"
    )


def decode_every_frame(clip: Clip, *, max_bytes: int | None = None) -> None:
    """Decode frames ``0 .. num_frames - 1`` of ``clip`` in order, ``FRAMES_PER_READ`` at a time (with
    ``max_bytes``: as many as fit in that many RGB bytes, for videos); the first frame that does not
    decode, or whose size differs from frame 1's, is one :class:`DataError` naming it (1-based)."""
    n, step, first = clip.num_frames, FRAMES_PER_READ, None
    start = 0
    while start < n:
        idx = list(range(start, min(n, start + step)))
        try:
            frames = clip.read(idx)
        except (DataError, OSError, RuntimeError, ValueError) as e:
            raise _first_bad_frame(clip, idx, e) from None
        if first is None:
            first = tuple(frames.shape[1:])
            if max_bytes:
                step = max(step, max_bytes // max(1, frames[0].numel()))
        elif tuple(frames.shape[1:]) != first:
            size = "x".join(map(str, frames.shape[-1:-3:-1]))
            raise DataError(f"frame {start + 1} is {size}, frame 1 is {first[2]}x{first[1]}", path=_path(clip))
        start = idx[-1] + 1


def _path(clip: Clip) -> str | None:
    return getattr(clip, "path", None)


def _first_bad_frame(clip: Clip, idx: list[int], error: BaseException) -> DataError:
    """The error of the first frame of ``idx`` that does not decode: the shortest failing prefix,
    found by bisection (a read names no frame when the decoder just fails)."""
    lo, hi = 1, len(idx)  # reading idx[:hi] fails
    while lo < hi:
        mid = (lo + hi) // 2
        try:
            clip.read(idx[:mid])
            lo = mid + 1
        except (DataError, OSError, RuntimeError, ValueError) as e:
            hi, error = mid, e
    frame = idx[hi - 1] + 1
    reason = error.reason if isinstance(error, DataError) else f"{error.__class__.__name__}: {error}"
    path = error.path if isinstance(error, DataError) and error.path else _path(clip)
    if not reason.startswith(f"frame {frame} "):
        reason = f"frame {frame} of {clip.num_frames}: {reason}"
    return DataError(reason, path=path)


def check_list(
    list_file: str,
    *,
    root: str = "",
    source: str = "video",
    frame_template: str = "img_{:05d}.jpg",
    delimiter: str = " ",
    num_classes: int | None = None,
    num_frames: int = 16,
    decode: bool = True,
    count_tolerance: int | float | str = 0,
    expected_fps: float | str | None = None,
    fps_tolerance: float = 0.25,
    durations: str | Mapping[str, float] | None = None,
    encoding: str = "utf-8",
    deep: bool = False,
    progress: bool = False,
) -> CheckReport:
    """Check every line of ``list_file``; ``decode=False`` only opens the media (faster).

    Args:
        count_tolerance: frames (``2``) or a percentage of the frames found (``"5%"``) by which the
            list's ``num_frames`` may differ before it is flagged; a frame list claiming more frames
            than its folder holds is always an error (reading them fails).
        expected_fps: the set's frame rate: flag videos (and frame folders with a duration) further
            than ``fps_tolerance`` from it; ``"auto"``: the median of the checked samples; ``None``:
            no rate check.
        fps_tolerance: relative: a rate ``r`` is flagged when ``max(r / e, e / r) > 1 + fps_tolerance``.
        durations: seconds per video (a file, see :func:`read_durations`, or a mapping) for frame
            folders, whose rate is their frame count over the duration.
        deep: decode every frame of videos too (frame folders always are, unless ``decode=False``).
        progress: a progress bar on stderr, one step per sample.
        encoding: the list's text encoding (UTF-8, BOM dropped, by default); a line that does not
            decode is a ``list-line`` error and the other lines are still checked.
    """
    tol, percent = parse_count_tolerance(count_tolerance)
    auto = isinstance(expected_fps, str) and expected_fps.strip().lower() == "auto"
    if expected_fps is not None and not auto:
        try:
            rate = float(expected_fps)
        except ValueError:
            rate = -1.0
        if rate <= 0:
            raise ValueError(f"expected_fps={expected_fps!r}: expected a positive number or 'auto'")
        expected_fps = rate
    if fps_tolerance < 0:
        raise ValueError(f"fps_tolerance={fps_tolerance!r} must be >= 0")
    report = CheckReport(list_file)
    try:
        samples = read_list(
            list_file, delimiter=delimiter, num_classes=num_classes, errors=report.errors, encoding=encoding
        )
        seconds = read_durations(durations) if isinstance(durations, str) else dict(durations or {})
    except DataError as e:
        if e not in report.errors:
            report.errors.append(e)
        return report
    report.num_samples = len(samples)
    src = make_source(source, frame_template=frame_template)
    ratios: list[float] = []  # list / found, per frame-count flag
    rates: list[tuple[str, DataError, float]] = []  # (kind, where + what, rate) for the rate check below
    undated = 0
    from tqdm import tqdm

    bar = tqdm(samples, desc=f"checking {os.path.basename(list_file)}", unit="sample", file=sys.stderr,
               disable=not progress, leave=False, dynamic_ncols=True)  # fmt: skip
    for s in bar:
        path = resolve(root, s.path)
        where = dict(list_file=list_file, line=s.line)
        try:
            # frame folders: count the files, so a list that claims more frames than exist is caught
            clip = src.open(path, None)
            try:
                n = clip.num_frames
                if s.num_frames and s.num_frames != n:
                    msg = f"list says {s.num_frames} frames, found {n}"
                    if source == "frames" and s.num_frames > n:
                        ratios.append(s.num_frames / n)
                        report.add("frame-count", DataError(msg, path=path, **where), error=True)
                        continue
                    allowed = tol * n / 100 if percent else tol
                    if abs(s.num_frames - n) > allowed:
                        ratios.append(s.num_frames / n)
                        extra = f" (beyond the tolerance of {count_tolerance})" if tol else ""
                        report.add("frame-count", DataError(msg + extra, path=path, **where))
                if n < num_frames:
                    report.add(
                        "short",
                        DataError(
                            f"only {n} frames, fewer than T={num_frames} (frames will repeat)", path=path, **where
                        ),
                    )
                if expected_fps is not None:
                    fps = getattr(clip, "fps", None) if source == "video" else None
                    if fps:
                        rates.append(("fps", DataError(f"{fps:.3g} fps", path=path, **where), fps))
                    elif source == "frames":
                        d = duration_of(seconds, s.path)
                        if d is None:
                            undated += 1
                        else:
                            what = f"{n} frames over {d:g} s = {n / d:.3g} fps"
                            rates.append(("duration", DataError(what, path=path, **where), n / d))
                if decode and (source == "frames" or deep):
                    decode_every_frame(clip, max_bytes=None if source == "frames" else VIDEO_READ_BYTES)
                elif decode:
                    clip.read(sorted(set(tsn_indices(n, num_frames, train=False)) | {n - 1}))
            finally:
                clip.close()
        except DataError as e:
            report.add("media", e.located(**where), error=True)
        except (OSError, RuntimeError, ValueError) as e:
            report.add("media", DataError(f"{e.__class__.__name__}: {e}", path=path, **where), error=True)
    report.hint = _ratio_hint(ratios)
    if rates:
        ref = statistics.median(r for _, _, r in rates) if auto else float(expected_fps)
        expected = f"the median {ref:.3g} fps of the checked samples" if auto else f"the expected {ref:g} fps"
        for kind, e, rate in rates:
            if max(rate / ref, ref / rate) > 1 + fps_tolerance:
                why = f"{e.reason}, far from {expected} (tolerance {fps_tolerance:.0%})"
                report.add(kind, DataError(why, path=e.path, list_file=e.list_file, line=e.line))
    if undated:
        why = "no durations given (--durations)" if not seconds else "no duration listed in the durations"
        report.notes.append(f"{list_file}: {undated} frame folders not rate-checked: {why}")
    return report
