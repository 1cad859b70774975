"""One model file format and one safe loader, for every model class.

::

    import adafocus

    adafocus.save_model(model, "model.pt", class_names=names)   # any registered model class
    model = adafocus.load_model("model.pt")                     # the right class, eval mode, on the CPU
    model.preprocess, model.class_names                         # how to feed it, what it predicts

A model file is a ``torch.save`` of plain data only (``format``, ``model_class``, ``config``,
``state_dict``, ``preprocess``, ``class_names``, ``metadata``), so it loads with
``torch.load(weights_only=True)``: nothing in it can run code. :func:`load_model` also reads the
files earlier versions wrote (``adafocus export`` ``{config, state_dict, eval_data}`` files and
``adafocus convert-official`` files) and Lightning stage checkpoints (``.ckpt``), which hold plain
data too.

Every file is read through :func:`adafocus.serialization.read_checkpoint`, which never unpickles
arbitrary objects unless the caller passes ``trust=True`` (``--trust-checkpoint`` on the command
line) for a file they vouch for. Whatever is wrong with a file (missing, empty, truncated, not a
checkpoint, objects that would need unpickling, no model in it, weights that do not fit) raises
:class:`~adafocus.CheckpointError`, whose message is one line that names the file.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .preprocess import Preprocess, preprocess_for
from .serialization import describe_error, read_checkpoint
from .version import __version__

__all__ = ["load_model", "model_classes", "register_model_class", "save_model"]

FORMAT = "adafocus.models.adafocus"
FORMAT_VERSION = 1


# ---- model classes ---------------------------------------------------------------------------
_REGISTERED: dict[str, type[nn.Module]] = {}


def register_model_class(cls: type[nn.Module], name: str | None = None) -> type[nn.Module]:
    """Make ``cls`` loadable by :func:`load_model` (usable as a class decorator).

    The class must rebuild from keyword arguments kept in its instances' ``config`` dict of plain
    data, as :class:`~adafocus.AdaFocus` does. Files record ``name`` (default: the class name).
    """
    _REGISTERED[name or cls.__name__] = cls
    return cls


def model_classes() -> dict[str, type[nn.Module]]:
    """Every class :func:`load_model` can build, by the name files record."""
    from .models.adafocus import AdaFocus
    from .models.adafocus_tsm import AdaFocusTSM
    from .models.adafocus_v2 import AdaFocusV2, AdaFocusV2TSM
    from .models.full_frame import TSMPlus
    from .models.uni_adafocus import UniAdaFocus

    builtin = (AdaFocus, AdaFocusTSM, AdaFocusV2, AdaFocusV2TSM, TSMPlus, UniAdaFocus)
    return {**{cls.__name__: cls for cls in builtin}, **_REGISTERED}


def model_class_name(model: nn.Module) -> str:
    """The name under which ``model``'s class is registered (what its files record)."""
    for name, cls in model_classes().items():
        if type(model) is cls:
            return name
    raise TypeError(
        f"{type(model).__name__} is not a registered model class: adafocus.register_model_class({type(model).__name__})"
    )


def _class_for_config(config: Mapping[str, Any], path: str) -> type[nn.Module]:
    """For files that did not record their class: the one registered class whose constructor takes
    every key of ``config`` (an AdaFocus-TSM config has ``global_frames``, an AdaFocus one ``classifier``)."""
    fits = []
    for cls in model_classes().values():
        params = inspect.signature(cls.__init__).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in params.values()) and set(config) <= set(params):
            fits.append(cls)
    if len(fits) != 1:
        found = "no" if not fits else f"{len(fits)} ({', '.join(c.__name__ for c in fits)})"
        raise CheckpointError(
            f"{path}: the file does not say which model class built it and {found} class fits its config"
        )
    return fits[0]


# ---- what a file holds ---------------------------------------------------------------------
def _record(obj: Any, path: str) -> tuple[dict[str, Any], dict[str, Any], str | None, dict[str, Any]]:
    """``(config, state_dict, class name or None, preprocess data)`` of any model file layout."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not an adafocus model file")
    if obj.get("format") == FORMAT:
        if int(obj.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(f"{path}: model file format {obj.get('format_version')} is newer than this adafocus")
        cfg, sd, cls, pre = obj.get("config"), obj.get("state_dict"), obj.get("model_class"), obj.get("preprocess")
    elif "adafocus_config" in obj and "state_dict" in obj:  # a Lightning stage checkpoint
        cfg, cls = obj["adafocus_config"], obj.get("adafocus_class")
        sd = {k.removeprefix("model."): v for k, v in obj["state_dict"].items() if k.startswith("model.")}
        pre = _datamodule_preprocess(obj.get("datamodule_hyper_parameters"))
    elif "config" in obj and "state_dict" in obj:  # `adafocus export` / `convert-official` of earlier versions
        cfg, sd, cls = obj["config"], obj["state_dict"], obj.get("model_class")
        pre = _datamodule_preprocess(obj.get("eval_data"))
    else:
        keys = ", ".join(sorted(map(str, obj))[:8])
        raise CheckpointError(
            f"{path}: holds no adafocus model (keys: {keys}); expected a file from adafocus.save_model / "
            "`adafocus export`, a stage .ckpt or an `adafocus convert-official` file"
        )
    if not isinstance(cfg, Mapping) or not isinstance(sd, Mapping) or not sd:
        raise CheckpointError(f"{path}: its model config or weights are missing or empty")
    if any(not torch.is_tensor(v) for v in sd.values()):
        raise CheckpointError(f"{path}: its state_dict holds values that are not tensors")
    return dict(cfg), dict(sd), cls, dict(pre or {})


def _datamodule_preprocess(hparams: Any) -> dict[str, Any]:
    hparams = hparams if isinstance(hparams, Mapping) else {}
    return {k: int(hparams[k]) for k in ("num_frames", "input_size", "scale_size") if isinstance(hparams.get(k), int)}


def model_from_checkpoint(obj: Any, path: str | os.PathLike) -> nn.Module:
    """Rebuild the model held by a loaded checkpoint ``obj`` (see :func:`load_model`); it is left in
    training mode, as freshly built, with ``preprocess``, ``class_names`` and ``metadata`` set."""
    path = os.fspath(path)
    config, sd, name, pre = _record(obj, path)
    classes = model_classes()
    if name is not None and name not in classes:
        raise CheckpointError(f"{path}: model class {name!r} is not registered here (known: {', '.join(classes)})")
    cls = classes[name] if name is not None else _class_for_config(config, path)
    if hasattr(cls, "upgrade_config"):  # files of earlier versions describe the architecture they had
        config = cls.upgrade_config(dict(config))
    try:
        model = cls(**config)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: its config does not build a {cls.__name__}: {describe_error(err)}") from None
    mismatch = weights_mismatch(model.state_dict(), sd)
    if mismatch:
        raise CheckpointError(f"{path}: the weights do not fit its {cls.__name__}: {mismatch}")
    model.load_state_dict(sd, strict=True)
    try:
        model.preprocess = preprocess_for(model, pre)
    except ValueError as err:
        raise CheckpointError(f"{path}: {err}") from None
    names = obj.get("class_names") if isinstance(obj, Mapping) else None
    model.class_names = list(names) if isinstance(names, Sequence) and not isinstance(names, str) else None
    meta = obj.get("metadata") if isinstance(obj, Mapping) else None
    model.metadata = dict(meta) if isinstance(meta, Mapping) else {}
    return model


def weights_mismatch(
    own: Mapping[str, torch.Tensor],
    state_dict: Mapping[str, torch.Tensor],
    *,
    ignore: Sequence[str] = (),
    examples: int = 3,
) -> str | None:
    """How ``state_dict`` fails to fit a model whose own is ``own`` (keys in ``ignore`` may be
    absent), in one line; ``None`` if it fits exactly."""
    missing = [k for k in own if k not in state_dict and k not in ignore]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
              if k in state_dict and state_dict[k].shape != v.shape]  # fmt: skip
    parts = [f"{len(x)} {label} (e.g. {', '.join(x[:examples])})" for x, label in
             ((missing, "missing"), (unexpected, "unexpected"), (shapes, "of the wrong shape")) if x]  # fmt: skip
    return "; ".join(parts) or None


def load_model(path: str | os.PathLike, *, trust: bool = False) -> nn.Module:
    """The model saved in ``path``, of the class that built it, in eval mode on the CPU.

    Reads :func:`save_model` files, Lightning stage checkpoints, and the ``adafocus export`` /
    ``adafocus convert-official`` files of earlier versions. The model's ``preprocess``
    (:class:`~adafocus.preprocess.Preprocess`) says how to feed it, ``class_names`` what it
    predicts (``None`` when unknown). ``trust``: see :func:`read_checkpoint`.

    Raises:
        CheckpointError: one line naming the file and what is wrong with it.
    """
    return model_from_checkpoint(read_checkpoint(path, trust=trust), path).eval()


def state_dict_from_checkpoint(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model weights in a loaded checkpoint: any model file layout, ``{"state_dict": ...}`` or a
    bare state_dict (``model.`` prefixes of stage modules removed)."""
    path = os.fspath(path)
    if isinstance(obj, Mapping) and (obj.get("format") == FORMAT or "config" in obj or "adafocus_config" in obj):
        return _record(obj, path)[1]
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not sd or any(not torch.is_tensor(v) for v in sd.values()):
        raise CheckpointError(f"{path}: holds no model weights (expected a model file, a stage .ckpt or a state_dict)")
    if any(str(k).startswith("model.") for k in sd):
        sd = {k.removeprefix("model."): v for k, v in sd.items() if k.startswith("model.")}
    return dict(sd)


# ---- writing files ---------------------------------------------------------------------------
def _check_plain(value: Any, where: str) -> None:
    """Model files hold only what ``weights_only`` loading accepts: refuse anything else at save time."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return
    if isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(value, Mapping):
        for k, v in value.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"save_model: {where} has a key of type {type(k).__name__}; use strings")
            _check_plain(v, f"{where}[{k!r}]")
        return
    raise TypeError(f"save_model: {where} is a {type(value).__name__}; model files hold only plain data and tensors")


def save_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    preprocess: Preprocess | Mapping[str, Any] | None = None,
    class_names: Sequence[str] | None = None,
    **metadata: Any,
) -> str:
    """Write ``model`` to ``path`` in the one adafocus model format (read it with :func:`load_model`).

    Args:
        model: an instance of a registered model class (:func:`model_classes`), as trained:
            save before ``prepare_for_inference`` / ``quantize_glance``, which change its layers.
        preprocess: how to feed it (default: ``model.preprocess`` when it was loaded or made by
            ``create_model``, else derived from the model: 16 frames, ImageNet normalisation).
        class_names: names by class index (default: ``model.class_names`` if set).
        metadata: any further plain data (dataset, scores, notes) kept in the file's ``metadata``.

    Returns the path written. The file loads with ``torch.load(weights_only=True)``.
    """
    name = model_class_name(model)
    config = dict(getattr(model, "config", None) or {})
    if not config:
        raise TypeError(f"save_model: {type(model).__name__} has no config dict to rebuild it from")
    _check_plain(config, "config")
    _check_plain(metadata, "metadata")
    sd = model.state_dict()
    fresh = set(type(model)(**config).state_dict())
    if set(sd) != fresh:
        changed = sorted(set(sd) ^ fresh)
        raise ValueError(
            f"save_model: the {name}'s layers differ from a freshly built one ({len(changed)} keys, e.g. "
            f"{changed[:3]}): was it prepared for inference or quantized? Save the model before that"
        )
    if preprocess is None:
        preprocess = preprocess_for(model, getattr(model, "preprocess", None))
    elif isinstance(preprocess, Mapping):
        preprocess = preprocess_for(model, preprocess)
    names = class_names if class_names is not None else getattr(model, "class_names", None)
    if names is not None:
        names = [str(n) for n in names]
        num_classes = getattr(model, "num_classes", None)
        if num_classes is not None and len(names) != num_classes:
            raise ValueError(f"save_model: {len(names)} class names for a model with {num_classes} classes")
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    record = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "adafocus_version": __version__,
        "model_class": name,
        "config": config,
        "state_dict": {k: v.detach().cpu() for k, v in sd.items()},
        "preprocess": preprocess.to_dict(),
        "class_names": names,
        "metadata": dict(metadata),
    }
    tmp = f"{path}.tmp-{os.getpid()}"
    torch.save(record, tmp)
    os.replace(tmp, path)  # never a half-written file under the final name
    return path
