"""The data layer: video/frame sources, annotation lists, TSN sampling, transforms, the
``VideoDataModule``, dataset checks and converters, and a synthetic benchmark set.

Names load on first use (the command line imports :mod:`adafocus.data.errors` before torch)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "DataError": "errors",
    "FrameFolderSource": "sources",
    "Sample": "annotations",
    "VideoDataModule": "datamodule",
    "VideoDataset": "dataset",
    "VideoSource": "sources",
    "build_transform": "transforms",
    "make_source": "sources",
    "read_list": "annotations",
    "tsn_indices": "sampling",
}
__all__ = [
    "DataError",
    "FrameFolderSource",
    "Sample",
    "VideoDataModule",
    "VideoDataset",
    "VideoSource",
    "build_transform",
    "make_source",
    "read_list",
    "tsn_indices",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'adafocus.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:
    from .annotations import Sample, read_list
    from .datamodule import VideoDataModule
    from .dataset import VideoDataset
    from .errors import DataError
    from .sampling import tsn_indices
    from .sources import FrameFolderSource, VideoSource, make_source
    from .transforms import build_transform
