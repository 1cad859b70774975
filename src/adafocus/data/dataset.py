"""``VideoDataset``: a map-style dataset of annotated videos (so Lightning's DistributedSampler
and resume work), with the bad-data policy ``on_error="raise" | "skip"``."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Literal

import torch
from torch.utils.data import Dataset

from .annotations import Sample, read_list, resolve
from .errors import DataError
from .sampling import tsn_indices
from .sources import Source, make_source
from .transforms import apply_clip_transform

log = logging.getLogger(__name__)
OnError = Literal["raise", "skip"]


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
            returns the raw uint8 frames.
        num_classes: K; labels outside ``[0, K)`` are list errors. Required for ``multi_label``.
        multi_label: add ``"target"``, a float multi-hot ``(K,)`` of all the line's labels.
        on_error: ``"raise"`` stops at the first bad line or video with a :class:`DataError`
            naming list file, line and media path; ``"skip"`` logs it, records it, and returns
            the next good sample in list order instead (deterministic, so epochs are reproducible).
        skip_log_dir: where each process appends its skip records (``skipped-<pid>.tsv``), so
            skips in DataLoader workers reach the main process; see :func:`collect_skips`.
        decoder_threads: FFmpeg threads per clip (1: DataLoader workers are the parallelism).
        max_retries: consecutive bad samples tolerated before giving up even in skip mode.

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
        max_retries: int = 10,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if multi_label and num_classes is None:
            raise ValueError("multi_label=True needs num_classes")
        if num_frames <= 0:
            raise ValueError(f"num_frames must be positive, got {num_frames}")
        self.list_file, self.root, self.num_frames, self.train = list_file, root, num_frames, train
        self.transform, self.num_classes, self.multi_label = transform, num_classes, multi_label
        self.on_error, self.skip_log_dir, self.max_retries = on_error, skip_log_dir, max_retries
        self.source = (
            make_source(source, frame_template=frame_template, threads=decoder_threads)
            if isinstance(source, str)
            else source
        )
        self.num_skipped = 0
        line_errors: list[DataError] | None = [] if on_error == "skip" else None
        self.samples: list[Sample] = read_list(
            list_file, delimiter=delimiter, num_classes=num_classes, errors=line_errors
        )
        for e in line_errors or []:
            self._record(-1, e)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> dict[str, torch.Tensor]:
        """Sample ``index`` without the skip policy; raises :class:`DataError` naming file and line."""
        s = self.samples[index]
        path = resolve(self.root, s.path)
        try:
            clip = self.source.open(path, s.num_frames)
            try:
                frames = clip.read(tsn_indices(clip.num_frames, self.num_frames, train=self.train))
            finally:
                clip.close()
            if self.transform is not None:
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
        if self.multi_label:
            target = torch.zeros(self.num_classes, dtype=torch.float32)
            target[list(s.labels)] = 1.0
            item["target"] = target
        return item

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        n = len(self.samples)
        for k in range(self.max_retries + 1):
            j = (index + k) % n
            try:
                return self.load(j)
            except DataError as e:
                if self.on_error == "raise":
                    raise
                self._record(j, e)
        raise DataError(
            f"{self.max_retries + 1} consecutive samples from index {index} are unreadable; "
            "is the root/source right? (run `adafocus data check`)",
            list_file=self.list_file,
        )

    def _record(self, index: int, error: DataError) -> None:
        self.num_skipped += 1
        log.warning("skipping bad sample: %s", error)
        if self.skip_log_dir:
            os.makedirs(self.skip_log_dir, exist_ok=True)
            with open(os.path.join(self.skip_log_dir, f"skipped-{os.getpid()}.tsv"), "a", encoding="utf-8") as f:
                reason = error.reason.replace("\t", " ").replace("\n", " ")
                f.write(f"{error.list_file}\t{error.line}\t{index}\t{error.path or ''}\t{reason}\n")


def collect_skips(skip_log_dir: str) -> list[tuple[str, ...]]:
    """Unique skip records ``(list_file, line, index, path, reason)`` written under ``skip_log_dir``.

    A bad sample met in several epochs or workers is listed once."""
    rows: set[tuple[str, ...]] = set()
    if os.path.isdir(skip_log_dir):
        for name in os.listdir(skip_log_dir):
            with open(os.path.join(skip_log_dir, name), encoding="utf-8") as f:
                rows.update(tuple(line.rstrip("\n").split("\t")) for line in f if line.strip())
    return sorted(rows, key=lambda r: (r[0], int(r[1]) if r[1].isdigit() else -1))
