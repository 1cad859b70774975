"""Safe reading of PyTorch files: the one place adafocus calls ``torch.load``.

:func:`read_checkpoint` loads with ``weights_only=True`` (tensors and plain data only) unless the
caller opts in with ``trust=True``, and turns every way a file can be unusable (missing, empty,
truncated, garbage, holding Python objects) into a :class:`~adafocus.CheckpointError` whose
message is one line naming the file and, for a refused file, the objects it would have run.
"""

from __future__ import annotations

import os
import pickle
import pickletools
import warnings
import zipfile
from collections.abc import Sequence
from typing import Any

import torch

from .errors import CheckpointError, CheckpointNotFoundError

TRUST_HINT = "pass trust=True (command line: --trust-checkpoint) only if you trust where the file came from"


def _pickled_globals(path: str) -> list[str] | None:
    """The ``module.name`` globals a raw pickle would import, read without executing it (None: not a pickle)."""
    names: list[str] = []
    strings: list[str] = []
    try:
        with open(path, "rb") as f:
            for op, arg, _ in pickletools.genops(f):
                if isinstance(arg, str):
                    strings.append(arg)
                if op.name == "GLOBAL":
                    names.append(str(arg).replace(" ", "."))
                elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                    names.append(f"{strings[-2]}.{strings[-1]}")
    except Exception:  # noqa: BLE001 — any failure to parse means "not a pickle"
        return None
    return sorted(set(names))


def _unsafe_globals(path: str) -> list[str]:
    if zipfile.is_zipfile(path):
        try:
            return list(torch.serialization.get_unsafe_globals_in_checkpoint(path))
        except Exception:  # noqa: BLE001 — a damaged archive: described by the caller
            return []
    return _pickled_globals(path) or []


def read_checkpoint(
    path: str | os.PathLike, *, trust: bool = False, safe_globals: Sequence[Any] = (), what: str = "checkpoint"
) -> Any:
    """``torch.load`` a file on the CPU safely: ``weights_only=True`` unless ``trust``.

    Args:
        path: the file.
        trust: allow full unpickling (the file may then run code): only for files you vouch for.
        safe_globals: classes/functions that may be reconstructed besides tensors and plain data
            (``torch.serialization.safe_globals``), e.g. ``argparse.Namespace`` in official checkpoints.
        what: the word used for the file in messages.

    Raises:
        CheckpointError: missing, empty, truncated or unreadable files, and files holding objects
            outside ``safe_globals`` (named in the message) when ``trust`` is false.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise CheckpointNotFoundError(f"{path}: {what} not found")
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: a folder, not a {what} file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*pickle protocol.*")  # raw pickles: refused below anyway
            with torch.serialization.safe_globals(list(safe_globals)):
                return torch.load(path, map_location="cpu", weights_only=not trust)
    except pickle.UnpicklingError as err:
        unsafe = [] if trust else _unsafe_globals(path)
        # an entry is a class / function, or (object, "the.name.it.is.pickled.under")
        allowed = {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in safe_globals}
        unsafe = [n for n in unsafe if n not in allowed]
        if unsafe:
            shown = ", ".join(unsafe[:6]) + (f" and {len(unsafe) - 6} more" if len(unsafe) > 6 else "")
            kind = "a PyTorch file" if zipfile.is_zipfile(path) else "a raw Python pickle"
            raise CheckpointError(
                f"{path}: refused: {kind} holding Python objects that loading would construct or call "
                f"({shown}), not only tensors and plain data; {TRUST_HINT}"
            ) from None
        raise CheckpointError(f"{path}: not a PyTorch {what} ({describe_error(err)})") from None
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError, AttributeError, TypeError) as err:
        if zipfile.is_zipfile(path) or "zip archive" in str(err):
            raise CheckpointError(f"{path}: truncated or corrupt {what} ({describe_error(err)})") from None
        raise CheckpointError(f"{path}: not a readable PyTorch {what} ({describe_error(err)})") from None
    except Exception as err:  # noqa: BLE001 — a trusted pickle may raise anything while it runs
        raise CheckpointError(f"{path}: loading failed ({describe_error(err)})") from None


def describe_error(err: BaseException) -> str:
    """One short line for an exception: its type and its message, flattened and cut."""
    text = " ".join(str(err).split())
    if "Weights only load failed" in text or "Unsupported operand" in text:
        text = "unreadable bytes"
    elif "central directory" in text:
        text = "the zip archive is incomplete"
    text = text[:160] + ("..." if len(text) > 160 else "")
    return f"{type(err).__name__}: {text}" if text else type(err).__name__
