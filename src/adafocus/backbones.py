"""Backbone registry: the global CNN f_G and local CNN f_L, by name.

Every backbone is an ``nn.Module`` mapping ``(N, 3, H, W)`` images to an un-pooled feature map
``(N, C, h, w)`` and exposing ``num_features`` (= C). Names resolve as follows:

* a name registered with :func:`register_backbone` (``mobilenet_v2``, ``resnet50``, ``tiny_cnn``...);
* ``torchvision/<builder>`` for torchvision's ResNet / MobileNet / EfficientNet families;
* ``timm/<model_name>`` for any timm model (``timm/mobilenetv2_100``, ``timm/test_resnet``...).

Weights never come from a hub implicitly: pass ``weights=`` a local file path or a state_dict.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

WeightsArg = str | os.PathLike | Mapping[str, torch.Tensor] | None

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a zero-argument-compatible builder under ``name``."""

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return deco


def list_backbones() -> list[str]:
    """Names registered here (``timm/*`` and ``torchvision/*`` names are accepted too)."""
    return sorted(_REGISTRY)


class TorchvisionBackbone(nn.Module):
    """Feature-map trunk of a torchvision classification model; the full model is kept so that
    torchvision state_dicts (head included) load without renaming."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        if hasattr(model, "layer4"):  # ResNet family
            self.num_features = model.fc.in_features
            model.fc = nn.Identity()
            self._kind = "resnet"
        elif hasattr(model, "features"):  # MobileNet / EfficientNet families
            head = [m for m in model.classifier.modules() if isinstance(m, nn.Linear)]
            self.num_features = head[0].in_features
            model.classifier = nn.Identity()
            self._kind = "features"
        else:
            raise ValueError(f"unsupported torchvision model {type(model).__name__}: need layer4 or features")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        if self._kind == "features":
            return m.features(x)
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        return m.layer4(m.layer3(m.layer2(m.layer1(x))))

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        state_dict, source = adapt_state_dict(state_dict, self.model, source)
        head_prefixes = ("fc.", "classifier.")
        sd = {k: v for k, v in state_dict.items() if not k.startswith(head_prefixes)}
        _strict_load(self.model, sd, source)


class TimmBackbone(nn.Module):
    """Any timm model, headless, returning ``forward_features``."""

    def __init__(self, model_name: str, **kwargs: Any) -> None:
        super().__init__()
        import timm

        self.model_name = model_name
        self._kwargs = kwargs
        self.model = timm.create_model(model_name, pretrained=False, num_classes=0, global_pool="", **kwargs)
        self.num_features = self.model.num_features
        self._head = self.model.pretrained_cfg.get("classifier") or ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_features(x)

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        state_dict, source = adapt_state_dict(state_dict, self.model, source)
        head = self._head + "." if self._head else None
        sd = {k: v for k, v in state_dict.items() if not (head and k.startswith(head))}
        _strict_load(self.model, sd, source)

    def load_timm_file(self, path: str | os.PathLike) -> None:
        """Load ``path`` with timm's own local-file mechanism (``pretrained_cfg_overlay=dict(file=...)``),
        which applies the model's checkpoint filter (e.g. position-embedding resampling for ViTs,
        original-repository key layouts). Never downloads: the file must exist."""
        import timm

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"weights file not found: {path}")
        self.model = timm.create_model(
            self.model_name,
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(path)),
            num_classes=0,
            global_pool="",
            **self._kwargs,
        )


class TinyCNN(nn.Module):
    """A few 3x3 conv-BN-ReLU layers (stride 2 each by default, total 32): a stand-in backbone for
    fast CPU tests and the CPU demo. ``strides`` sets each layer's stride (same length as ``widths``)."""

    def __init__(self, widths: tuple[int, ...] = (8, 16, 24, 32, 48), strides: tuple[int, ...] | None = None) -> None:
        super().__init__()
        strides = strides or (2,) * len(widths)
        if len(strides) != len(widths):
            raise ValueError(f"strides {strides} and widths {widths} must have the same length")
        layers: list[nn.Module] = []
        c_in = 3
        for w, s in zip(widths, strides):
            layers += [nn.Conv2d(c_in, w, 3, stride=s, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            c_in = w
        self.features = nn.Sequential(*layers)
        self.num_features = c_in

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def load_weights(self, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
        _strict_load(self, state_dict, source)


def _strict_load(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
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


# ---- cross-format state_dicts: timm <-> torchvision for the paper's backbones --------------------
# ResNets share one key layout in both libraries (conv1, bn1, layer1.0.conv1, ..., fc), so only the
# heads differ. MobileNet-V2 differs: timm ``conv_stem/bn1/blocks.i.j.*/conv_head/bn2/classifier``
# vs torchvision ``features.n.*/classifier.1``; the rules below rename the timm layout.
_TIMM_MNV2_IR = {"conv_pw": "conv.0.0", "bn1": "conv.0.1", "conv_dw": "conv.1.0", "bn2": "conv.1.1",
                 "conv_pwl": "conv.2", "bn3": "conv.3"}  # fmt: skip
_TIMM_MNV2_DS = {"conv_dw": "conv.0.0", "bn1": "conv.0.1", "conv_pw": "conv.1", "bn2": "conv.2"}
_TIMM_BLOCK = re.compile(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(.+)")


def timm_mobilenetv2_keys_to_torchvision(keys: list[str]) -> dict[str, str]:
    """Map timm ``mobilenetv2_*`` state_dict keys to torchvision ``mobilenet_v2`` keys.

    Blocks ``blocks.i.j`` are numbered ``features.1..n`` in order; the first (depthwise-separable,
    no ``conv_pwl``) block uses torchvision's expand-ratio-1 layout. Returns ``{timm_key: tv_key}``
    for every key it recognises (unrecognised keys are absent).
    """
    blocks = sorted({(int(m[1]), int(m[2])) for k in keys if (m := _TIMM_BLOCK.fullmatch(k))})
    index = {b: n + 1 for n, b in enumerate(blocks)}
    separable = {b for b in blocks if not any(k.startswith(f"blocks.{b[0]}.{b[1]}.conv_pwl.") for k in keys)}
    head = len(blocks) + 1
    out: dict[str, str] = {}
    for k in keys:
        if m := _TIMM_BLOCK.fullmatch(k):
            b = (int(m[1]), int(m[2]))
            part = (_TIMM_MNV2_DS if b in separable else _TIMM_MNV2_IR).get(m[3])
            if part:
                out[k] = f"features.{index[b]}.{part}.{m[4]}"
            continue
        module, _, leaf = k.partition(".")
        new = {"conv_stem": "features.0.0", "bn1": "features.0.1", "conv_head": f"features.{head}.0",
               "bn2": f"features.{head}.1", "classifier": "classifier.1"}.get(module)  # fmt: skip
        if new:
            out[k] = f"{new}.{leaf}"
    return out


def adapt_state_dict(
    state_dict: Mapping[str, torch.Tensor], target: nn.Module, source: str
) -> tuple[dict[str, torch.Tensor], str]:
    """Rename a timm-layout state_dict for a torchvision model or vice versa (MobileNet-V2), so
    ImageNet files from either library load into either backbone kind. A state_dict already in
    ``target``'s layout is returned unchanged. The returned ``source`` notes any conversion."""
    sd = dict(state_dict)
    own = list(target.state_dict())
    if not own or own[0] in sd:
        return sd, source
    if "conv_stem.weight" in sd and "features.0.0.weight" in own:  # timm file -> torchvision model
        mapping = timm_mobilenetv2_keys_to_torchvision(list(sd))
        return _rename(sd, mapping, f"{source} (timm MobileNet-V2 layout, renamed to torchvision's)")
    if "features.0.0.weight" in sd and "conv_stem.weight" in own:  # torchvision file -> timm model
        fwd = timm_mobilenetv2_keys_to_torchvision(own + ["classifier.weight", "classifier.bias"])
        mapping = {tv: tm for tm, tv in fwd.items()}
        return _rename(sd, mapping, f"{source} (torchvision MobileNet-V2 layout, renamed to timm's)")
    return sd, source


def _rename(sd: dict[str, torch.Tensor], mapping: Mapping[str, str], source: str) -> tuple[dict, str]:
    unplaced = [k for k in sd if k not in mapping]
    if unplaced:
        raise ValueError(f"weights from {source}: cannot place {len(unplaced)} key(s): {unplaced[:8]}")
    return {mapping[k]: v for k, v in sd.items()}, source


def load_state_dict_file(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state_dict from a local file safely (``weights_only``, :func:`adafocus.checkpoint.read_checkpoint`),
    unwrapping common wrappers; a bad file raises :class:`~adafocus.CheckpointError` naming it."""
    from .errors import CheckpointError
    from .serialization import read_checkpoint

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


def _torchvision(builder: str) -> nn.Module:
    import torchvision

    fn = getattr(torchvision.models, builder, None)
    if fn is None:
        raise ValueError(f"torchvision has no model builder {builder!r}")
    return TorchvisionBackbone(fn(weights=None))


for _name in ("mobilenet_v2", "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large"):
    register_backbone(_name)(lambda _n=_name: _torchvision(_n))
register_backbone("tiny_cnn")(TinyCNN)
register_backbone("tiny_cnn_wide")(lambda: TinyCNN((16, 24, 32, 48, 64)))
# The CPU demo's pair (``adafocus demo``): a stride-8 glance net (~2.8 MFLOPs on a 64x64 frame) and a
# stride-8 local net (~2.3 MFLOPs on a 24x24 patch, ~16 on a whole 64x64 frame)
register_backbone("demo_glance")(lambda: TinyCNN((16, 32, 64), (2, 2, 2)))
register_backbone("demo_local")(lambda: TinyCNN((32, 64, 96, 128), (2, 2, 2, 1)))


def create_backbone(name: str, *, weights: WeightsArg = None) -> nn.Module:
    """Build backbone ``name`` (see module doc) and optionally load local ``weights``.

    Args:
        name: registered name, ``torchvision/<builder>`` or ``timm/<model>``.
        weights: ``None`` (random init), a local file path, or a state_dict. ``"hub"`` is refused
            with an explanation: downloads are never attempted implicitly.
    """
    if name.startswith("timm/"):
        net: nn.Module = TimmBackbone(name.removeprefix("timm/"))
    elif name.startswith("torchvision/"):
        net = _torchvision(name.removeprefix("torchvision/"))
    elif name in _REGISTRY:
        net = _REGISTRY[name]()
    else:
        raise ValueError(
            f"unknown backbone {name!r}; registered: {list_backbones()}, or use 'timm/<name>' / 'torchvision/<name>'"
        )
    if weights is None:
        return net
    if isinstance(weights, str) and weights.lower() in {"hub", "default", "imagenet", "true"}:
        raise ValueError(
            f"weights={weights!r} for backbone {name!r}: adafocus never downloads weights. Download the "
            "ImageNet file once (e.g. torchvision's resnet50-*.pth or timm's model.safetensors) and pass "
            "its local path, or pass a state_dict."
        )
    if isinstance(weights, Mapping):
        state_dict, source = dict(weights), "the given state_dict"
    else:
        state_dict, source = load_state_dict_file(weights), str(weights)
    try:
        net.load_weights(state_dict, source)
    except ValueError as err:
        if not isinstance(net, TimmBackbone) or isinstance(weights, Mapping):
            raise
        try:  # last resort for timm models: timm's own checkpoint filter (resampling, original layouts)
            net.load_timm_file(weights)
        except Exception as timm_err:
            raise ValueError(f"{err}\ntimm's own local-file loader also failed: {timm_err}") from err
    return net


from . import tsm as _tsm  # noqa: E402,F401  registers the tsm_* backbones (tsm.py imports this module)
