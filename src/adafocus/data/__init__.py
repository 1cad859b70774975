"""The data layer: video/frame sources, annotation lists, TSN sampling, transforms, the
``VideoDataModule``, dataset checks and converters, and a synthetic benchmark set."""

from .annotations import Sample, read_list
from .datamodule import VideoDataModule
from .dataset import VideoDataset
from .errors import DataError
from .sampling import tsn_indices
from .sources import FrameFolderSource, VideoSource, make_source
from .transforms import build_transform

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
