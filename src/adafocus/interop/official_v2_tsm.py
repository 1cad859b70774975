"""Convert checkpoints of the official AdaFocusV2 Something-Something / Jester code (LeapLabTHU/AdaFocusV2,
"Experiments on Sth-Sth and Jester") into this project's :class:`~adafocus.AdaFocusV2TSM`.

The official ``main.py`` saves ``{"epoch", "arch", "state_dict", "optimizer", "best_prec1"}`` where
``state_dict`` is a ``DataParallel`` ``AdaFocus``'s (keys prefixed ``module.``; no ``args``): two TSM
``TSN`` s (``global_CNN``: their MobileNet-V2 on ``num_segments`` frames, ``local_CNN``: torchvision's
ResNet-50 on ``int(1.5 * num_segments)`` patches; each with ``new_fc`` and ``new_new_fc``) and
``policy_stn``, one ``nn.Sequential`` over the stacked glance maps. Files are read like V1 files
(:func:`~adafocus.interop.official.load_official_checkpoint`: ``weights_only`` plus an allow-list).

Key mapping (official key prefix -> ours; ``G = global_CNN.base_model.features``):

====================================================  ===============================================
``G.{0,18}.{0,1}.``                                   ``global_cnn.model.features.{0,18}.{0,1}.``
``G.1.conv.{0,1,3,4}.`` (expand ratio 1)              ``...features.1.conv.{0.0,0.1,1,2}.``
``G.i.conv.0.net.`` / ``G.i.conv.1.`` (shifted)       ``...features.i.conv.0.net.0.`` / ``...conv.0.net.1.``
``G.i.conv.{0,1,3,4,6,7}.`` (not shifted)             ``...features.i.conv.{0.0,0.1,1.0,1.1,2,3}.``
``local_CNN.base_model.`` (``layer*.conv1.net.``)      ``local_cnn.model.`` (same names)
``global_CNN.new_fc.weight`` / ``local_CNN.new_fc.``   ``classifier.fc_global.weight`` / ``classifier.fc_local.``
``global_CNN.new_fc.bias``                            added into ``classifier.fc_local.bias``
``{global,local}_CNN.new_new_fc.``                    ``{global,local}_fc.1.`` (auxiliary heads)
``policy_stn.{0,1,4,5}.``                             ``policy.encoder.{0,1,4,5}.``
``policy_stn.{7,8,10}.``                              ``policy.head.{0,1,3}.``
====================================================  ===============================================

The official eval output is ``global_logit + local_logit``, each ``new_fc`` of the features averaged
over its frames; f_C's global layer has no bias (:class:`~adafocus.models.classifier.FrameAverageClassifier`),
so the two biases, always summed, become ``fc_local``'s (exact). ``new_new_fc`` s' per-frame logits are
:meth:`~adafocus.AdaFocusV2TSM.auxiliary_logits` (their means: the official ``*_reg_logit``). The file
has no unused tensors (``base_model.fc`` / ``classifier`` are ``Dropout`` s); every key must be placed.

Read from the shapes: the classes, the glance frames (``policy_stn.0`` takes ``T x 1280`` channels), the
policy's widths (official 64 / 1024 / 512), the glance map side (checked against ``input_size``) and
whether the backbones have temporal shifts (``.net.`` keys; a run without ``--shift`` gets plain
backbones). Not in the weights: ``patch_size`` (required), ``local_frames`` (official ``int(1.5 T)``),
``input_size`` (224) and ``dropout`` (0.5, the README's; it only matters for fine-tuning).

Equivalence with the official eval forward (tests/test_interop_official_v2_tsm.py): TSM shift of
``C // 8`` channels before ``conv1`` of every ResNet block and the first conv of every residual
MobileNet-V2 block, one location per video from the sigmoid of ``policy_stn``, the ``affine_grid`` /
``grid_sample`` crop (:mod:`~adafocus.interop.official_v2`). The official loader samples the glance and
the focus frames separately: pass the glance frames as ``glance_input=`` for its exact outputs.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..errors import CheckpointError
from ..models.adafocus_v2 import AdaFocusV2TSM
from .official import _LEAVES, _RESNETS, CheckpointArg, ConversionResult
from .official_v2 import _need, checked_state_dict, has_keys, place_official_keys, read_official

_G, _L = "global_CNN.base_model.", "local_CNN.base_model."
_FOLDED = "global_CNN.new_fc.bias"  # added into local_CNN.new_fc.bias (classifier.fc_local.bias)
_BLOCK = re.compile(r"global_CNN\.base_model\.features\.(\d+)\.conv\.(\d+)\.(net\.)?(.+)")
_EXPAND = {"0": "0.0", "1": "0.1", "3": "1.0", "4": "1.1", "6": "2", "7": "3"}
_DEPTHWISE = {"0": "0.0", "1": "0.1", "3": "1", "4": "2"}  # expand ratio 1 (features.1), never shifted
_POLICY = {"0": "encoder.0", "1": "encoder.1", "4": "encoder.4", "5": "encoder.5", "7": "head.0", "8": "head.1",
           "10": "head.3"}  # fmt: skip
_RENAMES = (
    (_G + "features.", "global_cnn.model.features."),
    (_L, "local_cnn.model."),
    ("global_CNN.new_fc.weight", "classifier.fc_global.weight"),
    ("local_CNN.new_fc.", "classifier.fc_local."),
    ("global_CNN.new_new_fc.", "global_fc.1."),
    ("local_CNN.new_new_fc.", "local_fc.1."),
)
_TSM_RESNETS = {"resnet18": "tsm_resnet18", "resnet50": "tsm_resnet50"}  # the registered TSM trunks


def is_official_v2_tsm(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint (``{"state_dict": ...}`` or a bare state_dict) is an official AdaFocusV2
    Sth-Sth / Jester one (``policy_stn.*`` beside ``TSN`` backbones, ``*_CNN.base_model.*``)."""
    return has_keys(checkpoint, ("policy_stn.",)) and has_keys(checkpoint, (_G, _L))


def official_v2_tsm_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The ``AdaFocus``-level state_dict of an official V2 Sth-Sth checkpoint, ``module.`` removed."""
    return checked_state_dict(checkpoint, is_official_v2_tsm(checkpoint), "AdaFocusV2 Sth-Sth/Jester",
                              "'state_dict' with policy_stn.* and global_CNN.base_model.* keys (as saved by the "
                              "official 'Experiments on Sth-Sth and Jester' main.py)")  # fmt: skip


def _local_backbone(sd: Mapping[str, Any], shifted: bool) -> str:
    blocks = tuple(len({k.removeprefix(_L).split(".")[1] for k in sd if k.startswith(f"{_L}layer{i}.")})
                   for i in (1, 2, 3, 4))  # fmt: skip
    kind = "bottleneck" if any(k.startswith(f"{_L}layer1.0.conv3.") for k in sd) else "basic"
    name = _RESNETS.get((kind, blocks))
    if name is None:
        raise ValueError(f"local_CNN.base_model is a ResNet with {kind} blocks {blocks}: not a torchvision depth")
    if shifted and name not in _TSM_RESNETS:
        raise ValueError(f"local_CNN.base_model is a TSM {name}: adafocus has TSM trunks for {sorted(_TSM_RESNETS)}")
    return _TSM_RESNETS[name] if shifted else name


def official_v2_tsm_config(
    sd: Mapping[str, Any],
    *,
    patch_size: int | None = None,
    input_size: int | None = None,
    local_frames: int | None = None,
    args: Any = None,
) -> dict[str, Any]:
    """:class:`~adafocus.AdaFocusV2TSM` keyword arguments matching an official V2 Sth-Sth state_dict.

    Shapes give the classes, the glance frames, the widths, the glance map side and the temporal
    shifts (see the module doc); ``patch_size`` comes from ``patch_size`` or the file's ``args``,
    ``input_size`` (224), ``local_frames`` (``int(1.5 * glance frames)``) and ``dropout`` (0.5) likewise.
    """
    argd = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    patch_size = patch_size or argd.get("patch_size")
    if not patch_size:
        raise ValueError("patch_size is not stored in the official weights: pass it (--patch-size, e.g. 144)")
    input_size = int(input_size or argd.get("input_size") or 224)
    for name, ok in (("shift_div", argd.get("shift_div", 8) == 8), ("temporal_pool", not argd.get("temporal_pool")),
                     ("non_local", not argd.get("non_local"))):  # fmt: skip
        if not ok:
            raise ValueError(f"the file's args.{name}={argd[name]!r}: adafocus' TSM backbones shift C // 8 channels, "
                             "without temporal pooling or non-local blocks")  # fmt: skip
    if any(k.startswith(_G + "layer1.") for k in sd):
        raise ValueError("global_CNN.base_model is a ResNet: the official Sth-Sth glance is a MobileNet-V2")
    heads = [int(m[1]) for k in sd if (m := re.fullmatch(r"global_CNN\.base_model\.features\.(\d+)\.0\.weight", k))]
    if not heads:
        raise ValueError("official checkpoint lacks global_CNN.base_model.features.* (the MobileNet-V2 glance)")
    d_g = _need(sd, f"{_G}features.{max(heads)}.0.weight").shape[0]
    g_shift = any(k.startswith(_G) and ".net." in k for k in sd)
    l_shift = any(k.startswith(_L) and ".net." in k for k in sd)
    if g_shift != l_shift:
        raise ValueError(f"only the {'glance' if g_shift else 'local'} backbone has temporal shifts (.net. keys): "
                         "the official code shifts both or neither")  # fmt: skip
    conv, lin = _need(sd, "policy_stn.0.weight"), _need(sd, "policy_stn.4.weight")
    frames, rest = divmod(conv.shape[1], d_g)
    if rest or conv.dim() != 4:
        raise ValueError(f"policy_stn.0.weight {tuple(conv.shape)} does not take stacked {d_g}-channel glance maps")
    side = math.isqrt(lin.shape[1] // conv.shape[0])
    if side * side * conv.shape[0] != lin.shape[1]:
        raise ValueError(f"policy_stn.4.weight {tuple(lin.shape)} does not take a square map of {conv.shape[0]} "
                         "channels")  # fmt: skip
    if math.ceil(input_size / 32) != side:
        raise ValueError(f"policy_stn.4.weight takes a {side}x{side} glance map, {input_size}-pixel frames give "
                         f"{math.ceil(input_size / 32)}x{math.ceil(input_size / 32)}: pass the official input_size "
                         f"(--input-size, {32 * side} for this file)")  # fmt: skip
    return dict(
        num_classes=_need(sd, "global_CNN.new_fc.weight").shape[0],
        global_backbone="tsm_mobilenet_v2" if g_shift else "mobilenet_v2",
        local_backbone=_local_backbone(sd, l_shift), patch_size=int(patch_size), input_size=input_size,
        global_frames=frames, local_frames=int(local_frames or int(frames * 1.5)),
        policy_hidden_dim=lin.shape[0], policy_head_dim=_need(sd, "policy_stn.7.weight").shape[0],
        policy_channels=conv.shape[0], dropout=float(argd.get("dropout", 0.5)),
    )  # fmt: skip


def official_v2_tsm_key_map(sd: Mapping[str, Any]) -> Callable[[str, Any], str | None]:
    """``map_key(official key, _) -> our key or None`` for ``sd``: a MobileNet-V2 block's layers are
    numbered by whether it has an expansion layer (``conv.6``) and a temporal shift (``conv.0.net.``)."""
    expand = {m[1] for k in sd if (m := _BLOCK.fullmatch(k)) and m[2] == "6"}
    shifted = {m[1] for k in sd if (m := _BLOCK.fullmatch(k)) and m[2] == "0" and m[3]}

    def map_key(key: str, _: Any = None) -> str | None:
        if m := _BLOCK.fullmatch(key):
            block, layer, net, leaf = m[1], m[2], bool(m[3]), m[4]
            if net and layer != "0":
                return None  # the official code shifts only a block's first conv
            if block in shifted and layer in ("0", "1") and net == (layer == "0"):
                part = "0.net.0" if layer == "0" else "0.net.1"
            else:
                part = None if net else (_EXPAND if block in expand else _DEPTHWISE).get(layer)
            return f"global_cnn.model.features.{block}.conv.{part}.{leaf}" if part else None
        if m := re.fullmatch(r"policy_stn\.(\d+)\.(.+)", key):
            return f"policy.{_POLICY[m[1]]}.{m[2]}" if m[1] in _POLICY else None
        for src, dst in _RENAMES:
            if key.startswith(src):
                return dst + key.removeprefix(src)
        return None

    return map_key


def convert_official_v2_tsm_checkpoint(
    checkpoint: CheckpointArg,
    *,
    patch_size: int | None = None,
    input_size: int | None = None,
    local_frames: int | None = None,
    source: str | None = None,
    extra_safe_globals: Sequence[Any] = (),
    trust: bool = False,
) -> ConversionResult:
    """Convert an official AdaFocusV2 Sth-Sth / Jester checkpoint (path or loaded dict) into an
    :class:`~adafocus.AdaFocusV2TSM`.

    Args:
        checkpoint: ``.pth.tar`` path, the loaded ``{"state_dict": ...}`` dict, or a bare state_dict.
        patch_size / input_size / local_frames: see :func:`official_v2_tsm_config`.
        source: the file's name in messages (default: the path, or "the given checkpoint").
        extra_safe_globals / trust: see :func:`~adafocus.interop.official.load_official_checkpoint`.

    Returns a :class:`~adafocus.interop.official.ConversionResult` whose ``model`` is an ``AdaFocusV2TSM``
    (as built: training mode), ``mapped`` every official key (``global_CNN.new_fc.bias`` ->
    ``classifier.fc_local.bias``, into which it is added), ``dropped`` and ``missing`` empty.

    Raises:
        CheckpointError: one line naming the file and every official key with no place, every
            shape mismatch and every adafocus key the checkpoint does not fill (the first ten of each).
    """
    ckpt, source = read_official(checkpoint, source, extra_safe_globals=extra_safe_globals, trust=trust)
    try:
        sd = official_v2_tsm_state_dict(ckpt)
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None
    map_key = official_v2_tsm_key_map(sd)
    try:
        cfg = official_v2_tsm_config(sd, patch_size=patch_size, input_size=input_size, local_frames=local_frames,
                                     args=ckpt.get("args"))  # fmt: skip
        g_bias, l_bias = _need(sd, _FOLDED), _need(sd, "local_CNN.new_fc.bias")
        if g_bias.shape != l_bias.shape:
            raise ValueError(f"{_FOLDED} {tuple(g_bias.shape)} and local_CNN.new_fc.bias {tuple(l_bias.shape)} differ")
        model = AdaFocusV2TSM(**cfg)
    except ValueError as err:  # name the keys with no place too: a renamed key is the usual cause
        strays = [k for k in sd if k != _FOLDED and (map_key(k) is None or k.rsplit(".", 1)[-1] not in _LEAVES)]
        raise CheckpointError(f"{source}: {err}" + (f"; official keys with no place in AdaFocusV2TSM: {strays[:10]}"
                                                    if strays else "")) from None  # fmt: skip
    # the two heads' logits are always summed: one bias carries both (f_C's global layer has none)
    folded = {k: v for k, v in sd.items() if k != _FOLDED}
    folded["local_CNN.new_fc.bias"] = l_bias + g_bias
    mapped, dropped = place_official_keys(folded, model, map_key, (),
                                          f"official AdaFocusV2 Sth-Sth checkpoint {source}")  # fmt: skip
    mapped[_FOLDED] = "classifier.fc_local.bias"
    return ConversionResult(model, cfg, mapped, dropped, [])  # type: ignore[arg-type]  # an AdaFocusV2TSM
