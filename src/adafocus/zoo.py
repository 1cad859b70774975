"""Model zoo: the paper's AdaFocus configurations by name, in the spirit of torchvision's weight enums.

Each :class:`ZooEntry` holds the architecture (``model_kwargs`` for :class:`~adafocus.AdaFocus`), the
dataset, frames, patch size, backbones, GFLOPs per video (``adafocus.flops.count_flops``; a test
checks the stored figure), the paper's accuracy/mAP and the Lightning config that trains it. No
weights ship (nothing is downloaded): ``create_model(name, weights=PATH)`` loads a local file, either
an adafocus state_dict / converted file or an official AdaFocus checkpoint (converted on the fly).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .checkpoint import CheckpointError
from .model import AdaFocus
from .preprocess import Preprocess, preprocess_for
from .tsm_model import AdaFocusTSM


@dataclass(frozen=True)
class ZooEntry:
    """A named AdaFocus configuration with its paper results."""

    name: str
    dataset: str
    model_kwargs: Mapping[str, Any]
    frames: int  # T seen by f_G (and by f_L unless local_frames differs)
    gflops: float  # per video, 1 multiply-add = 1 FLOP, counted with adafocus.flops.count_flops
    paper_gflops: float | None
    metric: str  # "mAP" or "top1"
    paper_score: float  # percent
    paper_ref: str
    config: str  # Lightning config that trains it: `adafocus fit --config adafocus:...` (adafocus.resources)
    local_frames: int | None = None
    notes: str = ""
    tsm: bool = False  # built as AdaFocusTSM (temporal shift, 8 f_G + 12 f_L frames, one patch per video)

    @property
    def preprocess(self) -> Preprocess:
        """Evaluation preprocessing: T frames (f_L's 12 for AdaFocus-TSM), 256 -> 224 centre crop, ImageNet."""
        size = int(self.model_kwargs.get("input_size", 224))
        return Preprocess(num_frames=self.local_frames or self.frames, input_size=size)

    @property
    def patch_size(self) -> int:
        return int(self.model_kwargs["patch_size"])

    @property
    def backbones(self) -> str:
        kw = self.model_kwargs
        return f"{kw.get('global_backbone', 'mobilenet_v2')}+{kw.get('local_backbone', 'resnet50')}"

    def build(self, **overrides: Any) -> AdaFocus | AdaFocusTSM:
        """A randomly initialised model with this architecture (``overrides`` win), carrying the
        entry's ``preprocess`` (kept by :func:`adafocus.save_model`)."""
        cls = AdaFocusTSM if self.tsm else AdaFocus
        model = cls(**{**self.model_kwargs, **overrides})
        model.preprocess = preprocess_for(model, self.preprocess)
        return model


_MN2_RN50 = dict(global_backbone="mobilenet_v2", local_backbone="resnet50", grid_size=7, classifier="gru")
_TSM = dict(global_backbone="tsm_mobilenet_v2", local_backbone="tsm_resnet50", grid_size=5, global_frames=8,
            local_frames=12, policy_channels=64, num_classes=174)  # fmt: skip


def _entries() -> list[ZooEntry]:
    e = []
    for ds, k, cfg_dir, metric, ref, scores in (  # {P: (paper score %, paper GFLOPs or None)}
        ("ActivityNet-v1.3", 200, "activitynet", "mAP", "Tables 1, 4",
         {96: (71.9, None), 128: (75.0, 26.6), 160: (76.0, None), 192: (76.7, None)}),
        ("FCVID", 239, "fcvid", "mAP", "Table 1", {128: (83.4, 26.6)}),
        ("Mini-Kinetics", 200, "minikinetics", "top1", "Table 2", {128: (72.2, 26.6), 160: (72.9, 38.6)}),
    ):  # fmt: skip
        for p, (score, paper) in scores.items():
            e.append(ZooEntry(
                name=f"adafocus_mn2_rn50_p{p}_{cfg_dir}", dataset=ds, frames=16, metric=metric, paper_score=score,
                model_kwargs=dict(_MN2_RN50, num_classes=k, patch_size=p), gflops=_GFLOPS[(k, p)],
                paper_gflops=paper, paper_ref=ref, config=f"adafocus:{cfg_dir}/adafocus_mn2_rn50_p{p}.yaml",
            ))  # fmt: skip
    for p, v1, v2, paper in ((144, 47.0, 59.7, 23.5), (160, 47.6, 60.2, 27.5), (176, 48.1, 60.7, 33.7)):
        for ds, score, cfg_dir in (
            ("Something-Something V1", v1, "sthsth"),
            ("Something-Something V2", v2, "sthsth_v2"),
        ):
            e.append(ZooEntry(
                name=f"adafocus_tsm_p{p}_{cfg_dir}", dataset=ds, frames=8, local_frames=12, metric="top1",
                paper_score=score, model_kwargs=dict(_TSM, patch_size=p), gflops=_GFLOPS[(174, p)],
                paper_gflops=paper, paper_ref="Table 3", config=f"adafocus:{cfg_dir}/adafocus_tsm_p{p}.yaml",
                tsm=True,
            ))  # fmt: skip
    return e


# GFLOPs per video from count_flops (test_zoo.py recounts them), keyed by (num_classes, P)
_GFLOPS: dict[tuple[int, int], float] = {
    (200, 96): 17.180, (200, 128): 26.522, (200, 160): 38.533, (200, 192): 53.213, (239, 128): 26.522,
    (174, 144): 23.534, (174, 160): 27.467, (174, 176): 33.717,
}  # fmt: skip

ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in _entries()}


def list_models() -> list[str]:
    """Names of the zoo entries."""
    return list(ZOO)


def get_entry(name: str) -> ZooEntry:
    """The :class:`ZooEntry` called ``name`` (clear error listing the names otherwise)."""
    if name not in ZOO:
        raise ValueError(f"unknown zoo model {name!r}; available: {list_models()}")
    return ZOO[name]


def create_model(
    name: str, weights: str | os.PathLike | Mapping[str, torch.Tensor] | None = None
) -> AdaFocus | AdaFocusTSM:
    """Build zoo model ``name``; ``weights``: a local adafocus state_dict (file or dict), a file written
    by ``adafocus convert-official``, or an official AdaFocus checkpoint (converted here)."""
    entry = get_entry(name)
    model = entry.build()
    if weights is None:
        return model
    sd, source = _read_weights(weights, entry)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    bad = [
        f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}" for k in own if k in sd and sd[k].shape != own[k].shape
    ]
    if missing or unexpected or bad:
        raise ValueError(
            f"weights from {source} do not fit zoo model {name!r}: missing {missing[:8]}, "
            f"unexpected {unexpected[:8]}, shape mismatch {bad[:8]}"
        )
    model.load_state_dict(sd, strict=True)
    return model


def _read_weights(weights: Any, entry: ZooEntry) -> tuple[dict[str, torch.Tensor], str]:
    from .backbones import load_state_dict_file
    from .interop.official import convert_official_checkpoint, load_official_checkpoint

    if isinstance(weights, Mapping):
        return dict(weights), "the given state_dict"
    try:
        sd = load_state_dict_file(weights)
        if not any(k.startswith(("glancer.", "focuser.")) for k in sd):
            return sd, str(weights)
        ckpt = {"model_state_dict": sd}  # an official GFV state_dict saved bare
    except CheckpointError:  # official checkpoints hold argparse / numpy objects: read with their allow-list
        ckpt = load_official_checkpoint(weights)
    kw = entry.model_kwargs
    res = convert_official_checkpoint(ckpt, patch_size=kw["patch_size"], input_size=kw.get("input_size", 224))
    return res.model.state_dict(), f"{weights} (official checkpoint, converted)"


def zoo_rows() -> list[dict[str, Any]]:
    """One dict per entry, as ``adafocus zoo`` prints them."""
    return [
        dict(
            name=e.name,
            dataset=e.dataset,
            frames=e.frames if not e.local_frames else f"{e.frames}+{e.local_frames}",
            patch=e.patch_size,
            backbones=e.backbones,
            gflops=e.gflops,
            paper_gflops=e.paper_gflops,
            metric=e.metric,
            paper_score=e.paper_score,
            config=e.config,
        )  # fmt: skip
        for e in ZOO.values()
    ]
