"""torchvision backbones (``mobilenet_v2``, ``resnet50``, ..., ``torchvision/<builder>``) and the
timm <-> torchvision key mapping that lets an ImageNet file of either library load into either.

ResNets share one key layout in both libraries (conv1, bn1, layer1.0.conv1, ..., fc), so only the
heads differ. MobileNet-V2 differs: timm ``conv_stem/bn1/blocks.i.j.*/conv_head/bn2/classifier``
vs torchvision ``features.n.*/classifier.1``; :func:`timm_mobilenetv2_keys_to_torchvision` renames.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch
from torch import nn

from ...errors import CheckpointError, CheckpointNotFoundError
from .registry import Backbone, register_backbone, register_prefix, strict_load


class TorchvisionBackbone(Backbone):
    """Feature-map trunk of a torchvision classification model; the full model is kept so that
    torchvision state_dicts (head included) load without renaming.

    ``builder``: the torchvision builder the model came from (``"resnet50"``); its weights enum
    gives the names :meth:`load_named` takes (``None``: no named weights, e.g. the tiny TSM nets).
    """

    def __init__(self, model: nn.Module, builder: str | None = None) -> None:
        super().__init__()
        self.model = model
        self.builder = builder
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
        strict_load(self.model, sd, source)

    def weights_enum(self) -> Any:
        """The builder's torchvision ``WeightsEnum`` class, or ``None`` (no builder, or one without weights)."""
        if self.builder is None:
            return None
        from torchvision.models import get_model_weights

        try:
            return get_model_weights(self.builder)
        except (KeyError, ValueError, AttributeError):  # not a registered builder, or one without weights
            return None

    def weight_names(self) -> list[str]:
        """The builder's weights names (``IMAGENET1K_V1``, ..., ``DEFAULT``); ``pretrained`` means ``DEFAULT``."""
        enum = self.weights_enum()
        return list(enum.__members__) if enum is not None else []

    def load_named(self, name: str, backbone: str) -> None:
        """Load torchvision's weights ``name`` through ``torch.hub``'s cache (downloading them if absent)."""
        weights = resolve_torchvision_weights(self.weights_enum(), name, backbone)
        state_dict, path = fetch_torchvision_weights(weights, f"weights={name!r} for backbone {backbone!r}")
        self.load_weights(state_dict, f"torchvision {weights!r} ({path})")


def resolve_torchvision_weights(enum: Any, name: str, backbone: str) -> Any:
    """The member of ``enum`` (a torchvision ``WeightsEnum`` class) that ``name`` names: ``IMAGENET1K_V2``,
    ``DEFAULT``, ``pretrained`` (= ``DEFAULT``) or the full ``ResNet50_Weights.IMAGENET1K_V2`` (any case)."""
    what = f"weights={name!r} for backbone {backbone!r}"
    if enum is None:
        raise ValueError(f"{what}: no such file, and this backbone has no torchvision weights names; "
                         "pass a local file path or a state_dict")  # fmt: skip
    enum_name, _, member = name.rpartition(".")
    if enum_name and enum_name.lower() != enum.__name__.lower():
        raise ValueError(f"{what}: {enum_name} are another model's weights; this backbone takes {enum.__name__}.*")
    member = "DEFAULT" if member.lower() == "pretrained" else member
    members = {k.upper(): v for k, v in enum.__members__.items()}
    if member.upper() not in members:
        raise ValueError(f"{what}: no such file, nor a {enum.__name__} name; choose one of {list(enum.__members__)} "
                         "or pass a local file path or a state_dict")  # fmt: skip
    return members[member.upper()]


def torchvision_cache_file(weights: Any) -> Path:
    """Where ``torch.hub`` keeps (or will download) the file of torchvision ``weights``:
    ``torch.hub.get_dir()/checkpoints/<the url's file name>`` (``load_state_dict_from_url``'s rule)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(weights.url).path)


def fetch_torchvision_weights(weights: Any, what: str) -> tuple[dict[str, torch.Tensor], Path]:
    """torchvision's ``weights.get_state_dict`` (``torch.hub.load_state_dict_from_url``): the cached file
    if present, else a download checked against the hash in its name; read with ``weights_only=True``.
    Returns ``(state_dict, cache path)``; ``what`` starts the one-line errors."""
    path = torchvision_cache_file(weights)
    cached = path.is_file()
    try:
        state_dict = weights.get_state_dict(progress=not cached, check_hash=True, weights_only=True)
    except Exception as err:  # no network, HTTP error, hash mismatch, unreadable cached file
        if cached:
            raise CheckpointError(f"{what}: {path}: torch.hub's cached file cannot be read ({err!s:.200}); "
                                  "delete it to download it again, or replace it") from None  # fmt: skip
        raise CheckpointNotFoundError(
            f"{what}: {weights!r} is not in torch.hub's cache and could not be downloaded from {weights.url} "
            f"({type(err).__name__}: {err!s:.120}); place that file at {path} "
            "(TORCH_HOME or torch.hub.set_dir() move the cache), or pass a local file path as weights="
        ) from None
    return state_dict, path


def _torchvision(builder: str) -> nn.Module:
    import torchvision

    fn = getattr(torchvision.models, builder, None)
    if fn is None:
        raise ValueError(f"torchvision has no model builder {builder!r}")
    return TorchvisionBackbone(fn(weights=None), builder)


for _name in ("mobilenet_v2", "resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large"):
    register_backbone(_name)(lambda _n=_name: _torchvision(_n))


register_prefix("torchvision", _torchvision)


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
