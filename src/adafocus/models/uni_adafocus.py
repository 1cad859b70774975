"""``UniAdaFocus`` (Wang et al., TPAMI 2024): where to look, how large a patch, which frames, and when to
stop, in one end-to-end model (:class:`~adafocus.training.UniAdaFocusStage`).

Following the official code (``models/uni_adafocus.py``), a clip holds ``num_segments`` frames (48):

* f_G glances at ``glance_segments`` (16) of them, one per group of 48/16 (a random one of its group
  when training, the second at test);
* the temporal policy scores the glanced frames; ``focus_segments`` (16) frames for f_L are drawn
  where the scores are high (:func:`~.uni_policies.select_frames`, not differentiable: the scores learn
  from a Monte-Carlo loss on the glance's logits, :func:`mc_frame_logits`);
* the spatial policy gives every glanced frame a patch corner and a window side from 96 px to the
  whole frame (``(y, x, s_y, s_x)``), interpolated in time to every frame; the window is resampled
  to P x P for f_L. f_L's crop uses the **detached** actions: the spatial policy learns from an
  auxiliary crop of e_G's own map (:meth:`auxiliary_crop_logits`), as in the official code;
* f_C (:class:`UniClassifier`) predicts after each glanced frame, then after each focused frame: the
  exits of early exit are the last glance step and every focus step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import WeightsArg
from .base import AdaFocusBase, AdaFocusOutput, PolicyName, check_positive
from .crop import sample_patches
from .fixed_policies import FIXED_POLICIES, fixed_locations
from .uni_policies import SpatialPolicy, TemporalPolicy, select_frames


class UniClassifier(nn.Module):
    """MLPs on e_G and e_L (Linear, BatchNorm1d, ReLU), a running max over each, one head per glance step
    on the global max and one per focus step on ``[local max, global max over all glanced frames]``."""

    def __init__(self, global_dim: int, local_dim: int, num_classes: int, *, glance_steps: int, focus_steps: int,
                 hidden_dim: int = 4096, dropout: float = 0.2) -> None:  # fmt: skip
        super().__init__()

        def mlp(d: int) -> nn.Sequential:
            return nn.Sequential(nn.Linear(d, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU())

        def head(d: int) -> nn.Sequential:
            return nn.Sequential(nn.Dropout(dropout), nn.Linear(d, num_classes))

        self.global_mlp, self.local_mlp = mlp(global_dim), mlp(local_dim)
        self.global_heads = nn.ModuleList(head(hidden_dim) for _ in range(glance_steps))
        self.local_heads = nn.ModuleList(head(2 * hidden_dim) for _ in range(focus_steps))

    def forward(self, global_feats: torch.Tensor, local_feats: torch.Tensor) -> torch.Tensor:
        """``(B, G, D_G)``, ``(B, F, D_L)`` -> logits ``(B, G + F, K)``."""
        b, g = global_feats.shape[:2]
        f = local_feats.shape[1]
        zg = torch.cummax(self.global_mlp(global_feats.flatten(0, 1)).view(b, g, -1), 1).values
        zl = torch.cummax(self.local_mlp(local_feats.flatten(0, 1)).view(b, f, -1), 1).values
        glance = [self.global_heads[i](zg[:, i]) for i in range(g)]
        focus = [self.local_heads[i](torch.cat([zl[:, i], zg[:, -1]], 1)) for i in range(f)]
        return torch.stack(glance + focus, 1)


def mc_frame_logits(frame_logits: torch.Tensor, weights: torch.Tensor, *, drops: int, samples: int = 128,
                    generator: torch.Generator | None = None) -> torch.Tensor:  # fmt: skip
    """The temporal policy's training signal (official ``MCSampleFeature``): the ``weights``-weighted mean
    of the per-frame logits ``(B, G, K)``, averaged over ``samples`` draws that each drop 0..drops-1
    frames picked in proportion to the weights (the normaliser is detached). Returns ``(B, K)``."""
    b, g, k = frame_logits.shape
    w = weights.unsqueeze(1).expand(b, samples, g).reshape(-1, g)
    x = frame_logits.unsqueeze(1).expand(b, samples, g, k).reshape(-1, g, k)
    total = frame_logits.new_zeros(b * samples, k)
    for i in range(drops):
        kept = w
        if i > 0:
            idx = torch.multinomial(w.detach().float(), i, replacement=False, generator=generator)
            kept = w.scatter(1, idx, 0.0)
        total = total + (x * kept.unsqueeze(-1)).sum(1) / kept.sum(1, keepdim=True).detach()
    return (total / drops).view(b, samples, k).mean(1)


@dataclass
class UniTrainingOutput:
    """What :class:`~adafocus.training.UniAdaFocusStage`'s loss needs from one batch."""

    learned: AdaFocusOutput  # patches at the spatial policy's (detached) actions
    random: AdaFocusOutput  # the random-patch twin (side P), on the same frames
    global_logits: torch.Tensor  # (B, G, K) per glanced frame
    temporal_logits: torch.Tensor  # (B, K) Monte-Carlo frame-weighted
    spatial_logits: torch.Tensor  # (B, K) of the auxiliary crop of e_G's map
    scales: torch.Tensor  # (B, G, 2) the spatial policy's s (for the scale regulariser)
    weights: torch.Tensor  # (B, G) the temporal weights


class UniAdaFocus(AdaFocusBase):
    """Uni-AdaFocus: spatial (with patch scale), temporal and sample-wise (early exit) adaptivity.

    Takes :class:`~adafocus.models.base.AdaFocusBase`'s arguments (backbones, weights, ``patch_size``,
    ``input_size``, ``glance_size``, ``gaussian_sigma``) and:

    Args:
        num_segments: frames per clip (official 48).
        glance_segments / focus_segments: frames f_G / f_L see (official 16 / 16).
        spatial_hidden_dim / temporal_hidden_dim: the policies' widths (official 128 / 64).
        temperature: of the tempered weights that pick the frames (official 1).
        min_side: the smallest window side in pixels (official 96; the largest is the frame).
        classifier_hidden_dim: width of f_C's MLPs (official 4096).
        dropout: before every head (official scripts 0.2).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        global_backbone: str = "mobilenet_v2",
        local_backbone: str = "resnet50",
        global_weights: WeightsArg = None,
        local_weights: WeightsArg = None,
        patch_size: int = 128,
        input_size: int = 224,
        glance_size: int | None = None,
        num_segments: int = 48,
        glance_segments: int = 16,
        focus_segments: int = 16,
        spatial_hidden_dim: int = 128,
        temporal_hidden_dim: int = 64,
        temperature: float = 1.0,
        min_side: int = 96,
        classifier_hidden_dim: int = 4096,
        dropout: float = 0.2,
        gaussian_sigma: float = 0.25,
    ) -> None:
        check_positive(num_segments=num_segments, glance_segments=glance_segments, focus_segments=focus_segments,
                       spatial_hidden_dim=spatial_hidden_dim, temporal_hidden_dim=temporal_hidden_dim,
                       classifier_hidden_dim=classifier_hidden_dim, min_side=min_side)  # fmt: skip
        if num_segments % glance_segments or focus_segments > num_segments:
            raise ValueError(
                f"num_segments={num_segments} must be a multiple of glance_segments={glance_segments} and "
                f">= focus_segments={focus_segments}"
            )
        super().__init__(num_classes, global_backbone=global_backbone, local_backbone=local_backbone,
                         global_weights=global_weights, local_weights=local_weights, patch_size=patch_size,
                         grid_size=1, input_size=input_size, glance_size=glance_size,
                         gaussian_sigma=gaussian_sigma, config=locals())  # fmt: skip
        if not min_side <= input_size:
            raise ValueError(f"min_side={min_side} is larger than the frame (input_size={input_size})")
        self.clip_frames = num_segments
        self.glance_segments, self.focus_segments, self.min_side = glance_segments, focus_segments, min_side
        c, h, w = self.glance_map_shape()
        self.map_stride = self.glance_size / h
        self.spatial_policy = SpatialPolicy(c, (h, w), hidden_dim=spatial_hidden_dim)
        self.temporal_policy = TemporalPolicy(c, hidden_dim=temporal_hidden_dim, temperature=temperature)
        d_g, d_l = self.global_cnn.num_features, self.local_cnn.num_features
        self.global_fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_g, num_classes))
        self.local_fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(d_l, num_classes))
        self.aux_fc = nn.Linear(d_g, num_classes)
        self.classifier = UniClassifier(d_g, d_l, num_classes, glance_steps=glance_segments,
                                        focus_steps=focus_segments, hidden_dim=classifier_hidden_dim,
                                        dropout=dropout)  # fmt: skip

    @property
    def policy(self) -> SpatialPolicy:
        """pi of the family's interface: the spatial policy."""
        return self.spatial_policy

    # ---- pieces ------------------------------------------------------------------------------
    def glance_indices(self, b: int, *, sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(B, G)`` glanced frames: one per group of ``num_segments / G``, random when ``sample``."""
        times = self.clip_frames // self.glance_segments
        start = torch.arange(self.glance_segments, device=self.candidates.device) * times
        if sample:
            return start + torch.randint(0, times, (b, self.glance_segments), device=start.device, generator=generator)
        return (start + (1 if times > 1 else 0)).expand(b, -1)

    def sides(self, scales: torch.Tensor) -> torch.Tensor:
        """Window sides in pixels ``(..., 2)`` from the policy's ``s`` in ``[0, 1]``: ``min_side`` to the frame."""
        return self.min_side + scales * (self.input_size - self.min_side)

    def actions_over_time(self, actions: torch.Tensor) -> torch.Tensor:
        """The G glanced frames' actions ``(B, G, 4)`` linearly interpolated to every frame ``(B, N, 4)``."""
        return F.interpolate(actions.transpose(1, 2), self.clip_frames, mode="linear", align_corners=False).transpose(
            1, 2
        )

    def focus_frames(self, frames: torch.Tensor, idx: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """f_L on the windows ``actions`` ``(B, F, 4)`` of the frames ``idx`` ``(B, F)``: ``(B, F, D_L)``."""
        b, f = idx.shape
        picked = frames[torch.arange(b, device=idx.device).unsqueeze(1), idx].flatten(0, 1)
        a = actions.reshape(b * f, 4)
        patches = sample_patches(picked, a[:, :2], self.patch_size, self.sides(a[:, 2:]))
        return self.local_cnn(patches).mean(dim=(-2, -1)).view(b, f, -1)

    def auxiliary_crop_logits(self, fmap: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """The spatial policy's training signal: the same windows cut from e_G's own (detached) map,
        pooled over space and glanced frames, through ``aux_fc``: ``(B, K)`` (gradients reach the policy)."""
        b, g, c, h, w = fmap.shape
        p = max(1, round(self.patch_size / self.map_stride))
        a = actions.reshape(b * g, 4)
        sides = self.sides(a[:, 2:]) * p / self.patch_size
        cut = sample_patches(fmap.detach().flatten(0, 1), a[:, :2], p, sides)
        return self.aux_fc(cut.view(b, g, c, p, p).mean(dim=(1, 3, 4)))

    def _fixed_actions(self, policy: str, b: int, device, generator) -> torch.Tensor:
        loc = fixed_locations(
            policy, b, self.clip_frames, device=device, generator=generator, sigma=self.gaussian_sigma
        )
        s = (self.patch_size - self.min_side) / max(self.input_size - self.min_side, 1)  # a side of P
        return torch.cat([loc, loc.new_full((b, self.clip_frames, 2), s)], -1)

    def _output(self, frames, idx, actions, fmap, g, local, gidx, weights) -> AdaFocusOutput:
        logits = self.classify(g, local)[0]
        sides = self.sides(actions[..., 2:])
        # the window's top-left pixel, as for a P x P patch but with its own side
        offsets = (actions[..., :2].detach() * (frames.new_tensor(frames.shape[-2:]) - sides.detach())).floor().long()
        return AdaFocusOutput(logits, actions[..., :2], offsets, g, local, feature_maps=fmap, frame_indices=idx,
                              glance_indices=gidx, frame_weights=weights, window_sides=sides)  # fmt: skip

    # ---- the family's interface -------------------------------------------------------------------
    def classify(self, global_feats: torch.Tensor, local_feats: torch.Tensor, state: Any = None):
        return self.classifier(global_feats, local_feats), None

    def exit_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The exits of early exit: after the last glance step, then after every focus step."""
        return logits[:, self.glance_segments - 1 :]

    def forward(
        self,
        frames: torch.Tensor,
        *,
        policy: PolicyName = "learned",
        locations: torch.Tensor | None = None,
        sample: bool | None = None,
        generator: torch.Generator | None = None,
        **unused: Any,
    ) -> AdaFocusOutput:
        """Offline recognition of ``(B, N, 3, H, W)`` clips (N = ``num_segments``).

        ``policy``: ``"learned"`` or a fixed one for the patch (its side is then P; the frames are still
        the temporal policy's); ``locations`` ``(B, F, 2)`` overrides the corners of the focused frames.
        ``sample`` (default ``self.training``): random glance frames and frame-selection quantiles.
        """
        self.check_frames(frames)
        b = frames.shape[0]
        sample = self.training if sample is None else sample
        gidx = self.glance_indices(b, sample=sample, generator=generator)
        fmap, g = self.glance(frames[torch.arange(b, device=gidx.device).unsqueeze(1), gidx])
        weights, tempered = self.temporal_policy(g)
        idx = select_frames(tempered, self.clip_frames, self.focus_segments, sample=sample, generator=generator)
        if policy == "learned":
            actions = self.actions_over_time(self.spatial_policy(fmap.detach()))
        elif policy in FIXED_POLICIES or policy == "center":
            actions = self._fixed_actions(policy, b, frames.device, generator)
        else:
            raise ValueError(f"policy={policy!r}; choose 'learned' or one of {FIXED_POLICIES}")
        actions = actions.gather(1, idx.unsqueeze(-1).expand(b, self.focus_segments, 4))
        if locations is not None:
            if locations.shape != (b, self.focus_segments, 2):
                raise ValueError(f"locations must be (B, {self.focus_segments}, 2), got {tuple(locations.shape)}")
            actions = torch.cat([locations.to(actions), actions[..., 2:]], -1)
        local = self.focus_frames(frames, idx, actions.detach())  # f_L's loss does not move the policy
        return self._output(frames, idx, actions, fmap, g, local, gidx, weights)

    def forward_train(self, frames: torch.Tensor, generator: torch.Generator | None = None) -> UniTrainingOutput:
        """Everything the official training loss uses, from one glance: the learned and random-patch passes
        on the same selected frames, the glance's per-frame logits, the Monte-Carlo temporal logits, the
        auxiliary-crop logits and the spatial policy's scales."""
        self.check_frames(frames)
        b = frames.shape[0]
        gidx = self.glance_indices(b, sample=True, generator=generator)
        fmap, g = self.glance(frames[torch.arange(b, device=gidx.device).unsqueeze(1), gidx])
        weights, tempered = self.temporal_policy(g)
        idx = select_frames(tempered, self.clip_frames, self.focus_segments, sample=True, generator=generator)
        per_frame = self.spatial_policy(fmap.detach())
        gather = idx.unsqueeze(-1).expand(b, self.focus_segments, 4)
        outs = []
        for actions in (self.actions_over_time(per_frame), self._fixed_actions("random", b, frames.device, generator)):
            actions = actions.gather(1, gather)
            outs.append(self._output(frames, idx, actions, fmap, g, self.focus_frames(frames, idx, actions.detach()),
                                     gidx, weights))  # fmt: skip
        global_logits = self.global_fc(g)
        temporal = mc_frame_logits(global_logits, weights, drops=max(1, self.glance_segments // 3), generator=generator)
        spatial = self.auxiliary_crop_logits(fmap, per_frame)
        return UniTrainingOutput(outs[0], outs[1], global_logits, temporal, spatial, per_frame[..., 2:], weights)
