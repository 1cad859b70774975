"""Backbones for f_G and f_L: one registry (:mod:`.registry`), one file per family.

Importing this package registers the built-in families: torchvision's (``mobilenet_v2``,
``resnet50``, ``torchvision/<builder>``), timm's (``timm/<name>``), the tiny test and demo CNNs,
and the temporal-shift (TSM) versions of torchvision's.
"""

from . import timm, tiny, torchvision, tsm  # noqa: F401  (each registers its backbones)
from .registry import (
    Backbone,
    WeightsArg,
    create_backbone,
    list_backbones,
    load_state_dict_file,
    register_backbone,
    register_prefix,
)

__all__ = [
    "Backbone",
    "WeightsArg",
    "create_backbone",
    "list_backbones",
    "load_state_dict_file",
    "register_backbone",
    "register_prefix",
]
