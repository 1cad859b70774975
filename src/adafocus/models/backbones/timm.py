"""Any timm model as a backbone: ``timm/<model_name>`` (``timm/mobilenetv2_100``, ``timm/test_resnet``...).

Named weights (``weights="pretrained"``, a pretrained tag ``"a1_in1k"`` or ``"resnet50.a1_in1k"``) load
with timm's own ``create_model(..., pretrained=True)``: through the Hugging Face hub cache (honouring
``HF_HUB_OFFLINE`` / ``HF_HUB_CACHE``) or, for configs with a plain url, ``torch.hub``'s cache.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ...errors import CheckpointNotFoundError
from .registry import Backbone, load_state_dict_file, register_prefix, strict_load
from .torchvision import adapt_state_dict


class TimmBackbone(Backbone):
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
        strict_load(self.model, sd, source)

    def load_file(self, path: str | os.PathLike) -> None:
        """Load a local file as a state_dict or, where its keys do not fit, with timm's own
        local-file mechanism (``pretrained_cfg_overlay=dict(file=...)``), which applies the model's
        checkpoint filter (position-embedding resampling for ViTs, original-repository key
        layouts). Never downloads: the file must exist."""
        state_dict = load_state_dict_file(path)  # an unreadable file stops here, named
        try:
            self.load_weights(state_dict, str(path))
            return
        except ValueError as err:  # keys of another layout: timm's own loader may know it
            first = err
        try:
            self.model = self._timm_loaded(Path(path))
        except Exception as timm_err:
            raise ValueError(f"{first}\ntimm's own local-file loader also failed: {timm_err}") from first

    def weight_names(self) -> list[str]:
        """``pretrained`` (the model name's tag, else timm's default one) and the architecture's tags."""
        import timm

        arch = timm.models.split_model_name_tag(self.model_name)[0]
        return ["pretrained"] + [n.partition(".")[2] for n in timm.list_pretrained(f"{arch}.*")]

    def resolve_tag(self, name: str, backbone: str) -> str:
        """``arch.tag`` for weights ``name``: ``pretrained``, ``tag`` or ``arch.tag`` (timm's pretrained tags)."""
        import timm

        arch, own_tag = timm.models.split_model_name_tag(self.model_name)
        if name.lower() in ("pretrained", "default"):
            tag = own_tag or (self.model.pretrained_cfg.get("tag") or "")
        else:
            named_arch, _, tag = name.rpartition(".")
            if named_arch and named_arch != arch:
                raise ValueError(f"weights={name!r} for backbone {backbone!r}: those are {named_arch}'s weights, "
                                 f"not {arch}'s")  # fmt: skip
        tags = self.weight_names()[1:]
        if tag not in tags:
            known = tags[:8] or "it has none"
            raise ValueError(
                f"weights={name!r} for backbone {backbone!r}: no such file, nor a timm pretrained tag of {arch} "
                f"({known}); pass a local file path or a state_dict"
            )
        return f"{arch}.{tag}"

    def load_named(self, name: str, backbone: str) -> None:
        """Load timm's pretrained weights ``name`` with ``timm.create_model(..., pretrained=True)``."""
        import timm

        full = self.resolve_tag(name, backbone)
        try:
            model = timm.create_model(full, pretrained=True, num_classes=0, global_pool="", **self._kwargs)
        except Exception as err:  # offline and not cached, no network, HTTP error, unreadable cached file
            raise CheckpointNotFoundError(
                f"weights={name!r} for backbone {backbone!r}: timm could not load {full}'s weights "
                f"({type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}); "
                f"{timm_weights_hint(timm.models.get_pretrained_cfg(full))}, or pass a local file path as weights="
            ) from None
        if model.num_features != self.num_features:
            raise ValueError(f"weights={name!r} for backbone {backbone!r}: {full} has {model.num_features} "
                             f"features, the backbone {self.num_features}")  # fmt: skip
        self.model = model

    def _timm_loaded(self, path: Path) -> nn.Module:
        import timm

        return timm.create_model(
            self.model_name,
            pretrained=True,
            pretrained_cfg_overlay=dict(file=str(path)),
            num_classes=0,
            global_pool="",
            **self._kwargs,
        )


def timm_weights_hint(cfg: Any) -> str:
    """Where timm looks for the weights of pretrained config ``cfg``, as advice to place them there."""
    hub_id = getattr(cfg, "hf_hub_id", None)
    if hub_id:
        from huggingface_hub import constants

        filename = getattr(cfg, "hf_hub_filename", None) or "model.safetensors"
        folder = Path(constants.HF_HUB_CACHE) / f"models--{hub_id.replace('/', '--')}"
        return (f"fetch it once with network (`hf download {hub_id}`) into the Hugging Face hub cache {folder} "
                f"(HF_HUB_CACHE moves it; HF_HUB_OFFLINE=1 then reads it offline), or download {filename} "
                f"from https://huggingface.co/{hub_id}")  # fmt: skip
    url = getattr(cfg, "url", None)
    if url:
        from urllib.parse import urlparse

        path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)
        return f"place {url} at {path}"
    return "this tag names no download"


register_prefix("timm", TimmBackbone)
