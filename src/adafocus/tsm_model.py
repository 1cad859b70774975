"""AdaFocus-TSM (paper Sec. 4.2, Table 3) and the TSM+ baseline.

AdaFocus-TSM, following the official Something-Something code (``models/gfv_net.py``):

* f_G = TSM-MobileNet-V2 on ``global_frames`` (8) frames, f_L = TSM-ResNet-50 on ``local_frames``
  (12) patches; each backbone shifts over its own frame count.
* pi sees the 8 global feature maps stacked on channels and picks **one** patch location per
  video (a single policy step); the 12 frames are all cropped there, so f_L's temporal shift
  mixes patches that share one visual angle.
* f_C: frame-wise linear logits averaged over frames, the 8 global ones plus the 12 local ones
  (official: glancer head + focuser classifier, consensus ``avg`` each, summed).

The official loader samples the 8 and the 12 frames separately from the video (TSN segments);
here the clip holds the 12 f_L frames and, unless ``glance_frames`` is given, f_G takes the 8 of
them nearest to 8 evenly spaced segment centres (:func:`glance_indices`).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import WeightsArg, create_backbone
from .classifier import FrameAverageClassifier
from .crop import candidate_grid, crop_patches, pixel_offsets
from .fixed_policies import FIXED_POLICIES, fixed_locations
from .model import AdaFocusOutput, PolicyName, _check_positive
from .policy import PolicyNetwork
from .tsm import set_num_frames


def glance_indices(local_frames: int, global_frames: int) -> list[int]:
    """Indices of ``global_frames`` frames among ``local_frames``: the centres of equal segments."""
    return [min(local_frames - 1, int((i + 0.5) * local_frames / global_frames)) for i in range(global_frames)]


class AdaFocusTSM(nn.Module):
    """AdaFocus-TSM: one patch location per video, 8 global + 12 local frames, frame-average f_C.

    Exposes the attributes the training stages use (``global_cnn``, ``local_cnn``, ``policy``,
    ``skip_policy`` = None, ``classifier``, ``set_trainable``, ``config``), so the
    ``adafocus.training`` stages train it like :class:`~adafocus.AdaFocus` (stage II via a
    one-step rollout, see :func:`adafocus.training.reward.rollout`).

    Args:
        num_classes: K.
        global_backbone / local_backbone: TSM backbones (``tsm_mobilenet_v2`` / ``tsm_resnet50``).
        patch_size, grid_size, input_size, glance_size: as in :class:`~adafocus.AdaFocus`.
        global_frames / local_frames: frames seen by f_G (8) and f_L (12); clips have ``local_frames``.
        policy_hidden_dim / policy_channels: pi's width (official Sth-Sth: 1024 / 64).
        dropout: before f_C's linear layers.
    """

    policy_scope = "video"

    def __init__(
        self,
        num_classes: int,
        *,
        global_backbone: str = "tsm_mobilenet_v2",
        local_backbone: str = "tsm_resnet50",
        global_weights: WeightsArg = None,
        local_weights: WeightsArg = None,
        patch_size: int = 144,
        grid_size: int = 5,
        input_size: int = 224,
        glance_size: int | None = None,
        global_frames: int = 8,
        local_frames: int = 12,
        policy_hidden_dim: int = 1024,
        policy_channels: int = 64,
        dropout: float = 0.5,
        gaussian_sigma: float = 0.25,
    ) -> None:
        super().__init__()
        glance_size = glance_size or input_size
        _check_positive(num_classes=num_classes, patch_size=patch_size, grid_size=grid_size, input_size=input_size,
                        glance_size=glance_size, global_frames=global_frames, local_frames=local_frames)  # fmt: skip
        if patch_size > input_size:
            raise ValueError(f"patch_size={patch_size} is larger than the frame (input_size={input_size})")
        if global_frames > local_frames:
            raise ValueError(
                f"global_frames={global_frames} > local_frames={local_frames}: f_G's frames come from the clip"
            )
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.config.update(global_weights=None, local_weights=None)
        self.num_classes, self.patch_size, self.grid_size = num_classes, patch_size, grid_size
        self.input_size, self.glance_size = input_size, glance_size
        self.global_frames, self.local_frames = global_frames, local_frames
        self.num_frames = global_frames  # pi's input stacks this many feature maps (flops.py reads it)
        self.clip_frames = local_frames  # T a clip must have
        self.gaussian_sigma = gaussian_sigma
        self.reuse_global = True
        self.global_cnn = create_backbone(global_backbone, weights=global_weights)
        self.local_cnn = create_backbone(local_backbone, weights=local_weights)
        set_num_frames(self.global_cnn, global_frames)
        set_num_frames(self.local_cnn, local_frames)
        d_g, d_l = self.global_cnn.num_features, self.local_cnn.num_features
        with torch.no_grad():  # the policy's input size: one clip through f_G (the shift needs whole clips)
            was = self.global_cnn.training
            fh, fw = self.global_cnn.eval()(torch.zeros(global_frames, 3, glance_size, glance_size)).shape[-2:]
            self.global_cnn.train(was)
        self.policy = PolicyNetwork(d_g * global_frames, (fh, fw), grid_size * grid_size,
                                    hidden_dim=policy_hidden_dim, reduced_channels=policy_channels)  # fmt: skip
        self.skip_policy = None  # AdaFocus+ frame skipping is undefined with TSM (the shift needs every frame)
        self.classifier = FrameAverageClassifier(d_g, d_l, num_classes, dropout=dropout)
        self.register_buffer("candidates", candidate_grid(grid_size), persistent=False)
        self.register_buffer(
            "glance_index", torch.tensor(glance_indices(local_frames, global_frames)), persistent=False
        )

    # ---- building blocks -------------------------------------------------------------------
    def select_glance_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The ``global_frames`` of a ``(B, local_frames, ...)`` clip that f_G sees."""
        return frames if frames.shape[1] == self.global_frames else frames.index_select(1, self.glance_index)

    def glance(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_G on ``(B, global_frames, 3, H, W)`` in one call: ``(maps (B,Tg,C,h,w), pooled (B,Tg,C))``."""
        b, t = frames.shape[:2]
        if t != self.global_frames:
            raise ValueError(f"glance expects {self.global_frames} frames per clip, got {t}")
        x = frames.flatten(0, 1)
        if x.shape[-1] != self.glance_size or x.shape[-2] != self.glance_size:
            x = F.interpolate(x, size=(self.glance_size, self.glance_size), mode="bilinear", align_corners=False)
        fmap = self.global_cnn(x)
        fmap = fmap.view(b, t, *fmap.shape[1:])
        return fmap, fmap.mean(dim=(-2, -1))

    def policy_input(self, fmap: torch.Tensor) -> torch.Tensor:
        """All frames' e_G stacked on channels, one policy step: ``(B, 1, Tg*C, h, w)``."""
        return fmap.reshape(fmap.shape[0], 1, -1, *fmap.shape[-2:])

    def focus(self, frames: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """Crop the clip at ``offsets`` (``(B, 2)`` one per video, or ``(B, T, 2)``) in one indexing op and
        run f_L on all ``B*T`` patches in one call: pooled ``(B, T, D_L)``."""
        b, t = frames.shape[:2]
        offs = offsets.reshape(b, -1, 2).expand(b, t, 2).reshape(b * t, 2)
        patches = crop_patches(frames.flatten(0, 1), offs, self.patch_size)
        return self.local_cnn(patches).mean(dim=(-2, -1)).view(b, t, -1)

    def crop(self, frames: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        """Patches ``(B, T, C, P, P)`` at normalised ``locations`` ``(B, 2)`` / ``(B, 1|T, 2)``."""
        b, t = frames.shape[:2]
        offs = pixel_offsets(locations.reshape(b, -1, 2).expand(b, t, 2), frames.shape[-2:], self.patch_size)
        patches = crop_patches(frames.flatten(0, 1), offs.reshape(b * t, 2), self.patch_size)
        return patches.view(b, t, frames.shape[2], self.patch_size, self.patch_size)

    def actions_to_locations(self, actions: torch.Tensor) -> torch.Tensor:
        return self.candidates[actions]

    def classify(self, global_feats: torch.Tensor, local_feats: torch.Tensor, state: Any = None):
        """Final logits ``(B, 1, K)``: mean global frame logits + mean local frame logits."""
        logits, state = self.classifier(global_feats, local_feats, state)
        return logits[:, -1:], state  # equal frame counts give per-step means; keep the clip's one

    # ---- offline ---------------------------------------------------------------------------
    def forward(
        self,
        frames: torch.Tensor,
        *,
        glance_frames: torch.Tensor | None = None,
        policy: PolicyName = "learned",
        locations: torch.Tensor | None = None,
        sample: bool | None = None,
        generator: torch.Generator | None = None,
        keep: torch.Tensor | None = None,
        policy_stats: bool = True,
    ) -> AdaFocusOutput:
        """Recognise clips ``(B, local_frames, 3, H, W)``.

        ``glance_frames`` ``(B, global_frames, 3, H', W')``: f_G's own frames (official sampling);
        default: :meth:`select_glance_frames`. ``locations`` ``(B, 2)`` / ``(B, 1, 2)`` overrides
        the policy. The result's ``logits`` are ``(B, 1, K)``; ``locations`` / ``offsets`` are
        ``(B, local_frames, 2)``, identical along the frames (one location per video).
        ``policy_stats=False`` leaves ``log_probs`` / ``entropy`` unset (as :func:`adafocus.infer` does).
        """
        if keep is not None:
            raise ValueError("AdaFocus-TSM has no frame skipping (keep=): the temporal shift needs every frame")
        self._check_frames(frames)
        b, t = frames.shape[:2]
        fmap, g = self.glance(self.select_glance_frames(frames) if glance_frames is None else glance_frames)
        extra: dict[str, Any] = {}
        if locations is not None:
            locations = locations.reshape(b, -1, 2)
            if locations.shape[1] != 1 and not torch.equal(locations, locations[:, :1].expand_as(locations)):
                raise ValueError("AdaFocus-TSM uses one location per video; got differing per-frame locations")
            locations = locations[:, :1]
        elif policy == "learned":
            sample = self.training if sample is None else sample
            state = self.policy_input(fmap.detach())  # pi never back-propagates into f_G
            pol = self.policy(state)
            actions = self.policy.act(pol.logits, sample, generator)  # (B, 1)
            extra = dict(actions=actions, values=pol.values, feature_maps=state)
            if policy_stats:
                dist = self.policy.distribution(pol.logits)
                extra.update(log_probs=dist.log_prob(actions), entropy=dist.entropy())
            locations = self.actions_to_locations(actions)
        elif policy in FIXED_POLICIES or policy == "center":
            locations = fixed_locations(policy, b, 1, device=frames.device, generator=generator,
                                        sigma=self.gaussian_sigma)  # fmt: skip
        else:
            raise ValueError(f"policy={policy!r}; choose 'learned' or one of {FIXED_POLICIES}")
        offsets = pixel_offsets(locations, frames.shape[-2:], self.patch_size)  # (B, 1, 2)
        local = self.focus(frames, offsets)
        logits, _ = self.classify(g, local)
        return AdaFocusOutput(logits, locations.expand(b, t, 2), offsets.expand(b, t, 2), g, local, **extra)

    # ---- helpers ---------------------------------------------------------------------------
    def set_trainable(self, **parts: bool) -> None:
        """Switch ``requires_grad`` per part: ``global_cnn``, ``local_cnn``, ``policy``, ``classifier``."""
        for name, flag in parts.items():
            if name not in ("global_cnn", "local_cnn", "policy", "skip_policy", "classifier"):
                raise ValueError(f"unknown part {name!r}")
            if getattr(self, name) is not None:
                getattr(self, name).requires_grad_(flag)

    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must be (B, T, 3, H, W), got {tuple(frames.shape)}")
        if frames.shape[1] != self.local_frames:
            raise ValueError(f"clips must have local_frames={self.local_frames} frames, got {frames.shape[1]}")
        if tuple(frames.shape[-2:]) != (self.input_size, self.input_size):
            raise ValueError(
                f"frames are {tuple(frames.shape[-2:])}, the model was built for input_size={self.input_size}"
            )


class TSMPlus(nn.Module):
    """TSM+ (Table 3): full frames into both backbones, pooled features concatenated, one linear
    classifier, frame predictions averaged. AdaFocus-TSM without pi, f_L on whole frames.

    With plain backbones (``mobilenet_v2`` + ``resnet50``, or ``global_backbone=None`` for ResNet-50
    alone) it is the matching full-frame baseline of the non-TSM AdaFocus.
    """

    def __init__(
        self,
        num_classes: int,
        *,
        global_backbone: str | None = "tsm_mobilenet_v2",
        local_backbone: str = "tsm_resnet50",
        num_frames: int = 8,
        input_size: int = 224,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.num_classes = num_classes
        self.global_cnn = create_backbone(global_backbone) if global_backbone else None
        self.local_cnn = create_backbone(local_backbone)
        for net in (self.global_cnn, self.local_cnn):
            if net is not None:
                set_num_frames(net, num_frames)
        self.num_frames, self.input_size = num_frames, input_size
        self.clip_frames = num_frames  # the temporal shift needs clips of exactly this length
        dim = self.local_cnn.num_features + (self.global_cnn.num_features if self.global_cnn is not None else 0)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(dim, num_classes)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        """``(B, T, 3, H, W)`` -> video logits ``(B, K)``."""
        b, t = frames.shape[:2]
        x = frames.flatten(0, 1)
        feats = [self.local_cnn(x).mean(dim=(-2, -1))]
        if self.global_cnn is not None:
            feats.insert(0, self.global_cnn(x).mean(dim=(-2, -1)))
        return self.fc(self.dropout(torch.cat(feats, dim=-1))).view(b, t, -1).mean(1)
