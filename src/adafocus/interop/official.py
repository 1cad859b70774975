"""Convert checkpoints of the official AdaFocus V1 code (blackfeather-wang/AdaFocus, "Experiments on
ActivityNet, FCVID and Mini-Kinetics") into this project's :class:`~adafocus.AdaFocus`.

The official ``main_dist.py`` saves a dict with ``model_state_dict`` (the whole ``GFV`` module) and
the copies ``glancer``/``focuser``/``fc``/``policy``, plus ``epoch``, ``acc``, ``best_acc``,
``scaler`` and ``optimizer``. Files are read with ``torch.load(weights_only=True)``; non-tensor
objects are admitted only from :data:`SAFE_GLOBAL_NAMES` (argparse namespaces, numpy scalars/arrays).

Key mapping (official ``GFV`` key prefix -> ours):

===============================================  ==============================
``glancer.net.features.``                        ``global_cnn.model.features.``
``focuser.net.{conv1,bn1,layer1..4}.``           ``local_cnn.model.*``
``focuser.policy.policy[_old].state_encoder.0.`` ``policy.encoder.0.``
``focuser.policy.policy[_old].state_encoder.3.`` ``policy.encoder.3.``
``focuser.policy.policy[_old].gru.``             ``policy.gru.``
``focuser.policy.policy[_old].actor.0.``         ``policy.actor.`` (softmax -> logits)
``focuser.policy.policy[_old].critic.0.``        ``policy.critic.``
``classifier.gru.`` / ``classifier.fc.``         ``classifier.gru.`` / ``classifier.fc.`` (``consensus: gru``)
``classifier.fc.`` (``LinearCLassifier``)        ``classifier.fc.`` of ``classifier="fc_probs"`` (``consensus: fc``)
``glancer.net.classifier.1.``, ``focuser.net.fc.`` dropped: stage-0 frame classifiers
===============================================  ==============================

Exact equivalence holds for the official inference path (policy argmax, ``floor(a * (H - P))``
crops, GRU classifier) when ``glance_size == input_size`` (the official default): the official code
resizes glance inputs with nearest-neighbour interpolation, ours bilinearly. ``consensus: fc`` files
(official ``LinearCLassifier``: dropout, one linear layer on ``[e_G, e_L]`` per frame, softmax, mean of
the probabilities over the frames; ``log`` of that mean is the output its ``NLLLoss`` and accuracy
use) become :class:`~adafocus.models.classifier.ProbabilityAverageClassifier`, whose step t is the
log of the mean probability over frames 1..t (the official output for t = T). The official code
trains such files in stage I only (``LinearCLassifier`` has no ``single_forward`` for stages II/III),
so they hold no policy: convert them with ``allow_missing=["policy."]`` (``--allow-missing-policy``).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from ..checkpoint import load_model, save_model
from ..errors import CheckpointError
from ..models.adafocus import AdaFocus
from ..serialization import read_checkpoint

CheckpointArg = str | os.PathLike | Mapping[str, Any]

#: Non-tensor globals an official checkpoint may hold that are safe to reconstruct.
SAFE_GLOBAL_NAMES: dict[str, str] = {
    "argparse.Namespace": "argparse.Namespace",
    "numpy.dtype": "numpy.dtype",
    "numpy.ndarray": "numpy.ndarray",
    "numpy._core.multiarray.scalar": "numpy._core.multiarray.scalar",
    "numpy.core.multiarray.scalar": "numpy._core.multiarray.scalar",
    "numpy._core.multiarray._reconstruct": "numpy._core.multiarray._reconstruct",
    "numpy.core.multiarray._reconstruct": "numpy._core.multiarray._reconstruct",
    **{f"numpy.dtypes.{n}DType": f"numpy.dtypes.{n}DType" for n in ("Float64", "Float32", "Int64", "Int32", "Bool")},
}

_POLICY_PARTS = {"state_encoder.0.": "encoder.0.", "state_encoder.3.": "encoder.3.", "gru.": "gru.",
                 "actor.0.": "actor.", "critic.0.": "critic."}  # fmt: skip
_DROPPED = ("glancer.net.classifier.", "focuser.net.fc.")
_LEAVES = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked",
           "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"}  # fmt: skip
_RESNETS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
            ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
            ("bottleneck", (3, 8, 36, 3)): "torchvision/resnet152"}  # fmt: skip


def _resolve(dotted: str) -> Any:
    module, _, name = dotted.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _allowed_globals(extra_safe_globals: Sequence[Any]) -> list[Any]:
    """:data:`SAFE_GLOBAL_NAMES` that exist in this numpy, plus the caller's."""
    allowed = list(extra_safe_globals)
    for name, target in SAFE_GLOBAL_NAMES.items():
        try:
            allowed.append((_resolve(target), name))
        except (ImportError, AttributeError):  # not in this numpy version
            pass
    return allowed


def load_official_checkpoint(
    path: str | os.PathLike, *, extra_safe_globals: Sequence[Any] = (), trust: bool = False
) -> dict[str, Any]:
    """Read an official checkpoint without blind unpickling.

    ``torch.load(weights_only=True)`` with :data:`SAFE_GLOBAL_NAMES` (argparse namespaces, numpy
    scalars/arrays) and ``extra_safe_globals`` (objects you trust) allowed; a file that holds any
    other object is refused with :class:`~adafocus.CheckpointError` naming them, as are missing,
    empty, truncated and garbage files. ``trust=True`` unpickles the file fully (it may run code).
    """
    obj = read_checkpoint(path, trust=trust, safe_globals=_allowed_globals(extra_safe_globals),
                          what="official checkpoint")  # fmt: skip
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not an official checkpoint dict")
    return dict(obj)


def official_state_dict(checkpoint: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The ``GFV``-level state_dict of an official checkpoint (``model_state_dict``, or the
    ``glancer``/``focuser``/``fc``/``policy`` parts, or a bare ``GFV`` state_dict)."""
    ckpt = dict(checkpoint)
    if isinstance(ckpt.get("model_state_dict"), Mapping):
        sd = dict(ckpt["model_state_dict"])
    elif any(isinstance(ckpt.get(k), Mapping) for k in ("glancer", "focuser", "fc")):
        sd = {}
        for part, prefix in (("glancer", "glancer."), ("focuser", "focuser."), ("fc", "classifier.")):
            sd.update({prefix + k: v for k, v in (ckpt.get(part) or {}).items()})
        if isinstance(ckpt.get("policy"), Mapping) and not any(k.startswith("focuser.policy.") for k in sd):
            sd.update({"focuser.policy.policy." + k: v for k, v in ckpt["policy"].items()})
    elif any(k.removeprefix("module.").startswith(("glancer.", "focuser.")) for k in ckpt):
        sd = ckpt
    else:
        raise CheckpointError(
            f"not an official AdaFocus checkpoint: top-level keys {sorted(ckpt)[:12]}; expected "
            "'model_state_dict' or 'glancer'/'focuser'/'fc' (as saved by the official main_dist.py)"
        )
    return {k.removeprefix("module."): v for k, v in sd.items() if torch.is_tensor(v)}


def _policy_prefix(sd: Mapping[str, torch.Tensor], policy_copy: Literal["old", "new"]) -> str | None:
    have = [p for p in ("focuser.policy.policy_old.", "focuser.policy.policy.") if any(k.startswith(p) for k in sd)]
    if not have:
        return None
    want = "focuser.policy.policy_old." if policy_copy == "old" else "focuser.policy.policy."
    return want if want in have else have[0]


def official_config(
    sd: Mapping[str, torch.Tensor],
    *,
    patch_size: int | None = None,
    input_size: int = 224,
    glance_size: int | None = None,
    args: Any = None,
) -> dict[str, Any]:
    """:class:`AdaFocus` keyword arguments matching an official ``GFV`` state_dict.

    Shapes give the classes, widths, backbones, grid, the classifier (``consensus`` gru or fc) and
    ``reuse_global``; ``patch_size`` is not in the weights and must come from ``patch_size`` or the
    checkpoint's saved ``args``. ``dropout`` is ``args.dropout`` when the file has ``args``, else 0.5
    (the official README runs use 0.8); it only matters when the converted model is fine-tuned.
    """
    argd = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
    patch_size = patch_size or argd.get("patch_size")
    if not patch_size:
        raise ValueError("patch_size is not stored in the official weights: pass it (--patch-size, e.g. 128)")
    input_size = int(argd.get("input_size", input_size))
    gru = "classifier.gru.weight_ih_l0" in sd
    if not gru and "classifier.fc.weight" not in sd:
        raise ValueError("official checkpoint has no classifier (classifier.gru.* / classifier.fc.*)")
    if any(k.startswith("focuser.net.base_model.") for k in sd):
        raise ValueError(
            "this is a Something-Something (TSM/TSN) checkpoint: convert it with "
            "adafocus.interop.convert_official_tsm_checkpoint (`adafocus convert-official` does)"
        )
    feats = [int(k.split(".")[3]) for k in sd if k.startswith("glancer.net.features.") and k.endswith(".0.weight")]
    if not feats or "focuser.net.conv1.weight" not in sd:
        raise ValueError("official checkpoint lacks glancer.net.features.* or focuser.net.* backbone weights")
    d_g = sd[f"glancer.net.features.{max(feats)}.0.weight"].shape[0]
    blocks = tuple(len({k.split(".")[3] for k in sd if k.startswith(f"focuser.net.layer{i}.")}) for i in (1, 2, 3, 4))
    kind = "bottleneck" if "focuser.net.layer1.0.conv3.weight" in sd else "basic"
    if (kind, blocks) not in _RESNETS:
        raise ValueError(f"focuser.net is a ResNet with {kind} blocks {blocks}: not a torchvision depth")
    d_l = 2048 if kind == "bottleneck" else 512
    for key in ("classifier.fc.weight", "focuser.net.layer1.0.conv1.weight"):
        if key not in sd:
            raise ValueError(f"official checkpoint lacks {key} (renamed or missing?)")
    fc_w = sd["classifier.fc.weight"]
    # consensus='gru': the GRU takes [e_G, e_L] (or e_L); consensus='fc' (LinearCLassifier): fc itself does
    cls_key = "classifier.gru.weight_ih_l0" if gru else "classifier.fc.weight"
    cls_in = sd[cls_key].shape[1]
    if cls_in not in (d_g + d_l, d_l):
        raise ValueError(f"{cls_key} takes {cls_in} inputs; expected {d_g + d_l} or {d_l}")
    cfg: dict[str, Any] = dict(
        num_classes=fc_w.shape[0], global_backbone="mobilenet_v2", local_backbone=_RESNETS[(kind, blocks)],
        patch_size=int(patch_size), input_size=input_size, classifier="gru" if gru else "fc_probs",
        reuse_global=cls_in == d_g + d_l, dropout=float(argd.get("dropout", 0.5)),
    )  # fmt: skip
    if gru:
        cfg["classifier_hidden_dim"] = fc_w.shape[1]
    pre = _policy_prefix(sd, "old")
    if pre is None:
        cfg["glance_size"] = int(glance_size or argd.get("glance_size", input_size))
        return cfg
    for part in ("state_encoder.0.weight", "state_encoder.3.weight", "actor.0.weight"):
        if pre + part not in sd:
            raise ValueError(f"official checkpoint lacks {pre + part} (renamed or missing?)")
    enc0, enc3 = sd[pre + "state_encoder.0.weight"], sd[pre + "state_encoder.3.weight"]
    if enc0.dim() != 4:
        raise ValueError(f"{pre}state_encoder.0.weight is {tuple(enc0.shape)}: policy_conv=False is not supported")
    side = math.isqrt(enc3.shape[1] // enc0.shape[0])
    grid = math.isqrt(sd[pre + "actor.0.weight"].shape[0])
    if side * side * enc0.shape[0] != enc3.shape[1] or grid * grid != sd[pre + "actor.0.weight"].shape[0]:
        raise ValueError(f"{pre}: non-square feature map or action set ({tuple(enc3.shape)}, actor {grid}^2?)")
    cfg.update(grid_size=grid, policy_hidden_dim=enc3.shape[0], policy_channels=enc0.shape[0],
               glance_size=int(glance_size or argd.get("glance_size", 32 * side)))  # fmt: skip
    return cfg


def _map_key(key: str, policy_prefix: str | None) -> str | None:
    if key.startswith("glancer.net.features."):
        return "global_cnn.model." + key.removeprefix("glancer.net.")
    if key.startswith(("focuser.net.conv1.", "focuser.net.bn1.", "focuser.net.layer")):
        return "local_cnn.model." + key.removeprefix("focuser.net.")
    if key.startswith(("classifier.gru.", "classifier.fc.")):
        return key
    if policy_prefix and key.startswith(policy_prefix):
        rest = key.removeprefix(policy_prefix)
        for src, dst in _POLICY_PARTS.items():
            if rest.startswith(src):
                return "policy." + dst + rest.removeprefix(src)
    return None


@dataclass
class ConversionResult:
    """A converted model with an account of every official tensor."""

    model: AdaFocus
    config: dict[str, Any]
    mapped: dict[str, str]  # official key -> adafocus key
    dropped: list[str]  # official stage-0 heads and the unused policy copy
    missing: list[str] = field(default_factory=list)  # adafocus keys left at init (allowed by allow_missing)


def convert_official_checkpoint(
    checkpoint: CheckpointArg,
    *,
    patch_size: int | None = None,
    input_size: int = 224,
    glance_size: int | None = None,
    policy_copy: Literal["old", "new"] = "old",
    allow_missing: Sequence[str] = (),
    extra_safe_globals: Sequence[Any] = (),
    trust: bool = False,
) -> ConversionResult:
    """Convert an official AdaFocus V1 checkpoint (path or loaded dict) into an :class:`AdaFocus`.

    Args:
        checkpoint: ``.pth.tar`` path, a loaded checkpoint dict, or a ``GFV`` state_dict.
        patch_size: P of the official run (not recoverable from weights unless the file has ``args``).
        input_size / glance_size: frame side and glance side (default 224 / from the policy's shape).
        policy_copy: ``"old"`` takes ``PPO.policy_old`` (the copy the official code acts with), ``"new"``
            ``PPO.policy``; they are equal after every PPO update.
        allow_missing: prefixes of adafocus keys that may stay at initialisation (e.g. ``"policy."``
            for a stage-I checkpoint trained with random patches).
        extra_safe_globals: extra classes/functions trusted when unpickling (see
            :func:`load_official_checkpoint`).
        trust: unpickle the file fully (it may run code): only for files you vouch for.

    Raises:
        CheckpointError: one line naming the file and every official key that cannot be placed,
            every shape mismatch and every adafocus key left unfilled (the first ten of each).
    """
    if isinstance(checkpoint, Mapping):
        ckpt, source = dict(checkpoint), "the given checkpoint"
    else:
        ckpt = load_official_checkpoint(checkpoint, extra_safe_globals=extra_safe_globals, trust=trust)
        source = str(checkpoint)
    try:
        sd = official_state_dict(ckpt)
    except CheckpointError as err:
        raise CheckpointError(f"{source}: {err}") from None
    pre = _policy_prefix(sd, policy_copy)
    other = {
        "focuser.policy.policy_old.": "focuser.policy.policy.",
        "focuser.policy.policy.": "focuser.policy.policy_old.",
    }
    try:
        cfg = official_config(sd, patch_size=patch_size, input_size=input_size, glance_size=glance_size,
                              args=ckpt.get("args"))  # fmt: skip
    except ValueError as err:
        strays = [k for k in sd if not k.startswith((*_DROPPED, *other))
                  and (_map_key(k, pre) is None or k.rsplit(".", 1)[-1] not in _LEAVES)]  # fmt: skip
        raise CheckpointError(f"{source}: {err}" + (f"; official keys with no place in AdaFocus: {strays[:10]}"
                                                    if strays else "")) from None  # fmt: skip
    model = AdaFocus(**cfg)
    own = model.state_dict()
    mapped, dropped, unplaced, bad = {}, [], [], []
    for k, v in sd.items():
        new = _map_key(k, pre)
        if new is None and (k.startswith(_DROPPED) or (pre and k.startswith(other[pre]))):
            dropped.append(k)
        elif new is None or new not in own:
            unplaced.append(k)
        elif v.shape != own[new].shape:
            bad.append(f"{k} {tuple(v.shape)} -> {new} {tuple(own[new].shape)}")
        else:
            mapped[k] = new
    filled = set(mapped.values())
    # top-level buffers (no dot, e.g. keep_threshold) are adafocus settings, not official weights
    missing = [k for k in own if k not in filled and "." in k]
    fatal = [k for k in missing if not k.startswith(tuple(allow_missing))]
    if unplaced or bad or fatal:
        raise placement_error("AdaFocus", f"official checkpoint {source}", unplaced, bad, fatal,
                              "(allow_missing=... to keep them at initialisation)")  # fmt: skip
    _warn_if_policies_differ(sd, pre, other.get(pre or ""))
    model.load_state_dict({**own, **{mapped[k]: sd[k] for k in mapped}}, strict=True)
    return ConversionResult(model, cfg, mapped, dropped, missing)


def placement_error(
    model: str, what: str, unplaced: list[str], bad: list[str], missing: list[str], hint: str = ""
) -> CheckpointError:
    """One line saying which official keys found no place in ``model``, which differ in shape and which
    of ``model``'s keys the file lacks (ten of each at most)."""
    parts = []
    if unplaced:
        parts.append(f"official keys with no place in {model} ({len(unplaced)}): {unplaced[:10]}")
    if bad:
        parts.append(f"shape mismatch ({len(bad)}): {bad[:10]}")
    if missing:
        parts.append(
            f"{model} keys not in the checkpoint ({len(missing)}): {missing[:10]}" + (f" {hint}" if hint else "")
        )
    return CheckpointError(f"cannot convert {what}: " + "; ".join(parts))


def _warn_if_policies_differ(sd: Mapping[str, torch.Tensor], used: str | None, unused: str | None) -> None:
    if not used or not unused:
        return
    for k, v in sd.items():
        twin = k.replace(used, unused, 1)
        if k.startswith(used) and twin in sd and not torch.equal(v, sd[twin]):
            warnings.warn(f"{used[:-1]} and {unused[:-1]} differ (e.g. {k}); converted {used[:-1]}", stacklevel=3)
            return


def save_converted(result: ConversionResult, out: str | os.PathLike, *, source: str = "") -> str:
    """Write the converted model with :func:`adafocus.save_model` (the official ``source`` and the
    ``dropped`` keys go into its metadata); read it back with :func:`adafocus.load_model`."""
    return save_model(result.model, out, converted_from=source, dropped=list(result.dropped))


def load_converted(path: str | os.PathLike) -> AdaFocus:
    """:func:`adafocus.load_model`, left in training mode as built (kept for earlier code)."""
    return load_model(path).train()
