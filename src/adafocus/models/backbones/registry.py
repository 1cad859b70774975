"""The backbone registry: f_G and f_L by name, and how weights reach them.

Every backbone is a :class:`Backbone`: an ``nn.Module`` mapping ``(N, 3, H, W)`` images to an
un-pooled feature map ``(N, C, h, w)``, with ``num_features`` (= C). Names resolve as follows:

* a name registered with :func:`register_backbone` (``mobilenet_v2``, ``resnet50``, ``tiny_cnn``...);
* ``<prefix>/<name>`` for a family registered with :func:`register_prefix`: ``torchvision/<builder>``
  (torchvision's ResNet / MobileNet / EfficientNet families) and ``timm/<model_name>`` (any timm model).

``weights=`` is a local file path, a state_dict, or a *name* the backbone's library knows
(``IMAGENET1K_V2`` / ``DEFAULT`` / ``ResNet50_Weights.IMAGENET1K_V2`` for torchvision's builders and the
TSM ones made from them, ``pretrained`` or a pretrained tag such as ``a1_in1k`` for ``timm/<name>``).
A name is fetched through that library's own cache (``torch.hub.get_dir()/checkpoints``, the Hugging
Face hub cache), downloading only then: nothing is ever downloaded for a file path, a state_dict or
``None``. Offline with an empty cache, the error names the file to place and where.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from torch import nn

from ...errors import CheckpointError
from ...serialization import read_checkpoint

WeightsArg = str | os.PathLike | Mapping[str, torch.Tensor] | None
Builder = Callable[[], "Backbone"]

_REGISTRY: dict[str, Builder] = {}
_PREFIXES: dict[str, Callable[[str], Backbone]] = {}


class Backbone(nn.Module):
    """A feature-map CNN with ``num_features`` output channels that can take a state_dict."""

    num_features: int

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        """Load ``state_dict`` (``source`` names it in errors); every key must fit."""
        strict_load(self, state_dict, source)

    def load_file(self, path: str | os.PathLike) -> None:
        """Load a local weights file (read safely, :func:`load_state_dict_file`)."""
        self.load_weights(load_state_dict_file(path), str(path))

    def weight_names(self) -> list[str]:
        """The weights names :meth:`load_named` accepts (none: local files and state_dicts only)."""
        return []

    def load_named(self, name: str, backbone: str) -> None:
        """Load the weights called ``name`` by the backbone's library (``backbone``: its name, for errors)."""
        raise ValueError(
            f"weights={name!r} for backbone {backbone!r}: no such file, and this backbone has no named weights; "
            "pass a local file path or a state_dict"
        )


def register_backbone(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering a zero-argument builder under ``name``."""

    def deco(fn: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def register_prefix(prefix: str, build: Callable[[str], Backbone]) -> None:
    """Resolve every ``<prefix>/<name>`` with ``build(name)`` (a whole library's models)."""
    _PREFIXES[prefix] = build


def list_backbones() -> list[str]:
    """Names registered here (``<prefix>/*`` names, e.g. ``timm/*``, are accepted too)."""
    return sorted(_REGISTRY)


def create_backbone(name: str, *, weights: WeightsArg = None) -> Backbone:
    """Build backbone ``name`` (see module doc) and optionally load ``weights``.

    Args:
        name: registered name, or ``<prefix>/<model>`` (``torchvision/...``, ``timm/...``).
        weights: ``None`` (random init), a local file path, a state_dict, or a weights name of the
            backbone's library (:meth:`Backbone.weight_names`; fetched through that library's cache,
            the only case that may download). An existing file always wins over a name. ``"hub"``,
            ``"imagenet"`` and ``"true"`` are refused with the names to use instead.
    """
    prefix, _, rest = name.partition("/")
    if rest and prefix in _PREFIXES:
        net = _PREFIXES[prefix](rest)
    elif name in _REGISTRY:
        net = _REGISTRY[name]()
    else:
        families = ", ".join(f"'{p}/<name>'" for p in sorted(_PREFIXES))
        raise ValueError(f"unknown backbone {name!r}; registered: {list_backbones()}, or use {families}")
    if weights is None:
        return net
    if isinstance(weights, str) and weights.lower() in {"hub", "imagenet", "true"}:
        names = net.weight_names()
        hint = f"name them ({', '.join(names[:8])})" if names else "this backbone has no named weights"
        raise ValueError(
            f"weights={weights!r} for backbone {name!r}: adafocus never downloads weights unless they are asked "
            f"for by name: {hint}, or pass a local file path or a state_dict"
        )
    if isinstance(weights, Mapping):
        net.load_weights(dict(weights), "the given state_dict")
    elif isinstance(weights, str) and is_weights_name(weights):
        net.load_named(weights, name)
    else:
        net.load_file(weights)
    return net


# a file name has a weights-file suffix or a folder in it; anything else that is not an existing
# file is taken as a weights name (``IMAGENET1K_V2``, ``ResNet50_Weights.DEFAULT``, ``a1_in1k``)
_NAME = re.compile(r"[A-Za-z0-9][\w\-]*(\.[\w\-]+)*")
_FILE_SUFFIXES = {".pth", ".pt", ".pt2", ".bin", ".safetensors", ".ckpt", ".tar", ".pkl", ".pickle", ".npz", ".h5",
                  ".zip"}  # fmt: skip


def is_weights_name(text: str) -> bool:
    """Whether ``weights=text`` names weights rather than a local file (an existing file never is a name)."""
    if os.path.exists(text) or not _NAME.fullmatch(text):
        return False
    return Path(text).suffix.lower() not in _FILE_SUFFIXES


def strict_load(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``module.load_state_dict(state_dict, strict=True)`` with an error that lists what does not fit."""
    own = module.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    bad_shape = [
        f"{k}: file {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in state_dict and state_dict[k].shape != own[k].shape
    ]
    if missing or unexpected or bad_shape:
        lines = [f"weights from {source} do not fit {type(module).__name__}:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): {missing[:8]}")
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): {unexpected[:8]}")
        if bad_shape:
            lines.append(f"  shape mismatch ({len(bad_shape)}): {bad_shape[:8]}")
        raise ValueError("\n".join(lines))
    module.load_state_dict(dict(state_dict), strict=True)


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state_dict from a local file safely (:func:`adafocus.serialization.read_checkpoint`),
    unwrapping common wrappers; a bad file raises :class:`~adafocus.CheckpointError` naming it."""
    path = Path(path)
    if path.suffix == ".safetensors" and path.is_file():
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from None
    obj = read_checkpoint(path, what="weights file")
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} does not hold a state_dict (found {type(obj).__name__})")
    return {k.removeprefix("module."): v for k, v in obj.items()}
