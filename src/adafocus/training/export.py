"""``adafocus export``: a stage checkpoint to a model file usable without Lightning (:func:`adafocus.save_model`)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from torch import nn

from ..checkpoint import load_model, model_from_checkpoint, save_model
from ..serialization import read_checkpoint


def export_checkpoint(
    ckpt: str | os.PathLike,
    out: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    trust: bool = False,
) -> str:
    """Write the model of a stage checkpoint (or of any file :func:`adafocus.load_model` reads) to
    ``out`` in the one model format, with its preprocessing (the clip length and resize of its
    data module) and ``class_names`` if given. Raises :class:`adafocus.CheckpointError` for a
    file that holds no model; ``trust``: see :func:`adafocus.checkpoint.read_checkpoint`."""
    model = model_from_checkpoint(read_checkpoint(ckpt, trust=trust), ckpt)
    return save_model(model, out, class_names=class_names, exported_from=os.path.basename(os.fspath(ckpt)))


def load_exported(path: str | os.PathLike) -> nn.Module:
    """:func:`adafocus.load_model`, left in training mode like a freshly built module (kept for
    code written against earlier versions)."""
    return load_model(path).train()
