"""Convert checkpoints of the official AdaFocusV2 code (LeapLabTHU/AdaFocusV2, "Experiments on
ActivityNet, FCVID and Mini-Kinetics") into this project's :class:`~adafocus.AdaFocusV2`.

The official ``main_v2.py`` saves ``{"state_dict": model.state_dict()}`` of a ``DataParallel``
``AdaFocus`` (keys prefixed ``module.``; no ``args``). Files are read like V1 files
(:func:`~adafocus.interop.official.load_official_checkpoint`: ``weights_only`` plus an allow-list).

Key mapping (official key prefix -> ours):

=============================================================  ===========================================
``global_CNN.features.{0,18}.{0,1}.`` (MobileNet-V2)           ``global_cnn.model.features.*`` (same)
``global_CNN.features.i.conv.{0,1,3,4,6,7}.`` (expand)         ``...features.i.conv.{0.0,0.1,1.0,1.1,2,3}.``
``global_CNN.features.1.conv.{0,1,3,4}.`` (expand ratio 1)     ``...features.1.conv.{0.0,0.1,1,2}.``
``global_CNN.{conv1,bn1,layer1..4}.`` (res50 glance)           ``global_cnn.model.*``
``local_CNN.{conv1,bn1,layer1..4}.``                           ``local_cnn.model.*``
``global_CNN_fc.1.`` / ``local_CNN_fc.1.``                     ``global_fc.1.`` / ``local_fc.1.``
``policy_stn.encoder.{0,1,4,5}.`` / ``policy_stn.gru.``        ``policy.encoder.{0,1,4,5}.`` / ``policy.gru.``
``policy_stn.fc.0.``                                           ``policy.head.``
``classifier.mlp.layers.{0,1}.``                               ``classifier.mlp.{0,1}.``
``classifier.classifiers.t.1.``                                ``classifier.heads.t.1.``
=============================================================  ===========================================

Sth-Sth / Jester files (``Experiments on Sth-Sth and Jester``: TSN backbones, ``*_CNN.base_model.*``)
are :mod:`~adafocus.interop.official_v2_tsm`'s (an :class:`~adafocus.AdaFocusV2TSM`).

Dropped (documented unused): ``global_CNN.classifier.*`` (MobileNet-V2's ImageNet head),
``global_CNN.fc.*`` (the ResNet glance's) and ``local_CNN.fc.*``: the official forward only calls
``get_featmap`` / ``get_featvec``, which never reach them. Every other key must be placed.

Equivalence with the official eval forward (tests/test_interop_official_v2.py): the official crop
(``affine_grid`` / ``grid_sample``, ``align_corners=False``, ``theta = [[P/W, 0, -1 + (x1+x2)/W],
[0, P/H, -1 + (y1+y2)/H]]``) samples pixel ``(y1 + i, x1 + j)`` with ``(y1, x1) = a * (H - P)``, the
points :func:`~adafocus.models.crop.sample_patches` samples. The official ``--sample`` frame order
is ``frame_order="coarse_to_fine"`` for T <= 19 (all official runs: T = 16); from T = 20 on the two
bisections can differ, so such files need an explicit ``frame_order``. The ``res50`` glance resizes
frames with bilinear ``align_corners=True``, adafocus' glance with ``align_corners=False``: for exact
official outputs pass ``glance_input=F.interpolate(frames.flatten(0, 1), 96, mode="bilinear",
align_corners=True).view(B, T, 3, 96, 96)`` to the model's forward.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from ..errors import CheckpointError
from ..models.adafocus_v2 import AdaFocusV2
from .official import _RESNETS, CheckpointArg, ConversionResult, load_official_checkpoint, placement_error

#: Official heads the official forward never uses (dropped, listed in ``ConversionResult.dropped``).
DROPPED_PREFIXES = ("global_CNN.classifier.", "global_CNN.fc.", "local_CNN.fc.")

_MBV2_EXPAND = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_MBV2_DEPTHWISE = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}  # expand ratio 1 (features.1)
_MBV2_BLOCK = re.compile(r"global_CNN\.features\.(\d+)\.conv\.(\d+)\.(.+)")
_RENAMES = (
    ("global_CNN.features.", "global_cnn.model.features."),
    ("global_CNN.", "global_cnn.model."),
    ("local_CNN.", "local_cnn.model."),
    ("global_CNN_fc.1.", "global_fc.1."),
    ("local_CNN_fc.1.", "local_fc.1."),
    ("policy_stn.encoder.", "policy.encoder."),
    ("policy_stn.gru.", "policy.gru."),
    ("policy_stn.fc.0.", "policy.head."),
    ("classifier.mlp.layers.", "classifier.mlp."),
)
_SAME_ORDER_UP_TO = 19  # coarse_to_fine(T) == official input_order(T) for every T <= 19 (checked)
_CLS_HEAD = re.compile(r"classifier\.classifiers\.(\d+)\.1\.(.+)")


def _strip(sd: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).removeprefix("module."): v for k, v in sd.items()}


def is_official_v2(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint (``{"state_dict": ...}`` or a bare state_dict) is an official
    AdaFocusV2 ActivityNet/FCVID/Mini-Kinetics one (it has ``policy_stn.*`` keys)."""
    return has_keys(checkpoint, ("policy_stn.",))


def has_keys(checkpoint: Mapping[str, Any], prefixes: tuple[str, ...]) -> bool:
    """Whether a checkpoint's state_dict (``module.`` removed) has a key starting with one of ``prefixes``."""
    sd = checkpoint.get("state_dict", checkpoint)
    return isinstance(sd, Mapping) and any(str(k).removeprefix("module.").startswith(prefixes) for k in sd)


def checked_state_dict(checkpoint: Mapping[str, Any], ok: bool, what: str, expected: str) -> dict[str, Any]:
    """The state_dict of an official ``what`` checkpoint, ``module.`` removed, or a one-line error
    saying what was ``expected`` when ``ok`` is false."""
    if not ok:
        raise CheckpointError(
            f"not an official {what} checkpoint: top-level keys {sorted(map(str, checkpoint))[:12]}; "
            f"expected {expected}"
        )
    return _strip(checkpoint.get("state_dict", checkpoint))


def official_v2_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The ``AdaFocus``-level state_dict of an official V2 checkpoint, ``module.`` prefixes removed."""
    return checked_state_dict(checkpoint, is_official_v2(checkpoint), "AdaFocusV2",
                              "'state_dict' with policy_stn.* keys (as saved by the official main_v2.py)")  # fmt: skip


def _need(sd: Mapping[str, Any], key: str) -> torch.Tensor:
    if not torch.is_tensor(sd.get(key)):
        raise ValueError(f"official checkpoint lacks {key} (renamed or missing?)")
    return sd[key]


def _resnet(sd: Mapping[str, Any], prefix: str) -> str:
    blocks = tuple(len({k.split(".")[2] for k in sd if k.startswith(f"{prefix}layer{i}.")}) for i in (1, 2, 3, 4))
    kind = "bottleneck" if f"{prefix}layer1.0.conv3.weight" in sd else "basic"
    if (kind, blocks) not in _RESNETS:
        raise ValueError(f"{prefix[:-1]} is a ResNet with {kind} blocks {blocks}: not a torchvision depth")
    return _RESNETS[(kind, blocks)]


def official_v2_config(
    sd: Mapping[str, Any],
    *,
    patch_size: int | None = None,
    input_size: int | None = None,
    glance_size: int | None = None,
    frame_order: str | Sequence[int] | None = None,
    args: Any = None,
) -> dict[str, Any]:
    """:class:`~adafocus.AdaFocusV2` keyword arguments matching an official V2 state_dict.

    Shapes give the classes, T (the number of per-step heads), the widths and the backbones;
    ``patch_size`` is not in the weights: it comes from ``patch_size`` or the file's ``args``.
    ``input_size`` defaults to ``args.input_size`` or 224; the ``res50`` glance's side to its
    policy map's (official: 96); ``frame_order`` to ``args.sample`` or ``"coarse_to_fine"`` (for
    T >= 20 it must be given: see the module doc).
    """
    if any(k.startswith(("global_CNN.base_model.", "local_CNN.base_model.")) for k in sd):
        raise ValueError("this is an official Sth-Sth/Jester (TSN/TSM) AdaFocusV2 checkpoint: convert it with "
                         "adafocus.interop.official_v2_tsm.convert_official_v2_tsm_checkpoint (adafocus "
                         "convert-official detects it)")  # fmt: skip
    argd = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    patch_size = patch_size or argd.get("patch_size")
    if not patch_size:
        raise ValueError("patch_size is not stored in the official weights: pass it (--patch-size, e.g. 128)")
    input_size = int(input_size or argd.get("input_size") or 224)
    heads = {int(m[1]) for k in sd if (m := _CLS_HEAD.fullmatch(k))}
    if not heads or heads != set(range(len(heads))):
        raise ValueError(f"official classifier.classifiers.* heads are {sorted(heads)}: expected 0..T-1")
    if frame_order is None:
        frame_order = "temporal" if argd.get("sample", True) is False else "coarse_to_fine"
        if frame_order == "coarse_to_fine" and len(heads) >= _SAME_ORDER_UP_TO + 1:
            raise ValueError(f"the file has T={len(heads)} per-step heads; coarse_to_fine equals the official "
                             f"--sample order (main_v2.input_order) only up to T={_SAME_ORDER_UP_TO}: pass "
                             "frame_order= that order (or 'temporal' for a run without --sample)")  # fmt: skip
    conv, lin = _need(sd, "policy_stn.encoder.0.weight"), _need(sd, "policy_stn.encoder.4.weight")
    side = math.isqrt(lin.shape[1] // conv.shape[0])
    if conv.dim() != 4 or side * side * conv.shape[0] != lin.shape[1]:
        raise ValueError(f"policy_stn.encoder.4.weight {tuple(lin.shape)} does not take a square map of "
                         f"{conv.shape[0]} channels")  # fmt: skip
    if any(k.startswith("global_CNN.features.") for k in sd):
        global_backbone, glance = "mobilenet_v2", input_size
        if glance_size not in (None, input_size):
            raise ValueError("the official mbv2 glance sees the full frames: glance_size must equal input_size")
    elif any(k.startswith("global_CNN.layer1.") for k in sd):
        global_backbone, glance = _resnet(sd, "global_CNN."), int(glance_size or 32 * side)
    else:
        raise ValueError("official checkpoint lacks global_CNN.features.* (mbv2) or global_CNN.layer* (res50) weights")
    if math.ceil(glance / 32) != side:
        raise ValueError(f"policy_stn.encoder.4.weight takes a {side}x{side} glance map, a {glance}-pixel glance "
                         f"gives {math.ceil(glance / 32)}x{math.ceil(glance / 32)}: pass the official input_size "
                         f"(--input-size, {32 * side} for this file)")  # fmt: skip
    return dict(
        num_classes=_need(sd, "classifier.classifiers.0.1.weight").shape[0], global_backbone=global_backbone,
        local_backbone=_resnet(sd, "local_CNN."), patch_size=int(patch_size), input_size=input_size,
        glance_size=glance, num_frames=len(heads), policy_hidden_dim=_need(sd, "policy_stn.gru.weight_hh_l0").shape[1],
        policy_channels=conv.shape[0], classifier_hidden_dim=_need(sd, "classifier.mlp.layers.0.weight").shape[0],
        dropout=float(argd.get("dropout", 0.2)), frame_order=frame_order,
    )  # fmt: skip


def map_official_v2_key(key: str, expand_blocks: set[str]) -> str | None:
    """Our key for official ``key`` (``None``: no place). ``expand_blocks``: the MobileNet-V2
    ``features`` indices whose block has an expansion layer (``conv.6``)."""
    if m := _MBV2_BLOCK.fullmatch(key):
        part = (_MBV2_EXPAND if m[1] in expand_blocks else _MBV2_DEPTHWISE).get(m[2])
        return f"global_cnn.model.features.{m[1]}.conv.{part}.{m[3]}" if part else None
    if m := _CLS_HEAD.fullmatch(key):
        return f"classifier.heads.{m[1]}.1.{m[2]}"
    for src, dst in _RENAMES:
        if key.startswith(src):
            return dst + key.removeprefix(src)
    return None


def convert_official_v2_checkpoint(
    checkpoint: CheckpointArg,
    *,
    patch_size: int | None = None,
    input_size: int | None = None,
    glance_size: int | None = None,
    frame_order: str | Sequence[int] | None = None,
    source: str | None = None,
    extra_safe_globals: Sequence[Any] = (),
    trust: bool = False,
) -> ConversionResult:
    """Convert an official AdaFocusV2 checkpoint (path or loaded dict) into an :class:`~adafocus.AdaFocusV2`.

    Args:
        checkpoint: ``.pth.tar`` path, the loaded ``{"state_dict": ...}`` dict, or a bare state_dict.
        patch_size / input_size / glance_size / frame_order: see :func:`official_v2_config`.
        source: the file's name in messages (default: the path, or "the given checkpoint").
        extra_safe_globals / trust: see :func:`~adafocus.interop.official.load_official_checkpoint`.

    Returns a :class:`~adafocus.interop.official.ConversionResult` whose ``model`` is an
    ``AdaFocusV2`` (as built: training mode), ``mapped`` every official key, ``dropped`` the unused
    heads (:data:`DROPPED_PREFIXES`) and ``missing`` empty.

    Raises:
        CheckpointError: one line naming the file and every official key with no place, every
            shape mismatch and every adafocus key the checkpoint does not fill (the first ten of each).
    """
    ckpt, source = read_official(checkpoint, source, extra_safe_globals=extra_safe_globals, trust=trust)
    try:
        sd = official_v2_state_dict(ckpt)
        cfg = official_v2_config(sd, patch_size=patch_size, input_size=input_size, glance_size=glance_size,
                                 frame_order=frame_order, args=ckpt.get("args"))  # fmt: skip
        model = AdaFocusV2(**cfg)
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None
    mapped, dropped = place_official_keys(sd, model, map_official_v2_key, DROPPED_PREFIXES,
                                          f"official AdaFocusV2 checkpoint {source}")  # fmt: skip
    return ConversionResult(model, cfg, mapped, dropped, [])  # type: ignore[arg-type]  # an AdaFocusV2


def read_official(
    checkpoint: CheckpointArg, source: str | None, *, extra_safe_globals: Sequence[Any] = (), trust: bool = False
) -> tuple[dict[str, Any], str]:
    """``(checkpoint dict, its name for messages)`` of a path (read safely) or an already loaded dict."""
    if isinstance(checkpoint, Mapping):
        return dict(checkpoint), source or "the given checkpoint"
    ckpt = load_official_checkpoint(checkpoint, extra_safe_globals=extra_safe_globals, trust=trust)
    return ckpt, source or str(checkpoint)


def place_official_keys(
    sd: Mapping[str, Any], model: torch.nn.Module, map_key: Any, dropped_prefixes: tuple[str, ...], what: str
) -> tuple[dict[str, str], list[str]]:
    """Load every official key of ``sd`` into ``model`` through ``map_key(key, expand_blocks)``:
    ``(official -> ours, dropped keys)``; one :class:`CheckpointError` line (``what`` names the file)
    for keys with no place, of another shape, or of ``model`` that the file lacks."""
    own = model.state_dict()
    expand = {m[1] for k in sd if (m := _MBV2_BLOCK.fullmatch(k)) and m[2] == "6"}
    mapped: dict[str, str] = {}
    filled: set[str] = set()
    dropped, unplaced, bad = [], [], []
    for k, v in sd.items():
        new = map_key(k, expand)
        if k.startswith(dropped_prefixes):
            dropped.append(k)
        elif new is None or new not in own or new in filled:
            unplaced.append(k)
        elif not torch.is_tensor(v) or v.shape != own[new].shape:
            shape = tuple(v.shape) if torch.is_tensor(v) else type(v).__name__
            bad.append(f"{k} {shape} -> {new} {tuple(own[new].shape)}")
        else:
            mapped[k] = new
            filled.add(new)
    missing = [k for k in own if k not in filled]
    if unplaced or bad or missing:
        raise placement_error(type(model).__name__, what, unplaced, bad, missing)
    model.load_state_dict({mapped[k]: sd[k] for k in mapped}, strict=True)
    return mapped, dropped
