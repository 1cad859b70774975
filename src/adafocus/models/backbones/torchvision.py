"""torchvision backbones (``mobilenet_v2``, ``resnet50``, ..., ``torchvision/<builder>``) and the
timm <-> torchvision key mapping that lets an ImageNet file of either library load into either.

ResNets share one key layout in both libraries (conv1, bn1, layer1.0.conv1, ..., fc), so only the
heads differ. MobileNet-V2 differs: timm ``conv_stem/bn1/blocks.i.j.*/conv_head/bn2/classifier``
vs torchvision ``features.n.*/classifier.1``; :func:`timm_mobilenetv2_keys_to_torchvision` renames.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn

from .registry import Backbone, register_backbone, register_prefix, strict_load


class TorchvisionBackbone(Backbone):
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
        strict_load(self.model, sd, source)


def _torchvision(builder: str) -> nn.Module:
    import torchvision

    fn = getattr(torchvision.models, builder, None)
    if fn is None:
        raise ValueError(f"torchvision has no model builder {builder!r}")
    return TorchvisionBackbone(fn(weights=None))


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
