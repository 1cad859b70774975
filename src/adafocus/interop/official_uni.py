"""Convert checkpoints of the official Uni-AdaFocus code (LeapLabTHU/Uni-AdaFocus, "Uni-AdaFocus with
Experiments on ActivityNet, FCVID and Mini-Kinetics") into this project's :class:`~adafocus.UniAdaFocus`.

The official ``main.py`` / ``main_semiAMP.py`` save ``{"epoch", "state_dict", "optimizer", "best_acc1"
[, "scaler"]}`` where ``state_dict`` is a ``DistributedDataParallel`` ``AdaFocus``'s (keys prefixed
``module.``; no ``args``). Files are read like V1 / V2 files
(:func:`~adafocus.interop.official.load_official_checkpoint`: ``weights_only`` plus an allow-list).

Key mapping (official key prefix -> ours); the backbones and the two frame heads are named as in the
official AdaFocusV2 code and go through :func:`~adafocus.interop.official_v2.map_official_v2_key`:

================================================================  ==========================================
``global_CNN.features.*`` (their MobileNet-V2, ``conv.0..7``)      ``global_cnn.model.features.*`` (torchvision)
``local_CNN.{conv1,bn1,layer1..4}.`` (ResNet-50)                   ``local_cnn.model.*``
``global_CNN_fc.1.`` / ``local_CNN_fc.1.`` / ``aux_fc.``           ``global_fc.1.`` / ``local_fc.1.`` / ``aux_fc.``
``spatial_policy.encoder.{0,1,3,4,6,7,9}.``                        ``spatial_policy.encoder.*`` (same)
``temporal_policy.Tconv.{0,1,3,4,6}.``                             ``temporal_policy.score.*`` (same indices)
``classifier.{global,local}_mlp.layers.{0,1}.``                    ``classifier.{global,local}_mlp.{0,1}.``
``classifier.global_classifiers.i.1.``                             ``classifier.global_heads.i.1.``
``classifier.local_classifiers.i.1.``                              ``classifier.local_heads.i.1.``
================================================================  ==========================================

Uni-AdaFocus-TSM files (``Uni-AdaFocus-TSM with Experiments on Sth-Sth V1&V2 and Jester``: TSN backbones,
``*_CNN.base_model.*``) are refused: adafocus has no model for them (see :func:`official_uni_config`).

Dropped (documented unused): ``global_CNN.classifier.*`` (MobileNet-V2's ImageNet head) and
``local_CNN.fc.*``: the official forward calls only ``get_featmap`` / ``get_featvec``. Every other key
must be placed.

Read from the shapes: the classes, ``glance_segments`` / ``focus_segments`` (the number of global /
local heads), the policies' and the classifier's widths (official 128 / 64 / 4096), the local ResNet's
depth, and the e_G map side (the spatial policy's last kernel, official ``(1, 7, 7)``), checked against
``input_size``. Not in the weights: ``patch_size`` (required), ``num_segments`` (48), ``input_size``
(224) and ``temperature`` (1), taken from the arguments, else the file's ``args`` if it has them.

Equivalence with the official eval forward (tests/test_interop_official_uni.py): glance frames
``arange(N)[1::N // G]``, the spatial policy interpolated linearly in time, frames picked by the
inverse CDF of ``softmax(score / temperature)`` at ``(i + 1/2) / F``, the ``get_patch_grid_scalexy``
crop, the running-max ``PoolingClassifier``. The official crop hard-codes the window sides
``96 + s * (224 - 96)`` px; ours are ``min_side + s * (input_size - min_side)``: equal for the
official 224-pixel frames and ``min_side=96`` (the default). Its training-only auxiliary crop of e_G's
map hard-codes a 7 x 7 map and ``patch_size // 32``; ours uses the map's side and ``round(P / 32)``
(equal for the official settings). For ``N == G`` the official slice ``[1::1]`` gives G - 1 glance
frames (the official forward fails); ours glances at every frame.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import CheckpointError
from ..models.uni_adafocus import UniAdaFocus
from .official import CheckpointArg, ConversionResult
from .official_v2 import (
    _need,
    _resnet,
    checked_state_dict,
    has_keys,
    map_official_v2_key,
    place_official_keys,
    read_official,
)

#: Official heads the official forward never uses (dropped, listed in ``ConversionResult.dropped``).
UNI_DROPPED_PREFIXES = ("global_CNN.classifier.", "local_CNN.fc.")

_MARKS = ("spatial_policy.", "temporal_policy.", "classifier.global_classifiers.", "classifier.local_classifiers.")
_HEAD = re.compile(r"classifier\.(global|local)_classifiers\.(\d+)\.1\.(.+)")
_RENAMES = (
    ("aux_fc.", "aux_fc."),
    ("spatial_policy.encoder.", "spatial_policy.encoder."),
    ("temporal_policy.Tconv.", "temporal_policy.score."),
    ("classifier.global_mlp.layers.", "classifier.global_mlp."),
    ("classifier.local_mlp.layers.", "classifier.local_mlp."),
)
_V2_NAMED = ("global_CNN.", "global_CNN_fc.1.", "local_CNN.", "local_CNN_fc.1.")  # as in official AdaFocusV2


def is_official_uni(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint (``{"state_dict": ...}`` or a bare state_dict) is an official
    Uni-AdaFocus ActivityNet/FCVID/Mini-Kinetics one (it has ``spatial_policy.*`` / ``temporal_policy.*``
    / ``classifier.{global,local}_classifiers.*`` keys)."""
    return has_keys(checkpoint, _MARKS)


def official_uni_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The ``AdaFocus``-level state_dict of an official Uni-AdaFocus checkpoint, ``module.`` removed."""
    return checked_state_dict(checkpoint, is_official_uni(checkpoint), "Uni-AdaFocus",
                              "'state_dict' with spatial_policy.* / temporal_policy.* keys (as saved by the "
                              "official main.py)")  # fmt: skip


def _heads(sd: Mapping[str, Any], kind: str) -> int:
    heads = {int(m[2]) for k in sd if (m := _HEAD.fullmatch(k)) and m[1] == kind}
    if not heads or heads != set(range(len(heads))):
        raise ValueError(f"official classifier.{kind}_classifiers.* heads are {sorted(heads)}: expected 0..n-1")
    return len(heads)


def official_uni_config(
    sd: Mapping[str, Any],
    *,
    patch_size: int | None = None,
    input_size: int | None = None,
    num_segments: int | None = None,
    temperature: float | None = None,
    min_side: int = 96,
    args: Any = None,
) -> dict[str, Any]:
    """:class:`~adafocus.UniAdaFocus` keyword arguments matching an official Uni-AdaFocus state_dict.

    Shapes give the classes, the glance / focus segments, the widths and the local ResNet; ``patch_size``
    comes from ``patch_size`` or the file's ``args``; ``input_size`` (224), ``num_segments`` (48) and
    ``temperature`` (1) likewise, with those defaults. ``min_side``: the smallest window side (the
    official code hard-codes 96).
    """
    if any(k.startswith(("global_CNN.base_model.", "local_CNN.base_model.")) for k in sd):
        raise ValueError("this is an official Uni-AdaFocus-TSM (Sth-Sth/Jester, TSN backbones) checkpoint: adafocus "
                         "has no model for it (it needs TSM backbones, one 4-d window per video from a 3-D conv "
                         "over the stacked glance maps and TSN frame-average heads; UniAdaFocus is the "
                         "ActivityNet/FCVID/Mini-Kinetics model)")  # fmt: skip
    argd = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    patch_size = patch_size or argd.get("patch_size")
    if not patch_size:
        raise ValueError("patch_size is not stored in the official weights: pass it (--patch-size, e.g. 128)")
    input_size = int(input_size or argd.get("input_size") or 224)
    num_segments = int(num_segments or argd.get("num_segments") or 48)
    temperature = float(argd.get("temperature", 1.0) if temperature is None else temperature)
    if not any(k.startswith("global_CNN.features.") for k in sd):
        raise ValueError("official checkpoint lacks global_CNN.features.* (the MobileNet-V2 glance) weights")
    _need(sd, "local_CNN.conv1.weight")
    glance, focus = _heads(sd, "global"), _heads(sd, "local")
    for name, n in (("num_glance_segments", glance), ("num_focus_segments", focus)):
        if argd.get(name, n) != n:
            raise ValueError(f"the file's args.{name}={argd[name]} but its classifier has {n} heads")
    last = _need(sd, "spatial_policy.encoder.9.weight")
    if last.dim() != 5 or last.shape[0] != 4 or last.shape[2] != 1 or last.shape[3] != last.shape[4]:
        raise ValueError(f"spatial_policy.encoder.9.weight is {tuple(last.shape)}: expected (4, hidden, 1, h, h)")
    side = last.shape[-1]
    if math.ceil(input_size / 32) != side:
        raise ValueError(f"spatial_policy.encoder.9.weight takes a {side}x{side} glance map, {input_size}-pixel "
                         f"frames give {math.ceil(input_size / 32)}x{math.ceil(input_size / 32)}: pass the official "
                         f"input_size (--input-size, {32 * side} for this file)")  # fmt: skip
    return dict(
        num_classes=_need(sd, "classifier.global_classifiers.0.1.weight").shape[0], global_backbone="mobilenet_v2",
        local_backbone=_resnet(sd, "local_CNN."), patch_size=int(patch_size), input_size=input_size,
        num_segments=num_segments, glance_segments=glance, focus_segments=focus,
        spatial_hidden_dim=_need(sd, "spatial_policy.encoder.0.weight").shape[0],
        temporal_hidden_dim=_need(sd, "temporal_policy.Tconv.0.weight").shape[0], temperature=temperature,
        min_side=int(min_side), classifier_hidden_dim=_need(sd, "classifier.global_mlp.layers.0.weight").shape[0],
        dropout=float(argd.get("dropout", 0.2)),
    )  # fmt: skip


def map_official_uni_key(key: str, expand_blocks: set[str]) -> str | None:
    """Our key for official ``key`` (``None``: no place). ``expand_blocks``: the MobileNet-V2
    ``features`` indices whose block has an expansion layer (``conv.6``)."""
    if m := _HEAD.fullmatch(key):
        return f"classifier.{m[1]}_heads.{m[2]}.1.{m[3]}"
    for src, dst in _RENAMES:
        if key.startswith(src):
            return dst + key.removeprefix(src)
    return map_official_v2_key(key, expand_blocks) if key.startswith(_V2_NAMED) else None


def convert_official_uni_checkpoint(
    checkpoint: CheckpointArg,
    *,
    patch_size: int | None = None,
    input_size: int | None = None,
    num_segments: int | None = None,
    temperature: float | None = None,
    min_side: int = 96,
    source: str | None = None,
    extra_safe_globals: Sequence[Any] = (),
    trust: bool = False,
) -> ConversionResult:
    """Convert an official Uni-AdaFocus checkpoint (path or loaded dict) into a :class:`~adafocus.UniAdaFocus`.

    Args:
        checkpoint: ``.pth.tar`` path, the loaded ``{"state_dict": ...}`` dict, or a bare state_dict.
        patch_size / input_size / num_segments / temperature / min_side: see :func:`official_uni_config`.
        source: the file's name in messages (default: the path, or "the given checkpoint").
        extra_safe_globals / trust: see :func:`~adafocus.interop.official.load_official_checkpoint`.

    Returns a :class:`~adafocus.interop.official.ConversionResult` whose ``model`` is a ``UniAdaFocus``
    (as built: training mode), ``mapped`` every official key, ``dropped`` the unused heads
    (:data:`UNI_DROPPED_PREFIXES`) and ``missing`` empty.

    Raises:
        CheckpointError: one line naming the file and every official key with no place, every
            shape mismatch and every adafocus key the checkpoint does not fill (the first ten of each).
    """
    ckpt, source = read_official(checkpoint, source, extra_safe_globals=extra_safe_globals, trust=trust)
    try:
        sd = official_uni_state_dict(ckpt)
        cfg = official_uni_config(sd, patch_size=patch_size, input_size=input_size, num_segments=num_segments,
                                  temperature=temperature, min_side=min_side, args=ckpt.get("args"))  # fmt: skip
        model = UniAdaFocus(**cfg)
    except ValueError as err:
        raise CheckpointError(f"{source}: {err}") from None
    mapped, dropped = place_official_keys(sd, model, map_official_uni_key, UNI_DROPPED_PREFIXES,
                                          f"official Uni-AdaFocus checkpoint {source}")  # fmt: skip
    return ConversionResult(model, cfg, mapped, dropped, [])  # type: ignore[arg-type]  # a UniAdaFocus
