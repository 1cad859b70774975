"""The data layer: video/frame sources, annotation lists, TSN sampling, transforms, the
``VideoDataModule``, dataset checks and converters, and a synthetic benchmark set.

Names load on first use (the command line imports :mod:`adafocus.data.errors` before torch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..lazy import lazy_exports

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


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .annotations import Sample, read_list
    from .datamodule import VideoDataModule
    from .dataset import VideoDataset
    from .errors import DataError
    from .sampling import tsn_indices
    from .sources import FrameFolderSource, VideoSource, make_source
    from .transforms import build_transform
