"""Any timm model as a backbone: ``timm/<model_name>`` (``timm/mobilenetv2_100``, ``timm/test_resnet``...)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

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


register_prefix("timm", TimmBackbone)
