"""The backbone registry: f_G and f_L by name, and how weights reach them.

Every backbone is a :class:`Backbone`: an ``nn.Module`` mapping ``(N, 3, H, W)`` images to an
un-pooled feature map ``(N, C, h, w)``, with ``num_features`` (= C). Names resolve as follows:

* a name registered with :func:`register_backbone` (``mobilenet_v2``, ``resnet50``, ``tiny_cnn``...);
* ``<prefix>/<name>`` for a family registered with :func:`register_prefix`: ``torchvision/<builder>``
  (torchvision's ResNet / MobileNet / EfficientNet families) and ``timm/<model_name>`` (any timm model).

Weights never come from a hub implicitly: pass ``weights=`` a local file path or a state_dict.
"""

from __future__ import annotations

import os
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
    """Build backbone ``name`` (see module doc) and optionally load local ``weights``.

    Args:
        name: registered name, or ``<prefix>/<model>`` (``torchvision/...``, ``timm/...``).
        weights: ``None`` (random init), a local file path, or a state_dict. ``"hub"`` is refused
            with an explanation: downloads are never attempted implicitly.
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
    if isinstance(weights, str) and weights.lower() in {"hub", "default", "imagenet", "true"}:
        raise ValueError(
            f"weights={weights!r} for backbone {name!r}: adafocus never downloads weights. Download the "
            "ImageNet file once (e.g. torchvision's resnet50-*.pth or timm's model.safetensors) and pass "
            "its local path, or pass a state_dict."
        )
    if isinstance(weights, Mapping):
        net.load_weights(dict(weights), "the given state_dict")
    else:
        net.load_file(weights)
    return net


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
