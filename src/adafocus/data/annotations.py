"""Annotation lists: one video per line.

* TSN/AR-Net format: ``path num_frames label[ label ...]`` — multi-label sets (ActivityNet, FCVID)
  pad to a fixed number of labels with ``-1``, which is dropped here. ``num_frames`` may be ``0``
  for video files ("unknown": the decoder counts them).
* Plain format: ``path label``.

The delimiter is configurable (``,`` ActivityNet/FCVID, ``;`` Kinetics in AR-Net, space
elsewhere). A line with two fields is plain, three or more is TSN. Blank lines and lines starting
with ``#`` are ignored. Every problem names ``list_file:line``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import DataError


@dataclass(frozen=True)
class Sample:
    """One annotated video: ``path`` as written in the list; ``line`` is 1-based."""

    path: str
    labels: tuple[int, ...]
    num_frames: int | None
    line: int

    @property
    def label(self) -> int:
        return self.labels[0]


def parse_line(
    text: str, *, delimiter: str = " ", list_file: str = "<list>", line: int = 0, num_classes: int | None = None
) -> Sample:
    """Parse one list line; raises :class:`DataError` naming ``list_file:line``."""

    def fail(why: str) -> DataError:
        return DataError(f"{why}: {text.strip()!r}", list_file=list_file, line=line)

    fields = text.strip().split(delimiter) if delimiter != " " else text.split()
    fields = [f.strip() for f in fields]
    if len(fields) < 2 or not fields[0]:
        raise fail(f"expected 'path label' or 'path num_frames label...' separated by {delimiter!r}")
    path, rest = fields[0], fields[1:]
    try:
        numbers = [int(f) for f in rest]
    except ValueError:
        raise fail("num_frames and labels must be integers") from None
    num_frames = None
    if len(numbers) >= 2:
        num_frames, numbers = numbers[0], numbers[1:]
        if num_frames < 0:
            raise fail(f"negative num_frames {num_frames}")
    labels = tuple(n for n in numbers if n != -1)  # -1 pads multi-label lines to a fixed width
    if not labels:
        raise fail("no label (only -1 padding)")
    bad = [n for n in labels if n < 0 or (num_classes is not None and n >= num_classes)]
    if bad:
        raise fail(
            f"label {bad[0]} out of range [0, {num_classes})" if num_classes is not None else f"negative label {bad[0]}"
        )
    return Sample(path=path, labels=labels, num_frames=num_frames, line=line)


def read_list(
    list_file: str, *, delimiter: str = " ", num_classes: int | None = None, errors: list[DataError] | None = None
) -> list[Sample]:
    """All samples of ``list_file``.

    With ``errors=None`` the first bad line raises; otherwise bad lines are appended to ``errors``
    and skipped (``adafocus data check`` and ``on_error="skip"`` use this to see every problem).
    An empty list always raises: there is nothing to train or evaluate on.
    """
    if not os.path.isfile(list_file):
        raise DataError("annotation list not found", list_file=list_file)
    samples: list[Sample] = []
    with open(list_file, encoding="utf-8") as f:
        for n, text in enumerate(f, start=1):
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            try:
                samples.append(
                    parse_line(text, delimiter=delimiter, list_file=list_file, line=n, num_classes=num_classes)
                )
            except DataError as e:
                if errors is None:
                    raise
                errors.append(e)
    if not samples:
        why = "annotation list has no valid lines" if errors else "annotation list is empty"
        raise DataError(why, list_file=list_file)
    return samples


def resolve(root: str, path: str) -> str:
    """The media path of a list entry: ``root`` prefixes relative paths."""
    return path if not root or os.path.isabs(path) else os.path.join(root, path)


def format_line(
    path: str,
    labels: list[int] | tuple[int, ...],
    *,
    num_frames: int | None = None,
    delimiter: str = " ",
    pad_to: int = 0,
) -> str:
    """One list line (TSN format when ``num_frames`` is given, else plain), padded with -1."""
    labs = list(labels) + [-1] * max(0, pad_to - len(labels))
    fields = [path] + ([str(num_frames)] if num_frames is not None else []) + [str(x) for x in labs]
    return delimiter.join(fields)
