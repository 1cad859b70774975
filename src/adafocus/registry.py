"""The one table of named configurations: ``adafocus zoo``, ``adafocus flops``, ``adafocus benchmark``,
:func:`create_model` / :func:`list_models` and the training configs all read it.

Names follow timm's ``architecture.tag`` habit: ``adafocus_mn2_rn50_p128.activitynet`` is the
architecture ``adafocus_mn2_rn50_p128`` as set up for ActivityNet; an architecture named without a
tag means its first entry. Each :class:`ModelEntry` holds the model class and its arguments, how
its input is made (:class:`~adafocus.Preprocess`), the paper's GFLOPs and score, the GFLOPs counted
here (``count_flops``; a test recounts them), this implementation's own score once someone
measures it, the training config (plus the command-line overrides that make it this entry), and
the full-frame baseline that ``adafocus benchmark`` times it against. No weights ship and nothing
is downloaded: ``create_model(name, pretrained_path=FILE)`` loads a local file.

What differs from timm: ``pretrained_path`` also takes an official AdaFocus checkpoint (converted on
the fly), and a ``num_classes`` override keeps every weight but f_C's last layer.
"""

from __future__ import annotations

import fnmatch
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .checkpoint import model_classes, weights_mismatch
from .errors import CheckpointError
from .preprocess import Preprocess, preprocess_for

METHODS = ("adafocus", "adafocus_v2", "uni_adafocus", "full_frame")


@dataclass(frozen=True)
class ModelEntry:
    """A named configuration: architecture, preprocessing, the paper's figures, how to train it."""

    name: str  # "architecture.tag"
    method: str  # one of METHODS
    model_class: str  # a class adafocus.load_model knows (adafocus.checkpoint.model_classes)
    model_kwargs: Mapping[str, Any]
    preprocess: Preprocess
    dataset: str | None = None
    metric: str | None = None  # "mAP" or "top1"
    paper_score: float | None = None  # percent
    paper_gflops: float | None = None
    paper_ref: str = ""
    gflops: float | None = None  # per video, 1 multiply-add = 1 FLOP, adafocus.flops.count_flops
    score: float | None = None  # this implementation's own, once measured (with the command in docs/)
    config: str | None = None  # `adafocus fit --config <config> <config_args>` trains it
    config_args: tuple[str, ...] = ()
    baseline: str | None = None  # the full-frame architecture `adafocus benchmark` times it against
    notes: str = ""

    @property
    def architecture(self) -> str:
        return self.name.split(".", 1)[0]

    @property
    def tag(self) -> str:
        return self.name.split(".", 1)[1] if "." in self.name else ""

    @property
    def patch_size(self) -> int | None:
        return self.model_kwargs.get("patch_size")

    @property
    def num_classes(self) -> int:
        return int(self.model_kwargs["num_classes"])

    @property
    def frames(self) -> str:
        """Frames seen by f_G (``8+12``: f_G's and f_L's, for AdaFocus-TSM; ``16+16 of 48``: f_G's and
        f_L's among the clip's, for Uni-AdaFocus)."""
        kw = self.model_kwargs
        if "glance_segments" in kw:
            return f"{kw['glance_segments']}+{kw['focus_segments']} of {self.preprocess.num_frames}"
        g, t = kw.get("global_frames"), self.preprocess.num_frames
        return f"{g}+{t}" if g and g != t else str(t)

    @property
    def backbones(self) -> str:
        kw = self.model_kwargs
        return "+".join(b for b in (kw.get("global_backbone"), kw.get("local_backbone")) if b)

    @property
    def fit_command(self) -> str | None:
        """The command that trains stage I of this entry (other stages: ``--model``, see the config)."""
        return " ".join(["adafocus fit --config", self.config, *self.config_args]) if self.config else None

    def build(self, **overrides: Any) -> nn.Module:
        """A randomly initialised model with this architecture (``overrides`` win), carrying the
        entry's ``preprocess`` (kept by :func:`adafocus.save_model`)."""
        model = model_classes()[self.model_class](**{**self.model_kwargs, **overrides})
        model.preprocess = preprocess_for(model, self.preprocess)
        return model


# ---- the entries -------------------------------------------------------------------------------
_MN2_RN50 = dict(global_backbone="mobilenet_v2", local_backbone="resnet50", grid_size=7, classifier="gru")
_TSM = dict(global_backbone="tsm_mobilenet_v2", local_backbone="tsm_resnet50", grid_size=5, global_frames=8,
            local_frames=12, policy_channels=64, num_classes=174)  # fmt: skip
_TINY = dict(global_backbone="tiny_cnn", local_backbone="tiny_cnn", policy_hidden_dim=32, input_size=64)
_TINY_TSM = dict(global_backbone="tsm_tiny_mobilenet", local_backbone="tsm_tiny_resnet", input_size=64, patch_size=32,
                 grid_size=3, policy_hidden_dim=32, policy_channels=4, global_frames=2, local_frames=4)  # fmt: skip
_V2_MN2_RN50 = dict(global_backbone="mobilenet_v2", local_backbone="resnet50", num_frames=16)
_PATCH = "--model.init_args.net.init_args.patch_size={}"
# GFLOPs per video from count_flops (test_registry.py recounts them), keyed by (num_classes, P)
_GFLOPS = {(200, 96): 17.180, (200, 128): 26.522, (200, 160): 38.533, (200, 192): 53.213, (239, 128): 26.522,
           (174, 144): 23.534, (174, 160): 27.467, (174, 176): 33.717}  # fmt: skip
_V2_GFLOPS = {(200, 96): 17.604, (200, 128): 26.946, (200, 160): 38.957, (239, 128): 26.949, (174, 128): 18.453,
              (174, 144): 23.529, (174, 160): 27.461, (174, 176): 33.711, (27, 128): 18.448,
              (27, 176): 33.706}  # fmt: skip
_V2_REF = "AdaFocusV2 (CVPR 2022), official README"
_UNI_GFLOPS = {200: 27.229, 239: 27.237}


def _mn2_rn50_entries() -> list[ModelEntry]:
    """AdaFocus MN2+RN50, T=16 (Tables 1, 2, 4) and the full-frame baselines it is timed against."""
    e: list[ModelEntry] = []
    for tag, ds, k, metric, ref, scores in (  # {P: (paper score %, paper GFLOPs or None)}
        (
            "activitynet",
            "ActivityNet-v1.3",
            200,
            "mAP",
            "Tables 1, 4",
            {96: (71.9, None), 128: (75.0, 26.6), 160: (76.0, None), 192: (76.7, None)},
        ),
        ("fcvid", "FCVID", 239, "mAP", "Table 1", {128: (83.4, 26.6)}),
        ("minikinetics", "Mini-Kinetics", 200, "top1", "Table 2", {128: (72.2, 26.6), 160: (72.9, 38.6)}),
    ):
        for p, (score, paper) in scores.items():
            e.append(
                ModelEntry(
                    name=f"adafocus_mn2_rn50_p{p}.{tag}",
                    method="adafocus",
                    model_class="AdaFocus",
                    model_kwargs=dict(_MN2_RN50, num_classes=k, patch_size=p),
                    preprocess=Preprocess(num_frames=16),
                    dataset=ds,
                    metric=metric,
                    paper_score=score,
                    paper_gflops=paper,
                    paper_ref=ref,
                    gflops=_GFLOPS[(k, p)],
                    config=f"adafocus:{tag}/adafocus_mn2_rn50.yaml",
                    config_args=() if p == 128 else (_PATCH.format(p),),
                    baseline=f"full_mn2_rn50.{tag}",
                )
            )
        e.append(
            ModelEntry(
                name=f"full_mn2_rn50.{tag}",
                method="full_frame",
                model_class="TSMPlus",
                dataset=ds,
                model_kwargs=dict(
                    num_classes=k, global_backbone="mobilenet_v2", local_backbone="resnet50", num_frames=16
                ),
                preprocess=Preprocess(num_frames=16),
                notes="MobileNet-V2 + ResNet-50 on whole frames",
            )
        )
    return e + [
        ModelEntry(
            name="full_rn50.activitynet",
            method="full_frame",
            model_class="TSMPlus",
            dataset="ActivityNet-v1.3",
            model_kwargs=dict(num_classes=200, global_backbone=None, local_backbone="resnet50", num_frames=16),
            preprocess=Preprocess(num_frames=16),
            notes="ResNet-50 alone on whole frames",
        )
    ]


def _tsm_entries() -> list[ModelEntry]:
    """AdaFocus-TSM, 8 + 12 frames (Table 3), and TSM+."""
    e: list[ModelEntry] = []
    for tag, ds, scores in (("sthsth", "Something-Something V1", {144: 47.0, 160: 47.6, 176: 48.1}),
                            ("sthsth_v2", "Something-Something V2", {144: 59.7, 160: 60.2, 176: 60.7})):  # fmt: skip
        for p, score in scores.items():
            e.append(
                ModelEntry(
                    name=f"adafocus_tsm_p{p}.{tag}",
                    method="adafocus",
                    model_class="AdaFocusTSM",
                    model_kwargs=dict(_TSM, patch_size=p),
                    preprocess=Preprocess(num_frames=12),
                    dataset=ds,
                    metric="top1",
                    paper_score=score,
                    paper_gflops={144: 23.5, 160: 27.5, 176: 33.7}[p],
                    paper_ref="Table 3",
                    gflops=_GFLOPS[(174, p)],
                    config=f"adafocus:{tag}/adafocus_tsm.yaml",
                    config_args=() if p == 144 else (_PATCH.format(p),),
                    baseline=f"tsm_plus.{tag}",
                )
            )
        e.append(
            ModelEntry(
                name=f"tsm_plus.{tag}",
                method="full_frame",
                model_class="TSMPlus",
                dataset=ds,
                preprocess=Preprocess(num_frames=8),
                model_kwargs=dict(num_classes=174, num_frames=8),
                notes="TSM+ (Table 3): TSM MobileNet-V2 + ResNet-50",
            )
        )
    return e


def _v2_entries() -> list[ModelEntry]:
    """AdaFocusV2: MN2+RN50, T=16 (ActivityNet / FCVID / Mini-Kinetics) and V2-TSM, 8 + 12 frames (Sth-Sth)."""
    e: list[ModelEntry] = []
    for tag, ds, k, metric, scores in (  # {P: (paper score %, paper GFLOPs)}
        ("activitynet", "ActivityNet-v1.3", 200, "mAP", {96: (77.4, 17.6), 128: (79.0, 27.0), 160: (79.9, 39.0)}),
        ("fcvid", "FCVID", 239, "mAP", {128: (85.0, 27.0)}),
        ("minikinetics", "Mini-Kinetics", 200, "top1", {128: (75.4, 27.0)}),
    ):
        for p, (score, paper) in scores.items():
            e.append(
                ModelEntry(
                    name=f"adafocus_v2_mn2_rn50_p{p}.{tag}",
                    method="adafocus_v2",
                    model_class="AdaFocusV2",
                    model_kwargs=dict(_V2_MN2_RN50, num_classes=k, patch_size=p),
                    preprocess=Preprocess(num_frames=16),
                    dataset=ds,
                    metric=metric,
                    paper_score=score,
                    paper_gflops=paper,
                    paper_ref=_V2_REF,
                    gflops=_V2_GFLOPS[(k, p)],
                    config=f"adafocus:{tag}/adafocus_v2_mn2_rn50.yaml",
                    config_args=() if p == 128 else (_PATCH.format(p),),
                    baseline=f"full_mn2_rn50.{tag}",
                    notes="one end-to-end stage (EndToEndStage); every step predicts (early exit)",
                )
            )
    for tag, ds, k, scores in (
        ("sthsth", "Something-Something V1", 174, {128: 47.0, 144: 48.2, 160: 48.6, 176: 49.6}),
        ("sthsth_v2", "Something-Something V2", 174, {128: 59.6, 144: 60.5, 160: 60.8, 176: 61.3}),
        ("jester", "Jester", 27, {128: 96.6, 176: 96.9}),
    ):
        for p, score in scores.items():
            e.append(
                ModelEntry(
                    name=f"adafocus_v2_tsm_p{p}.{tag}",
                    method="adafocus_v2",
                    model_class="AdaFocusV2TSM",
                    model_kwargs=dict(
                        num_classes=k,
                        patch_size=p,
                        global_frames=8,
                        local_frames=12,
                        global_backbone="tsm_mobilenet_v2",
                        local_backbone="tsm_resnet50",
                    ),  # fmt: skip
                    preprocess=Preprocess(num_frames=12),
                    dataset=ds,
                    metric="top1",
                    paper_score=score,
                    paper_gflops={128: 18.5, 144: 23.5, 160: 27.5, 176: 33.7}[p],
                    paper_ref=_V2_REF,
                    gflops=_V2_GFLOPS[(k, p)],
                    config=f"adafocus:{tag}/adafocus_v2_tsm.yaml",
                    config_args=() if p == 128 else (_PATCH.format(p),),
                    baseline=f"tsm_plus.{tag}" if k == 174 else None,
                )
            )
    return e


def _uni_entries() -> list[ModelEntry]:
    """Uni-AdaFocus MN2+RN50, P=128: 16 of 48 frames glanced, 16 focused."""
    return [
        ModelEntry(
            name=f"uni_adafocus_mn2_rn50_p128.{tag}",
            method="uni_adafocus",
            model_class="UniAdaFocus",
            model_kwargs=dict(
                global_backbone="mobilenet_v2",
                local_backbone="resnet50",
                num_classes=k,
                patch_size=128,
                num_segments=48,
                glance_segments=16,
                focus_segments=16,
            ),
            preprocess=Preprocess(num_frames=48),
            dataset=ds,
            metric=metric,
            paper_score=score,
            paper_gflops=27.2,
            paper_ref="Uni-AdaFocus (TPAMI), official README",
            gflops=_UNI_GFLOPS[k],
            config=f"adafocus:{tag}/uni_adafocus_mn2_rn50.yaml",
            baseline=f"full_mn2_rn50.{tag}",
            notes=f"with early exit (paper): {exit_score} at 18.1 GFLOPs",
        )
        for tag, ds, k, metric, score, exit_score in (
            ("activitynet", "ActivityNet-v1.3", 200, "mAP", 80.7, 80.4),
            ("fcvid", "FCVID", 239, "mAP", 86.4, 86.2),
            ("minikinetics", "Mini-Kinetics", 200, "top1", 75.8, 75.7),
        )
    ]


def _test_entries() -> list[ModelEntry]:
    """Tiny stand-ins for tests and quick checks (64x64 frames), as timm's ``test_*`` models."""
    return [
        ModelEntry(
            name="test_adafocus",
            method="adafocus",
            model_class="AdaFocus",
            preprocess=Preprocess(4, 64),
            model_kwargs=dict(_TINY, num_classes=5, patch_size=32, classifier_hidden_dim=32),
            baseline="test_full",
        ),
        ModelEntry(
            name="test_full",
            method="full_frame",
            model_class="TSMPlus",
            preprocess=Preprocess(4, 64),
            model_kwargs=dict(
                num_classes=5, global_backbone="tiny_cnn", local_backbone="tiny_cnn", num_frames=4, input_size=64
            ),
        ),
        ModelEntry(
            name="test_adafocus_tsm",
            method="adafocus",
            model_class="AdaFocusTSM",
            preprocess=Preprocess(4, 64),
            model_kwargs=dict(_TINY_TSM, num_classes=5),
            baseline="test_tsm_plus",
        ),
        ModelEntry(
            name="test_adafocus_v2",
            method="adafocus_v2",
            model_class="AdaFocusV2",
            preprocess=Preprocess(4, 64),
            model_kwargs=dict(
                num_classes=5,
                global_backbone="tiny_cnn",
                local_backbone="tiny_cnn",
                input_size=64,
                patch_size=32,
                num_frames=4,
                policy_hidden_dim=16,
                policy_channels=4,
                classifier_hidden_dim=32,
            ),  # fmt: skip
            baseline="test_full",
        ),
        ModelEntry(
            name="test_adafocus_v2_tsm",
            method="adafocus_v2",
            model_class="AdaFocusV2TSM",
            preprocess=Preprocess(4, 64),
            model_kwargs=dict(
                num_classes=5,
                global_backbone="tsm_tiny_mobilenet",
                local_backbone="tsm_tiny_resnet",
                input_size=64,
                patch_size=32,
                global_frames=2,
                local_frames=4,
                policy_hidden_dim=16,
                policy_head_dim=8,
                policy_channels=4,
            ),  # fmt: skip
            baseline="test_tsm_plus",
        ),
        ModelEntry(
            name="test_tsm_plus",
            method="full_frame",
            model_class="TSMPlus",
            preprocess=Preprocess(4, 64),
            model_kwargs=dict(
                num_classes=5,
                global_backbone="tsm_tiny_mobilenet",
                local_backbone="tsm_tiny_resnet",
                num_frames=4,
                input_size=64,
            ),
        ),
        ModelEntry(
            name="test_uni_adafocus",
            method="uni_adafocus",
            model_class="UniAdaFocus",
            preprocess=Preprocess(12, 64),
            model_kwargs=dict(
                num_classes=5,
                global_backbone="tiny_cnn",
                local_backbone="tiny_cnn",
                input_size=64,
                patch_size=32,
                min_side=24,
                num_segments=12,
                glance_segments=4,
                focus_segments=4,
                spatial_hidden_dim=8,
                temporal_hidden_dim=8,
                classifier_hidden_dim=32,
            ),  # fmt: skip
            baseline="test_full",
        ),
    ]


REGISTRY: dict[str, ModelEntry] = {
    e.name: e for e in (*_mn2_rn50_entries(), *_tsm_entries(), *_v2_entries(), *_uni_entries(), *_test_entries())
}
# names of earlier versions -> today's (a renamed name is accepted with a warning that names the new one)
_RENAMED = {
    f"adafocus_mn2_rn50_p{p}_{t}": f"adafocus_mn2_rn50_p{p}.{t}"
    for p in (96, 128, 160, 192)
    for t in ("activitynet", "fcvid", "minikinetics")
} | {f"adafocus_tsm_p{p}_{t}": f"adafocus_tsm_p{p}.{t}" for p in (144, 160, 176) for t in ("sthsth", "sthsth_v2")}


def list_models(pattern: str = "*", *, method: str | None = None, dataset: str | None = None) -> list[str]:
    """Names of the entries matching the glob ``pattern`` (and ``method`` / ``dataset`` if given)."""
    return [n for n, e in REGISTRY.items() if fnmatch.fnmatch(n, pattern)
            and (method is None or e.method == method) and (dataset is None or e.dataset == dataset)]  # fmt: skip


def architectures(*, include_tests: bool = False) -> list[str]:
    """Every architecture once (its first entry stands for it), test stand-ins only if asked."""
    seen: dict[str, None] = {}
    for e in REGISTRY.values():
        if include_tests or not e.architecture.startswith("test_"):
            seen.setdefault(e.architecture)
    return list(seen)


def get_entry(name: str) -> ModelEntry:
    """The entry called ``name`` (``arch.tag``, or ``arch`` for its first entry); a clear error otherwise."""
    if name in _RENAMED:
        warnings.warn(f"model name {name!r} was renamed {_RENAMED[name]!r}", FutureWarning, stacklevel=3)
        name = _RENAMED[name]
    if name in REGISTRY:
        return REGISTRY[name]
    for entry in REGISTRY.values():
        if entry.architecture == name:
            return entry
    raise ValueError(f"unknown model {name!r}; available: {list_models()}")


def create_model(
    name: str,
    *,
    pretrained_path: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    num_classes: int | None = None,
    weights: str | os.PathLike | Mapping[str, torch.Tensor] | None = None,
    **overrides: Any,
) -> nn.Module:
    """Build the model called ``name`` (timm's ``create_model``).

    Args:
        name: an entry of :func:`list_models` (``arch.tag``, or ``arch`` for its first tag).
        pretrained_path: weights to load: a model file (:func:`adafocus.save_model`), a state_dict
            (file or dict), or an official AdaFocus checkpoint (converted here). Never downloaded.
        num_classes: another number of classes; the loaded weights then fill everything but the
            class layers (f_C's last layer, AdaFocus-TSM's f_G head), which stay at their initialisation.
        weights: earlier name of ``pretrained_path``.
        overrides: further constructor arguments (``glance_size=...``).
    """
    if weights is not None:
        warnings.warn("create_model(weights=...) is now pretrained_path=...", FutureWarning, stacklevel=2)
        pretrained_path = pretrained_path if pretrained_path is not None else weights
    entry = get_entry(name)
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    model = entry.build(**overrides)
    if pretrained_path is None:
        return model
    sd, source = _read_weights(pretrained_path, entry)
    own = model.state_dict()
    new_head = num_classes is not None and num_classes != entry.num_classes
    class_layers = ("classifier.", "global_head.")
    head = [k for k in own if new_head and k in sd and sd[k].shape != own[k].shape and k.startswith(class_layers)]
    sd = {k: v for k, v in sd.items() if k not in head}
    mismatch = weights_mismatch(own, sd, ignore=head, examples=6)
    if mismatch:
        raise CheckpointError(f"{source}: the weights do not fit model {entry.name!r}: {mismatch}")
    model.load_state_dict({**own, **sd}, strict=True)
    return model


def _read_weights(weights: Any, entry: ModelEntry) -> tuple[dict[str, torch.Tensor], str]:
    from .interop.official import convert_official_checkpoint, load_official_checkpoint
    from .models.backbones import load_state_dict_file

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


def zoo_rows(*, include_tests: bool = False) -> list[dict[str, Any]]:
    """One dict per entry, as ``adafocus zoo`` prints them."""
    return [
        dict(
            name=e.name,
            method=e.method,
            dataset=e.dataset,
            frames=e.frames,
            patch=e.patch_size,
            backbones=e.backbones,
            gflops=e.gflops,
            paper_gflops=e.paper_gflops,
            metric=e.metric,
            paper_score=e.paper_score,
            score=e.score,
            preprocess=e.preprocess.to_dict(),
            config=e.config,
            fit=e.fit_command,
        )  # fmt: skip
        for e in REGISTRY.values()
        if include_tests or not e.architecture.startswith("test_")
    ]
