"""``adafocus export``: a stage checkpoint to a model file usable without Lightning (:func:`adafocus.save_model`),
or to an ONNX graph / ``torch.export`` program for deployment (:mod:`adafocus.deploy`)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from torch import nn

from ..checkpoint import load_model, model_from_checkpoint, save_model
from ..serialization import read_checkpoint

if TYPE_CHECKING:
    from ..deploy import ExportReport


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


def export_for_deployment(
    ckpt: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str,
    *,
    class_names: Sequence[str] | None = None,
    trust: bool = False,
    **options: Any,
) -> ExportReport:
    """The model of a stage checkpoint (or of any file :func:`adafocus.load_model` reads) as an ONNX graph
    (``fmt="onnx"``) or a ``torch.export`` program (``"torch-export"``) for offline inference, checked
    against eager (:mod:`adafocus.deploy`; ``options``: ``num_frames``, ``dynamic_batch``, ``check``).
    ``class_names`` (as many as the model's classes) go into the file's metadata."""
    from ..deploy import export_model

    model = model_from_checkpoint(read_checkpoint(ckpt, trust=trust), ckpt).eval()
    if class_names is not None:
        names = [str(n) for n in class_names]
        num_classes = getattr(model, "num_classes", None)
        if num_classes is not None and len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for a model with {num_classes} classes")
        model.class_names = names
    return export_model(model, out, fmt, **options)


def load_exported(path: str | os.PathLike) -> nn.Module:
    """:func:`adafocus.load_model`, left in training mode like a freshly built module (kept for
    code written against earlier versions)."""
    return load_model(path).train()
