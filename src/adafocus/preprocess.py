"""How a model's input is made from a video: frames sampled, shorter side, centre crop, normalisation.

A :class:`Preprocess` travels with every model file (:func:`adafocus.save_model`) and zoo entry, so
that ``adafocus predict`` feeds a model what it was trained on instead of guessing. This module
imports nothing heavy: the command line reads it before torch is loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_NUM_FRAMES = 16


@dataclass(frozen=True)
class Preprocess:
    """Evaluation preprocessing of one model.

    Args:
        num_frames: T, frames sampled at the centres of T equal segments (TSN).
        input_size: side of the square centre crop the model takes.
        scale_size: shorter side the frames are resized to before the crop
            (``None``: ``round(input_size * 256 / 224)``, the ImageNet habit).
        mean / std: per-channel normalisation of ``[0, 1]`` RGB values.
    """

    num_frames: int = DEFAULT_NUM_FRAMES
    input_size: int = 224
    scale_size: int | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("num_frames", "input_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"preprocess {name} must be a positive integer, got {value!r}")
        if self.scale_size is None:
            object.__setattr__(self, "scale_size", round(self.input_size * 256 / 224))
        elif not isinstance(self.scale_size, int) or self.scale_size < self.input_size:
            raise ValueError(f"preprocess scale_size must be an integer >= input_size, got {self.scale_size!r}")
        for name in ("mean", "std"):
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 3 or (name == "std" and min(value) <= 0):
                raise ValueError(f"preprocess {name} must be 3 numbers (std > 0), got {getattr(self, name)!r}")
            object.__setattr__(self, name, value)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (ints, floats, lists): what a model file stores."""
        d = asdict(self)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Preprocess:
        """The inverse of :meth:`to_dict`; unknown keys are ignored (files from newer versions)."""
        known = {k: data[k] for k in ("num_frames", "input_size", "scale_size", "mean", "std") if k in data}
        return cls(**known)


def preprocess_for(model: Any, recorded: Mapping[str, Any] | Preprocess | None = None) -> Preprocess:
    """The preprocessing of ``model``: what its file recorded, completed from the model itself.

    The model's ``input_size`` always wins (it fixes the shapes); a model that needs a fixed clip
    length (``clip_frames``: AdaFocus-TSM's f_L frames) fixes ``num_frames``; a recorded
    ``scale_size`` smaller than the input is ignored.
    """
    data = dict(recorded.to_dict() if isinstance(recorded, Preprocess) else recorded or {})
    input_size = int(getattr(model, "input_size", None) or data.get("input_size") or 224)
    data["input_size"] = input_size
    if getattr(model, "clip_frames", None):
        data["num_frames"] = int(model.clip_frames)
    if not isinstance(data.get("scale_size"), int) or data["scale_size"] < input_size:
        data.pop("scale_size", None)
    return Preprocess.from_dict(data)
