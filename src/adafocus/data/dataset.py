"""``VideoDataset``: a map-style dataset of annotated videos (so Lightning's DistributedSampler
and resume work), with the bad-data policy ``on_error="raise" | "skip"`` and ``max_bad_fraction``."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Callable
from typing import Literal

import torch
from torch.utils.data import Dataset

from .annotations import Sample, read_list, resolve
from .errors import DataError
from .sampling import SAMPLINGS, SHORT_VIDEOS, Sampling, ShortVideos, clip_indices, clip_test_indices
from .sources import Clip, Rotation, Source, make_source
from .transforms import apply_clip_transform

log = logging.getLogger(__name__)
OnError = Literal["raise", "skip"]


class TooManyBadSamples(DataError):
    """Skip mode gave up on a list: too large a share of its samples is unreadable (or all of them)."""


class _BadLines:
    """The distinct bad lines of one list met so far by every process writing into ``skip_log_dir``
    (DataLoader workers each see only their share of the samples); each file is read incrementally."""

    def __init__(self, list_file: str, skip_log_dir: str | None) -> None:
        self.list_file, self.skip_log_dir = list_file, skip_log_dir
        self.lines: set[int] = set()
        self._consumed: dict[str, int] = {}  # record file -> bytes already read

    def count(self) -> int:
        """Distinct bad lines, including those other processes recorded."""
        if self.skip_log_dir and os.path.isdir(self.skip_log_dir):
            for name in os.listdir(self.skip_log_dir):
                path = os.path.join(self.skip_log_dir, name)
                try:
                    size = os.path.getsize(path)
                except OSError:  # removed meanwhile
                    continue
                start = self._consumed.get(name, 0)
                start = 0 if size < start else start  # the folder was cleaned up and the file written anew
                if size == start:
                    continue
                with open(path, "rb") as f:
                    f.seek(start)
                    chunk = f.read()
                end = chunk.rfind(b"\n") + 1  # a record still being written is read next time
                self._consumed[name] = start + end
                for row in chunk[:end].decode("utf-8", "replace").splitlines():
                    cols = row.split("\t")
                    if len(cols) > 1 and cols[0] == self.list_file and cols[1].isdigit():
                        self.lines.add(int(cols[1]))
        return len(self.lines)


def read_views(
    clip: Clip,
    num_segments: int,
    num_clips: int,
    transform: Callable | None,
    *,
    short_videos: ShortVideos = "spread",
    glance_segments: int | None = None,
    sampling: Sampling = "index",
) -> tuple[torch.Tensor, list[list[int]]] | tuple[torch.Tensor, list[list[int]], torch.Tensor]:
    """The evaluation views of one opened video: ``num_clips`` clips (:func:`tsn_test_indices`) x the
    crops ``transform`` makes, as ``(V, T, 3, H, W)`` with ``V = num_clips * crops``, clip-major (view
    ``j * crops + c`` is clip ``j``, crop ``c``; view 0 is the single-view evaluation clip); also the
    clips' frame indices.

    The union of the clips' frames is decoded once and transformed once (the evaluation transforms
    work frame by frame and crop at fixed places), then gathered per clip: V views cost one decode.
    ``transform`` returns ``(T, ...)`` for one crop or ``(C, T, ...)`` for C crops (``None``: raw uint8).
    ``short_videos``: see :func:`~adafocus.data.sampling.tsn_indices`. With ``glance_segments`` (f_G's
    own frames, sampled apart) a third value holds each view's glance frames ``(V, T_G, 3, H, W)``:
    clip j of their own sampling, cropped as the view's clip. ``sampling="time"``: segments in time
    (:func:`~adafocus.data.sampling.clip_test_indices`).
    """
    clips = clip_test_indices(clip, num_segments, num_clips, sampling=sampling, short_videos=short_videos)
    glances = [] if glance_segments is None else clip_test_indices(
        clip, glance_segments, num_clips, sampling=sampling, short_videos=short_videos
    )  # fmt: skip
    union = sorted({i for c in clips + glances for i in c})
    frames = clip.read(union)
    if transform is not None:
        frames = apply_clip_transform(transform, frames)
    where = {i: p for p, i in enumerate(union)}

    def views(sets: list[list[int]]) -> torch.Tensor:
        gather = torch.tensor([[where[i] for i in c] for c in sets])  # (N, T) positions in the union
        if frames.dim() == 4:  # one crop: (U, 3, H, W) -> (N, T, 3, H, W)
            return frames[gather]
        return frames[:, gather].transpose(0, 1).flatten(0, 1)  # (C, U, ...) -> (N * C, T, ...)

    if glance_segments is None:
        return views(clips), clips
    return views(clips), clips, views(glances)


class VideoDataset(Dataset):
    """The videos of one annotation list, as ``{"frames", "label", "index"[, "target"]}`` dicts.

    Args:
        list_file: annotation list (see :mod:`adafocus.data.annotations`).
        root: prefix for relative paths in the list.
        source: ``"video"`` (PyAV), ``"frames"`` (JPEG folders) or a :class:`Source` object.
        frame_template: frame file names in a folder, formatted with the 1-based frame number.
        delimiter: field separator of the list.
        num_frames: T, frames sampled per clip (TSN segments).
        train: random frame per segment (else the segment centre).
        transform: clip transform on uint8 ``(T, 3, H, W)`` (see :mod:`.transforms`); ``None``
            returns the raw uint8 frames. An evaluation transform may return several crops
            ``(C, T, 3, H, W)`` (``build_transform(crops=3)``): ``frames`` is then ``(V, T, 3, H, W)``.
        num_clips: evaluation clips per video (multi-clip testing, :func:`read_views`); with several
            clips or crops ``frames`` is ``(V, T, 3, H, W)``, ``V = num_clips * crops``, clip-major.
        num_classes: K; labels outside ``[0, K)`` are list errors. Required for ``multi_label``.
        multi_label: add ``"target"``, a float multi-hot ``(K,)`` of all the line's labels.
        on_error: ``"raise"`` stops at the first bad line or video with a :class:`DataError`
            naming list file, line and media path; ``"skip"`` logs it, records it, and returns
            the next good sample in list order instead (deterministic, so epochs are reproducible),
            however many bad ones follow each other.
        max_bad_fraction: skip mode gives up (:class:`TooManyBadSamples`, one line naming the list and
            the count) once more than this share of the list's lines (malformed lines included) are
            distinct bad samples, counted over every process sharing ``skip_log_dir`` - and at least
            two: one bad file in a small list is no sign of a wrong root - or when every sample is
            bad. The default 1.0 only gives up on the latter; :class:`~adafocus.data.VideoDataModule`,
            which runs training, defaults to 0.05.
        skip_log_dir: where each process appends its skip records (``skipped-<pid>.tsv``), so
            skips in DataLoader workers reach the main process; see :func:`collect_skips`. Created
            here; a record met once the folder is gone (cleaned up at the end of a run) is only logged.
        decoder_threads: FFmpeg threads per clip (1: DataLoader workers are the parallelism).
        max_retries: deprecated and ignored (skip mode used to give up after this many consecutive
            bad samples); use ``max_bad_fraction``.
        short_videos: frames of a video shorter than T (:func:`~adafocus.data.sampling.tsn_indices`):
            ``"spread"`` evenly repeated, ``"last"`` last one repeated (official ActivityNet / FCVID /
            Mini-Kinetics code), ``"first"`` frame 0 T times (official Something-Something code).
        glance_frames: also return ``"glance_frames"``, f_G's own ``(T_G, 3, H, W)`` frames sampled
            apart from ``frames`` (TSN segments of their own, as the official Something-Something
            loader does for AdaFocus-TSM's 8 + 12 frames), with the same spatial transform draw; with
            several views, ``(V, T_G, 3, H, W)``, view v's glance frames cropped as its clip.
        sampling: ``"index"`` TSN segments of frame indices (the papers'); ``"time"`` segments of the
            duration, each taking the frame whose timestamp is nearest its (random / centre) time, for
            variable-frame-rate videos (:func:`~adafocus.data.sampling.tsn_time_indices`); frame
            folders have no timestamps and are sampled by index either way.
        rotation: videos' display rotation: ``"auto"`` turns frames upright, ``"ignore"`` keeps the
            stored pixels (:class:`~adafocus.data.sources.VideoSource`; ignored for a Source object).
        encoding: text encoding of the list (UTF-8 by default, a byte-order mark is dropped); a line
            that does not decode is a bad line naming the list file and line.

    ``"index"`` is the index of the sample actually returned (the replacement's, after a skip).
    """

    def __init__(
        self,
        list_file: str,
        *,
        root: str = "",
        source: str | Source = "video",
        frame_template: str = "img_{:05d}.jpg",
        delimiter: str = " ",
        num_frames: int = 16,
        train: bool = False,
        transform: Callable | None = None,
        num_classes: int | None = None,
        multi_label: bool = False,
        on_error: OnError = "raise",
        skip_log_dir: str | None = None,
        decoder_threads: int = 1,
        max_retries: int | None = None,
        num_clips: int = 1,
        short_videos: ShortVideos = "spread",
        glance_frames: int | None = None,
        max_bad_fraction: float = 1.0,
        sampling: Sampling = "index",
        rotation: Rotation = "auto",
        encoding: str = "utf-8",
    ) -> None:
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        self.sampling = sampling
        if max_retries is not None:
            warnings.warn(
                "VideoDataset(max_retries=...) is deprecated and ignored: skip mode now replaces bad samples "
                "however many are consecutive and gives up only above max_bad_fraction",
                FutureWarning,
                stacklevel=2,
            )
        if (
            isinstance(max_bad_fraction, bool)
            or not isinstance(max_bad_fraction, (int, float))
            or not (0 <= max_bad_fraction <= 1)
        ):
            raise ValueError(f"max_bad_fraction must be a number in [0, 1], got {max_bad_fraction!r}")
        if glance_frames is not None and (isinstance(glance_frames, bool) or not isinstance(glance_frames, int)
                                          or glance_frames < 1):  # fmt: skip
            raise ValueError(f"glance_frames must be a positive integer or None, got {glance_frames!r}")
        if isinstance(num_clips, bool) or not isinstance(num_clips, int) or num_clips < 1:
            raise ValueError(f"num_clips must be an integer >= 1, got {num_clips!r}")
        if train and num_clips != 1:
            raise ValueError(f"num_clips={num_clips} is an evaluation protocol; training samples one clip")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if multi_label and num_classes is None:
            raise ValueError("multi_label=True needs num_classes")
        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        self.list_file, self.root, self.num_frames, self.train = list_file, root, num_frames, train
        self.transform, self.num_classes, self.multi_label = transform, num_classes, multi_label
        self.on_error, self.skip_log_dir, self.max_bad_fraction = on_error, skip_log_dir, float(max_bad_fraction)
        self.num_clips, self.glance_frames = num_clips, glance_frames
        if short_videos not in SHORT_VIDEOS:
            raise ValueError(f"short_videos must be one of {SHORT_VIDEOS}, got {short_videos!r}")
        self.short_videos = short_videos
        self.source = (
            make_source(source, frame_template=frame_template, threads=decoder_threads, rotation=rotation)
            if isinstance(source, str)
            else source
        )
        if skip_log_dir:
            # made here, in the main process: a worker's late record must not recreate a cleaned-up folder
            os.makedirs(skip_log_dir, exist_ok=True)
        self._bad = _BadLines(list_file, skip_log_dir)
        self._bad_indices: set[int] = set()  # known bad in this process: not tried again
        self._lines_here: set[int] = set()  # bad list lines this process met
        line_errors: list[DataError] | None = [] if on_error == "skip" else None
        self.samples: list[Sample] = read_list(
            list_file, delimiter=delimiter, num_classes=num_classes, errors=line_errors, encoding=encoding
        )
        self.num_lines = len(self.samples) + len(line_errors or [])  # the share's denominator
        for e in line_errors or []:
            self._record(-1, e)
        if line_errors:
            self._check_share()

    @property
    def num_skipped(self) -> int:
        """Distinct bad samples (list lines) this process has met."""
        return len(self._lines_here)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index`` without the skip policy; raises :class:`DataError` naming file and line."""
        s = self.samples[index]
        path = resolve(self.root, s.path)
        try:
            clip = self.source.open(path, s.num_frames)
            try:
                glance = glance_views = None
                if self.num_clips > 1 or (self.glance_frames is not None and not self.train):
                    got = read_views(clip, self.num_frames, self.num_clips, self.transform,
                                     short_videos=self.short_videos, glance_segments=self.glance_frames,
                                     sampling=self.sampling)  # fmt: skip
                    frames, glance_views = got[0], (got[2] if self.glance_frames is not None else None)
                    if glance_views is not None and len(frames) == 1:  # one view: the plain sample's shapes
                        frames, glance_views = frames[0], glance_views[0]
                else:
                    frames, glance = self._read_clip(clip)
            finally:
                clip.close()
            if self.transform is not None and self.num_clips == 1 and glance_views is None:
                frames = apply_clip_transform(self.transform, frames)
        except DataError as e:
            raise e.located(list_file=self.list_file, line=s.line) from None
        except (OSError, RuntimeError, ValueError) as e:  # anything else a broken file can provoke
            raise DataError(f"{e.__class__.__name__}: {e}", path=path, list_file=self.list_file, line=s.line) from None
        item = {
            "frames": frames,
            "label": torch.tensor(s.label, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
        }
        if glance_views is not None:
            item["glance_frames"] = glance_views
        elif self.glance_frames is not None:  # frames holds the T clip frames, then f_G's: split them
            item["frames"], item["glance_frames"] = frames[: self.num_frames], frames[self.num_frames :][glance]
        if self.multi_label:
            target = torch.zeros(self.num_classes, dtype=torch.float32)
            target[list(s.labels)] = 1.0
            item["target"] = target
        return item

    def _read_clip(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The clip's T frames (``(T, 3, H, W)`` uint8); with ``glance_frames``, f_G's frames follow them,
        each distinct frame decoded once, and the second value picks f_G's from the tail."""
        pick = dict(train=self.train, sampling=self.sampling, short_videos=self.short_videos)
        idx = clip_indices(clip, self.num_frames, **pick)
        if self.glance_frames is None:
            return clip.read(idx), None
        g_idx = clip_indices(clip, self.glance_frames, **pick)
        extra = sorted(set(g_idx))
        frames = clip.read(idx + extra)  # one transform draw then crops both alike
        where = {i: p for p, i in enumerate(extra)}
        return frames, torch.tensor([where[i] for i in g_idx])

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self.samples)
        for k in range(n):
            j = (index + k) % n
            if j in self._bad_indices:
                continue
            try:
                return self.load(j)
            except DataError as e:
                if self.on_error == "raise":
                    raise
                self._bad_indices.add(j)
                self._record(j, e)
                self._check_share()
        raise TooManyBadSamples(
            f"every one of the {n} samples is unreadable; is the root/source right? (run `adafocus data check`)",
            list_file=self.list_file,
        )

    def _check_share(self) -> None:
        """Give up when more than ``max_bad_fraction`` of the list's lines (and more than one) are bad."""
        bad = self._bad.count()
        if bad > 1 and bad > self.max_bad_fraction * self.num_lines:
            raise TooManyBadSamples(
                f"{bad} of {self.num_lines} samples are unreadable ({bad / self.num_lines:.1%}, more than "
                f"max_bad_fraction={self.max_bad_fraction:g}); is the root/source right? (run `adafocus data "
                "check`; the run directory's skipped_samples.tsv lists them)",
                list_file=self.list_file,
            )

    def _record(self, index: int, error: DataError) -> None:
        log.warning("skipping bad sample: %s", error)
        if error.line is not None:
            self._lines_here.add(error.line)
            self._bad.lines.add(error.line)
        if self.skip_log_dir:
            reason = error.reason.replace("\t", " ").replace("\n", " ")
            try:
                with open(os.path.join(self.skip_log_dir, f"skipped-{os.getpid()}.tsv"), "a", encoding="utf-8") as f:
                    f.write(f"{error.list_file}\t{error.line}\t{index}\t{error.path or ''}\t{reason}\n")
            except FileNotFoundError:
                # the run ended and its report was written (a worker still prefetching): the warning above stays
                log.warning("%s:%s met after the skip report was written; not listed in it", self.list_file, error.line)


def collect_skips(skip_log_dir: str) -> list[tuple[str, ...]]:
    """Unique skip records ``(list_file, line, index, path, reason)`` written under ``skip_log_dir``.

    A bad sample met in several epochs or workers is listed once."""
    rows: set[tuple[str, ...]] = set()
    if os.path.isdir(skip_log_dir):
        for name in os.listdir(skip_log_dir):
            with open(os.path.join(skip_log_dir, name), encoding="utf-8") as f:
                rows.update(tuple(line.rstrip("\n").split("\t")) for line in f if line.strip())
    return sorted(rows, key=lambda r: (r[0], int(r[1]) if r[1].isdigit() else -1))
