"""Annotation lists: one video per line.

* TSN/AR-Net format: ``path num_frames label[ label ...]`` — multi-label sets (ActivityNet, FCVID)
  pad to a fixed number of labels with ``-1``, which is dropped here. ``num_frames`` may be ``0``
  for video files ("unknown": the decoder counts them).
* Plain format: ``path label``.

The delimiter is configurable (``,`` ActivityNet/FCVID, ``;`` Kinetics in AR-Net, space
elsewhere). A line with two fields is plain, three or more is TSN. Blank lines and lines starting
with ``#`` are ignored. A path that contains the delimiter (``my video.mp4`` in a space-separated
list) is written in double or single quotes: ``"my video.mp4" 120 3`` (:func:`format_line` quotes
such paths). Lists are UTF-8 by default (a byte-order mark is dropped); ``encoding`` reads others
(``"latin-1"``, ``"utf-16"``). Every problem names ``list_file:line``.
"""

from __future__ import annotations

import codecs
import errno
import os
import re
from collections.abc import Iterator
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


def path_problem(path: str, missing: str = "file not found") -> str | None:
    """Why ``path`` cannot be used at all, or ``None`` when it exists: ``missing`` (with the target of
    a dangling symlink), ``"symlink loop"``, or the system's reason (permission denied, ...).

    ``os.path.exists`` says ``False`` for all of these alike; ``os.stat``'s errno tells them apart."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "symlink loop (a link points back to itself; fix or remove it)"
        if e.errno in (errno.ENOENT, errno.ENOTDIR):
            if os.path.islink(path):
                return f"{missing} (dangling symlink -> {os.readlink(path)})"
            return missing
        return f"cannot access ({e.strerror})"
    except ValueError as e:  # an embedded NUL byte
        return f"invalid path ({e})"
    return None


def _split_fields(text: str, delimiter: str) -> tuple[list[str], bool] | None:
    """The fields of a line and whether its path was quoted; ``None`` for an unclosed quote or text
    glued to the closing quote."""
    stripped = text.strip()
    if stripped[:1] not in ('"', "'"):
        fields = stripped.split(delimiter) if delimiter != " " else stripped.split()
        return [f.strip() for f in fields], False
    end = stripped.find(stripped[0], 1)
    if end < 0:
        return None
    path, tail = stripped[1:end], stripped[end + 1 :]
    if delimiter == " ":
        if tail and not tail[0].isspace():
            return None
        rest = tail.split()
    else:
        tail = tail.lstrip()
        if tail and not tail.startswith(delimiter):
            return None
        rest = tail[len(delimiter) :].split(delimiter) if tail else []
    return [path] + [f.strip() for f in rest], True


def _delimiter_hint(fields: list[str], delimiter: str) -> str:
    """A hint when rejoining the leading fields would make the line parse: the path likely contains
    the delimiter (``my video.mp4 120 3`` split on spaces)."""
    bad = [i for i, f in enumerate(fields) if i and not _is_int(f)]
    if not bad or bad[-1] == len(fields) - 1:
        return ""
    joined = (" " if delimiter == " " else delimiter).join(fields[: bad[-1] + 1])
    other = "','" if delimiter != "," else "';'"
    return (
        f"; the path may contain the delimiter {delimiter!r} ({joined!r}?): quote it or pass "
        f"--delimiter / delimiter={other}"
    )


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def parse_line(
    text: str, *, delimiter: str = " ", list_file: str = "<list>", line: int = 0, num_classes: int | None = None
) -> Sample:
    """Parse one list line; raises :class:`DataError` naming ``list_file:line``."""

    def fail(why: str, hint: str = "") -> DataError:
        return DataError(f"{why}: {text.strip()!r}{hint}", list_file=list_file, line=line)

    split = _split_fields(text, delimiter)
    if split is None:
        raise fail(f"unclosed quote, or no {delimiter!r} after the quoted path")
    fields, quoted = split
    if len(fields) < 2 or not fields[0]:
        raise fail(f"expected 'path label' or 'path num_frames label...' separated by {delimiter!r}")
    path, rest = fields[0], fields[1:]
    try:
        numbers = [int(f) for f in rest]
    except ValueError:
        hint = "" if quoted else _delimiter_hint(fields, delimiter)
        raise fail("num_frames and labels must be integers", hint) from None
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


def check_encoding(encoding: str) -> str:
    """``encoding`` if Python knows it as a text encoding; else a ``ValueError`` starting
    ``encoding=...`` (the CLI turns it into ``--encoding=...``)."""
    try:
        "\n".encode(encoding)  # also refuses codecs that are no text encoding (rot13, base64)
    except (LookupError, TypeError):
        raise ValueError(f"encoding={encoding!r}: not a known text encoding (e.g. 'utf-8', 'latin-1')") from None
    return encoding


def _undecodable(list_file: str, line: int, prefix: str, byte: int, rest: bytes, encoding: str) -> DataError:
    """The one-line error for a line that is not ``encoding``: ``prefix`` decoded before the bad ``byte``."""
    name = "UTF-8" if codecs.lookup(encoding).name == "utf-8" else f"valid {encoding}"
    shown = (prefix + rest.decode(encoding, errors="backslashreplace")).strip()
    return DataError(
        f"not {name} (byte 0x{byte:02x} at column {len(prefix) + 1}: '{shown}'); re-save the list as UTF-8 "
        "or pass encoding=... (e.g. 'latin-1'; `adafocus data check --encoding`)",
        list_file=list_file,
        line=line,
    )


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _lines(list_file: str, raw: bytes, encoding: str) -> Iterator[tuple[int, str | DataError]]:
    """``(line number, text)`` per line, or ``(line number, DataError)`` for a line that does not decode.

    Encodings that write line breaks and ASCII as themselves (UTF-8, Latin-1, cp1252, Shift-JIS, ...)
    are decoded line by line, so one bad line costs only itself; others (UTF-16) are decoded whole
    and their first bad byte ends the list. A leading byte-order mark is dropped (an invisible
    ``\\ufeff`` glued to the first path would make it "not found")."""
    probe = "\r\n #,;.0123456789"
    if probe.encode(encoding) == probe.encode("ascii"):
        for n, chunk in enumerate(raw.splitlines(), start=1):  # bytes split on \n, \r\n and \r only
            if n == 1 and chunk.startswith(codecs.BOM_UTF8) and codecs.lookup(encoding).name == "utf-8":
                chunk = chunk[len(codecs.BOM_UTF8) :]
            try:
                text = chunk.decode(encoding)
            except UnicodeDecodeError as e:
                prefix = chunk[: e.start].decode(encoding, errors="replace")
                yield n, _undecodable(list_file, n, prefix, chunk[e.start], chunk[e.start :], encoding)
                continue
            yield n, text.removeprefix("\ufeff") if n == 1 else text
        return
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as e:
        before = _LINE_BREAK.split(raw[: e.start].decode(encoding, errors="replace"))
        yield len(before), _undecodable(list_file, len(before), before[-1], raw[e.start], b"", encoding)
        return
    yield from enumerate(_LINE_BREAK.split(text.removeprefix("\ufeff")), start=1)


def read_list(
    list_file: str,
    *,
    delimiter: str = " ",
    num_classes: int | None = None,
    errors: list[DataError] | None = None,
    encoding: str = "utf-8",
) -> list[Sample]:
    """All samples of ``list_file``, a text file in ``encoding`` (UTF-8 with or without a BOM by default).

    With ``errors=None`` the first bad line raises; otherwise bad lines are appended to ``errors``
    and skipped (``adafocus data check`` and ``on_error="skip"`` use this to see every problem).
    A line that is not valid ``encoding`` is such a bad line. An empty list always raises: there is
    nothing to train or evaluate on. An unknown ``encoding`` is a ``ValueError``.
    """
    check_encoding(encoding)
    problem = path_problem(list_file, "annotation list not found")
    if problem is None and os.path.isdir(list_file):
        problem = "annotation list is a folder"
    if problem is not None:
        raise DataError(problem if problem.startswith("annotation") else f"annotation list: {problem}",
                        list_file=list_file)  # fmt: skip
    try:
        with open(list_file, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"annotation list unreadable ({e.strerror})", list_file=list_file) from None
    samples: list[Sample] = []
    for n, text in _lines(list_file, raw, encoding):
        try:
            if isinstance(text, DataError):
                raise text
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            samples.append(parse_line(text, delimiter=delimiter, list_file=list_file, line=n, num_classes=num_classes))
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
    """One list line (TSN format when ``num_frames`` is given, else plain), padded with -1; a path
    that contains the delimiter (or starts with a quote) is quoted, so :func:`parse_line` reads it back."""
    labs = list(labels) + [-1] * max(0, pad_to - len(labels))
    clashes = any(c.isspace() for c in path) if delimiter == " " else delimiter in path
    if clashes or path[:1] in ('"', "'"):
        path = f"'{path}'" if '"' in path else f'"{path}"'
    fields = [path] + ([str(num_frames)] if num_frames is not None else []) + [str(x) for x in labs]
    return delimiter.join(fields)
