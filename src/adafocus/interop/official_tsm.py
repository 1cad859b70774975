"""Convert checkpoints of the official AdaFocus V1 Something-Something code (blackfeather-wang/AdaFocus,
"Experiments on Something-Something V1&V2") into this project's :class:`~adafocus.AdaFocusTSM`.

The official ``stage2.py`` / ``stage3.py`` save ``{"epoch", "model_state_dict", "glancer", "focuser",
"fc", "policy", "acc", "best_acc", "optimizer"}``: ``model_state_dict`` is the ``GFV`` module's, the
other entries are the state_dicts of ``GFV.glancer`` / ``GFV.focuser`` / ``GFV.classifier`` and of
the PPO actor-critic ``GFV.focuser.policy.policy``. PPO is not an ``nn.Module``, so the policy is
*only* in ``policy`` (``evaluate.py`` loads ``glancer`` / ``focuser`` / ``fc`` / ``policy``). Files are
read like V1 files (:func:`~adafocus.interop.official.load_official_checkpoint`: ``weights_only``
plus an allow-list). The entries are merged under the names below (``fc`` as ``classifier.``,
``policy`` as ``policy.``); ``model_state_dict`` duplicates ``glancer`` / ``focuser`` / ``fc`` and
must agree with them.

Every official script replaces ``focuser.net.base_model`` (a torchvision ResNet with the TSM
``blockres`` shifts) by ``nn.Sequential(*children[:-1])`` before it loads or saves, so the released
files number the focuser's layers (``0`` conv1, ``1`` bn1, ``4..7`` layer1..4; relu, maxpool and
avgpool have no weights) and hold no ImageNet ``fc``. A ``GFV`` saved without that step has the
names instead, and its ``base_model.fc`` (the 1000-way head, never used by the AdaFocus forward) is
dropped. Key mapping (official key -> ours):

==========================================================  ==========================================
``glancer.net.features.{0,18}.{0,1}.`` (tonylins MN2)       ``global_cnn.model.features.{0,18}.{0,1}.``
``glancer.net.features.1.conv.{0,1,3,4}.`` (expand 1)       ``...features.1.conv.{0.0,0.1,1,2}.``
``glancer.net.features.i.conv.0.net.`` / ``conv.1.``         ``...features.i.conv.0.net.0.`` / ``.0.net.1.``
``glancer.net.features.i.conv.{0,1,3,4,6,7}.`` (no shift)    ``...features.i.conv.{0.0,0.1,1.0,1.1,2,3}.``
``glancer.net.classifier.``                                 ``global_head.`` (f_G's frame classifier)
``focuser.net.base_model.{0,1,4,5,6,7}.``                   ``local_cnn.model.{conv1,bn1,layer1..4}.``
``focuser.net.base_model.{conv1,bn1,layer1..4}.``           ``local_cnn.model.*`` (same names)
``focuser.net.base_model.fc.``                              dropped (ImageNet head, unused)
``classifier.`` (the ``fc`` entry)                          ``classifier.fc_local.``
``policy.state_encoder.N.``                                 ``policy.encoder.N.`` (0 conv, 1 bn, 4 linear, 5 bn)
``policy.gru.`` / ``policy.actor.0.`` / ``policy.critic.0.``  ``policy.gru.`` / ``policy.actor.`` / ``policy.critic.``
==========================================================  ==========================================

The MobileNet-V2 keys go through :func:`~adafocus.interop.official_v2_tsm.official_v2_tsm_key_map`
(the same tonylins layout, with the same TemporalShift placement: ``conv[0]`` of every residual block
with an expansion layer). Read from the shapes: the classes, the glance frames per decision (the
policy's conv takes ``T_G / S x 1280`` channels), the policy's widths and BatchNorms
(``actorcritic_with_bn``), the glance map side and whether the backbones shift (``.net.`` keys). Not in
the weights (from the keyword arguments or a saved ``args``, else the released runs' values):
``patch_size`` (required; 144 / 160 / 176), ``local_frames`` (``int(1.5 T_G)`` = 12),
``decisions_per_video`` (``video_div``, 1), ``input_size`` (224), ``action_std`` (0.25) and
``dropout`` (0.5; only fine-tuning sees it).

Equivalence with the official eval forward (``evaluate.py``: ``glance``, then ``action_stage2`` with
``training=False``; tests/test_interop_official_tsm.py): TSM glance on the 8 glance frames, their maps
stacked on channels, the policy's ``action_mean`` (eval BatchNorm, zero GRU state), the
``floor(a * (224 - P))`` crop of all 12 focus frames, TSM f_L, ``fc`` averaged over the frames plus
the glancer head averaged over the glance frames. The official loader samples the glance and the
focus frames separately: pass the glance frames as ``glance_input=``. ``glance_size`` must equal
``input_size`` (the official runs: 224) for exact outputs: the official code resizes glance inputs
by nearest-neighbour interpolation, adafocus bilinearly. Discrete-PPO files (``ppo_continuous=False``:
a softmax over G x G candidates, ``standard_actions_set``) convert to ``policy_type="categorical"`` with
``grid_size=G``: the official candidates ``(i/(G-1), j/(G-1))``, row-major, are ours.
"""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from ..errors import CheckpointError
from ..models.adafocus_tsm import AdaFocusTSM
from .official import _LEAVES, _RESNETS, CheckpointArg, ConversionResult
from .official_v2 import _need, place_official_keys, read_official
from .official_v2_tsm import _TSM_RESNETS, official_v2_tsm_key_map

#: Official tensors the AdaFocus forward never uses (dropped, listed in ``ConversionResult.dropped``).
DROPPED_PREFIXES = ("focuser.net.base_model.fc.",)

_GLANCER, _FOCUSER, _POLICY = "glancer.net.", "focuser.net.base_model.", "policy."
_V2_GLANCE = "global_CNN.base_model."  # official_v2_tsm's name for the same tonylins MobileNet-V2
# official GFV.state_dict() part -> the checkpoint entry holding that module's own state_dict
_ENTRIES = (("glancer", "glancer."), ("focuser", "focuser."), ("fc", "classifier."), ("policy", _POLICY))
_SEQUENTIAL = {"0": "conv1", "1": "bn1", "4": "layer1", "5": "layer2", "6": "layer3", "7": "layer4"}
_POLICY_PARTS = {"gru.": "gru.", "actor.0.": "actor.", "critic.0.": "critic."}
_RESNET_STEM = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.", "layer4.")


def _strip(key: Any) -> str:
    return str(key).removeprefix("module.")


def _entry(checkpoint: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = checkpoint.get(name)
    return value if isinstance(value, Mapping) else None


def is_official_tsm(checkpoint: Mapping[str, Any]) -> bool:
    """Whether a loaded checkpoint is an official AdaFocus V1 Something-Something one: a ``focuser``
    entry (or ``model_state_dict`` / bare ``GFV`` state_dict) with TSN ``net.base_model.*`` keys."""
    focuser = _entry(checkpoint, "focuser")
    if focuser is not None and any(_strip(k).startswith("net.base_model.") for k in focuser):
        return True
    gfv = _entry(checkpoint, "model_state_dict") or checkpoint
    return any(_strip(k).startswith(_FOCUSER) for k in gfv)


def official_tsm_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The ``GFV``-level state_dict of an official Sth-Sth checkpoint plus its ``policy.*`` keys
    (``module.`` removed): ``model_state_dict`` (or a bare ``GFV`` state_dict) merged with the
    ``glancer`` / ``focuser`` / ``fc`` / ``policy`` entries, which must agree where both have a key."""
    if not is_official_tsm(checkpoint):
        raise CheckpointError(
            f"not an official AdaFocus Something-Something checkpoint: top-level keys "
            f"{sorted(map(str, checkpoint))[:12]}; expected 'glancer'/'focuser'/'fc'/'policy' entries with "
            "focuser net.base_model.* keys (as saved by the official stage2.py / stage3.py)"
        )
    gfv = _entry(checkpoint, "model_state_dict")
    if gfv is None and any(_strip(k).startswith(_FOCUSER) for k in checkpoint):
        gfv = checkpoint  # a bare GFV state_dict
    sd = {_strip(k): v for k, v in (gfv or {}).items()}
    for name, prefix in _ENTRIES:
        for k, v in (_entry(checkpoint, name) or {}).items():
            key = prefix + _strip(k)
            old = sd.get(key)
            if torch.is_tensor(old) and torch.is_tensor(v) and (old.shape != v.shape or not torch.equal(old, v)):
                raise CheckpointError(f"the '{name}' entry's {_strip(k)} differs from model_state_dict's {key}")
            sd[key] = v
    return sd


def _focuser_name(key: str) -> str | None:
    """A focuser key in torchvision names (``base_model.4.0.conv1.net.weight`` -> ``layer1.0.conv1.net.weight``)."""
    rest = key.removeprefix(_FOCUSER)
    if rest.startswith(_RESNET_STEM):
        return rest
    index, _, tail = rest.partition(".")
    return f"{_SEQUENTIAL[index]}.{tail}" if index in _SEQUENTIAL and tail else None


def _local_backbone(sd: Mapping[str, Any]) -> str:
    names = [n for k in sd if k.startswith(_FOCUSER) and (n := _focuser_name(k))]
    blocks = tuple(len({n.split(".")[1] for n in names if n.startswith(f"layer{i}.")}) for i in (1, 2, 3, 4))
    kind = "bottleneck" if any(n.startswith("layer1.0.conv3.") for n in names) else "basic"
    name = _RESNETS.get((kind, blocks))
    if name is None:
        raise ValueError(f"focuser.net.base_model is a ResNet with {kind} blocks {blocks}: not a torchvision depth")
    if not any(".net." in n for n in names):
        return name
    if name not in _TSM_RESNETS:
        raise ValueError(f"focuser.net.base_model is a TSM {name}: adafocus has TSM trunks for {sorted(_TSM_RESNETS)}")
    return _TSM_RESNETS[name]


def _glance_backbone(sd: Mapping[str, Any]) -> tuple[str, int]:
    """``(backbone name, channels of its last feature map)`` of the official glancer."""
    heads = [int(m[1]) for k in sd if (m := re.fullmatch(r"glancer\.net\.features\.(\d+)\.0\.weight", k))]
    if not heads:
        raise ValueError("official checkpoint lacks glancer.net.features.* (the MobileNet-V2 glancer)")
    blocks = {k.split(".")[3] for k in sd if k.startswith(_GLANCER + "features.")}
    name = "tsm_mobilenet_v2" if any(".net." in k for k in sd if k.startswith(_GLANCER)) else "mobilenet_v2"
    if len(blocks) != 19:
        raise ValueError(f"glancer.net.features has {len(blocks)} blocks, torchvision's MobileNet-V2 19")
    return name, _need(sd, f"{_GLANCER}features.{max(heads)}.0.weight").shape[0]


def official_tsm_config(
    sd: Mapping[str, Any],
    *,
    patch_size: int | None = None,
    input_size: int | None = None,
    glance_size: int | None = None,
    local_frames: int | None = None,
    decisions_per_video: int | None = None,
    args: Any = None,
) -> dict[str, Any]:
    """:class:`~adafocus.AdaFocusTSM` keyword arguments matching an official Sth-Sth state_dict.

    Shapes give the classes, the glance frames, the policy's widths and BatchNorms and the temporal
    shifts (see the module doc); ``patch_size``, ``input_size`` (224), ``glance_size`` (``input_size``),
    ``local_frames`` (``int(1.5 T_G)``), ``decisions_per_video`` (1), ``action_std`` (0.25) and ``dropout``
    (0.5) come from the arguments or the file's ``args``.
    """
    argd = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    patch_size = patch_size or argd.get("patch_size")
    if not patch_size:
        raise ValueError("patch_size is not stored in the official weights: pass it (--patch-size, e.g. 144)")
    checks = (("shift_div", argd.get("shift_div", 8) == 8), ("temporal_pool", not argd.get("temporal_pool")),
              ("non_local", not argd.get("non_local")), ("with_glancer", argd.get("with_glancer", True)),
              ("random_patch", not argd.get("random_patch")))  # fmt: skip
    for name, ok in checks:
        if not ok:
            raise ValueError(f"the file's args.{name}={argd[name]!r}: AdaFocusTSM follows the released runs (TSM "
                             "shift of C // 8 channels, no temporal pooling / non-local blocks, glancer logits "
                             "added, a learned policy)")  # fmt: skip
    if not any(k.startswith(_POLICY) for k in sd):
        raise ValueError("the checkpoint has no 'policy' entry (PPO's actor-critic is saved only there; a stage-1 "
                         "or model_state_dict-only file?)")  # fmt: skip
    actor = _need(sd, "policy.actor.0.weight")
    # discrete PPO (ppo_continuous=False): a softmax over the G x G candidates; its logits are ours
    discrete = argd.get("ppo_continuous") is False or actor.shape[0] != 2
    grid = math.isqrt(actor.shape[0])
    if discrete and grid * grid != actor.shape[0]:
        raise ValueError(f"policy.actor.0.weight {tuple(actor.shape)}: {actor.shape[0]} discrete actions are not a "
                         "square grid of candidates")  # fmt: skip
    conv = _need(sd, "policy.state_encoder.0.weight")
    if conv.dim() != 4:
        raise ValueError(f"policy.state_encoder.0.weight is {tuple(conv.shape)}: policy_conv=False is not supported")
    batch_norm = "policy.state_encoder.1.weight" in sd  # actorcritic_with_bn: conv, bn, relu, flatten, linear, bn
    lin = _need(sd, f"policy.state_encoder.{4 if batch_norm else 3}.weight")
    side = math.isqrt(lin.shape[1] // conv.shape[0])
    if side * side * conv.shape[0] != lin.shape[1]:
        raise ValueError(f"policy.state_encoder linear {tuple(lin.shape)} does not take a square map of "
                         f"{conv.shape[0]} channels")  # fmt: skip
    input_size = int(input_size or argd.get("input_size") or 224)
    glance_size = int(glance_size or argd.get("glance_size") or input_size)
    if math.ceil(glance_size / 32) != side:
        raise ValueError(f"the policy takes a {side}x{side} glance map, {glance_size}-pixel glances give "
                         f"{math.ceil(glance_size / 32)}x{math.ceil(glance_size / 32)}: pass the official sizes "
                         f"(--input-size, {32 * side} for this file)")  # fmt: skip
    g_name, d_g = _glance_backbone(sd)
    per_decision, rest = divmod(conv.shape[1], d_g)
    if rest or not per_decision:
        raise ValueError(f"policy.state_encoder.0.weight {tuple(conv.shape)} does not take stacked {d_g}-channel "
                         "glance maps")  # fmt: skip
    s = int(decisions_per_video or argd.get("video_div") or 1)
    global_frames = per_decision * s
    if argd.get("num_segments_glancer", global_frames) != global_frames:
        raise ValueError(f"the policy takes {per_decision} glance maps per decision, args.num_segments_glancer="
                         f"{argd['num_segments_glancer']} with video_div={s}")  # fmt: skip
    hidden = _need(sd, "policy.gru.weight_hh_l0").shape[1]
    return dict(
        num_classes=_need(sd, "classifier.weight").shape[0], global_backbone=g_name,
        local_backbone=_local_backbone(sd), patch_size=int(patch_size), input_size=input_size,
        glance_size=glance_size, global_frames=global_frames,
        local_frames=int(local_frames or argd.get("num_segments_focuser") or int(1.5 * global_frames)),
        policy_hidden_dim=hidden, policy_channels=conv.shape[0], dropout=float(argd.get("dropout", 0.5)),
        policy_type="categorical" if discrete else "gaussian", action_std=float(argd.get("action_std", 0.25)),
        policy_batch_norm=batch_norm, decisions_per_video=s, global_head="glancer",
        **({"grid_size": grid} if discrete else {}),
    )  # fmt: skip


def official_tsm_key_map(sd: Mapping[str, Any]) -> Callable[[str, Any], str | None]:
    """``map_key(official key, _) -> our key or None`` for ``sd`` (see the module doc's table)."""
    glance = official_v2_tsm_key_map({_V2_GLANCE + k.removeprefix(_GLANCER): v for k, v in sd.items()
                                      if k.startswith(_GLANCER + "features.")})  # fmt: skip

    def map_key(key: str, _: Any = None) -> str | None:
        if key.startswith(_GLANCER + "features."):
            return glance(_V2_GLANCE + key.removeprefix(_GLANCER))
        if key.startswith(_GLANCER + "classifier."):
            return "global_head." + key.removeprefix(_GLANCER + "classifier.")
        if key.startswith(_FOCUSER):
            name = _focuser_name(key)
            return None if name is None else "local_cnn.model." + name
        if key.startswith("classifier."):
            return "classifier.fc_local." + key.removeprefix("classifier.")
        rest = key.removeprefix(_POLICY)
        if rest != key:
            if m := re.fullmatch(r"state_encoder\.(\d+)\.(.+)", rest):
                return f"policy.encoder.{m[1]}.{m[2]}"
            for src, dst in _POLICY_PARTS.items():
                if rest.startswith(src):
                    return "policy." + dst + rest.removeprefix(src)
        return None

    return map_key


def convert_official_tsm_checkpoint(
    checkpoint: CheckpointArg,
    *,
    patch_size: int | None = None,
    input_size: int | None = None,
    glance_size: int | None = None,
    local_frames: int | None = None,
    decisions_per_video: int | None = None,
    source: str | None = None,
    extra_safe_globals: Sequence[Any] = (),
    trust: bool = False,
) -> ConversionResult:
    """Convert an official AdaFocus V1 Something-Something checkpoint (path or loaded dict) into an
    :class:`~adafocus.AdaFocusTSM`.

    Args:
        checkpoint: ``.pth.tar`` path, the loaded checkpoint dict, or a bare ``GFV`` state_dict plus
            ``policy.*`` keys.
        patch_size / input_size / glance_size / local_frames / decisions_per_video: see
            :func:`official_tsm_config`.
        source: the file's name in messages (default: the path, or "the given checkpoint").
        extra_safe_globals / trust: see :func:`~adafocus.interop.official.load_official_checkpoint`.

    Returns a :class:`~adafocus.interop.official.ConversionResult` whose ``model`` is an ``AdaFocusTSM``
    (as built: training mode), ``mapped`` every official key of the merged state_dict
    (:func:`official_tsm_state_dict`) but the unused ImageNet head (``dropped``), ``missing`` empty.

    Raises:
        CheckpointError: one line naming the file and every official key with no place, every
            shape mismatch and every adafocus key the checkpoint does not fill (the first ten of each).
    """
    ckpt, source = read_official(checkpoint, source, extra_safe_globals=extra_safe_globals, trust=trust)
    try:
        sd = official_tsm_state_dict(ckpt)
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None
    map_key = official_tsm_key_map(sd)
    try:
        cfg = official_tsm_config(sd, patch_size=patch_size, input_size=input_size, glance_size=glance_size,
                                  local_frames=local_frames, decisions_per_video=decisions_per_video,
                                  args=ckpt.get("args"))  # fmt: skip
        model = AdaFocusTSM(**cfg)
    except ValueError as err:  # name the keys with no place too: a renamed key is the usual cause
        strays = [k for k in sd if not k.startswith(DROPPED_PREFIXES)
                  and (map_key(k) is None or k.rsplit(".", 1)[-1] not in _LEAVES)]  # fmt: skip
        raise CheckpointError(f"{source}: {err}" + (f"; official keys with no place in AdaFocusTSM: {strays[:10]}"
                                                    if strays else "")) from None  # fmt: skip
    mapped, dropped = place_official_keys(sd, model, map_key, DROPPED_PREFIXES,
                                          f"official AdaFocus Sth-Sth checkpoint {source}")  # fmt: skip
    return ConversionResult(model, cfg, mapped, dropped, [])  # type: ignore[arg-type]  # an AdaFocusTSM
