"""What every member of the AdaFocus family shares: f_G glances at the frames, pi picks patch
locations, the crop, f_L focuses on the patches, f_C classifies; the checks and the output type.

A family member says only where it differs, by overriding the few methods marked as such:

* :meth:`AdaFocusBase.decisions` - how many locations pi picks for a clip of T frames (T: one
  per frame; 1: one per video);
* :meth:`AdaFocusBase.glance_frames` / :meth:`AdaFocusBase.policy_input` - which frames f_G sees
  and how its feature maps become pi's states;
* :meth:`AdaFocusBase.classify` / :meth:`AdaFocusBase.counterfactual` - f_C, and f_C with one
  decision replaced (the reward of Eq. 7).

The output contract is the same for all (:class:`AdaFocusOutput`): ``logits`` is ``(B, S, K)``,
one prediction after each of the S decisions, so ``logits[:, -1]`` (``out.prediction``) is the
video's; every per-frame tensor is ``(B, T, ...)``; pi's tensors are ``(B, S, ...)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import WeightsArg, create_backbone
from .crop import candidate_grid, crop_patches, pixel_offsets
from .fixed_policies import FIXED_POLICIES, fixed_locations
from .policy import PolicyNetwork

PolicyName = Literal["learned", "random", "centre", "center", "gaussian"]
PARTS = ("global_cnn", "local_cnn", "policy", "skip_policy", "classifier")


@dataclass
class StreamState:
    """What online inference carries from one frame to the next."""

    policy_hidden: torch.Tensor | None = None
    classifier_state: Any = None
    t: int = 0
    skip_hidden: torch.Tensor | None = None


@dataclass
class StepOutput:
    """One online step: the prediction after the frames seen so far, and this frame's patch."""

    logits: torch.Tensor  # (B, K)
    location: torch.Tensor  # (B, 2)
    offset: torch.Tensor  # (B, 2)
    action: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None
    value: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    keep: torch.Tensor | None = None
    keep_prob: torch.Tensor | None = None


_STEP_FIELDS = {"actions": "action", "log_probs": "log_prob", "values": "value", "entropy": "entropy"}


@dataclass
class AdaFocusOutput:
    """Offline forward result: per-frame tensors ``(B, T, ...)``, per-decision tensors ``(B, S, ...)``."""

    logits: torch.Tensor  # (B, S, K): the prediction after each decision step
    locations: torch.Tensor  # (B, T, 2) normalised (y, x) patch location of every frame
    offsets: torch.Tensor  # (B, T, 2) integer top-left pixel (y, x)
    global_features: torch.Tensor  # (B, T_G, D_G) pooled e_G
    local_features: torch.Tensor  # (B, T, D_L) pooled e_L
    actions: torch.Tensor | None = None  # (B, S) candidate indices, or (B, S, 2) locations (Gaussian pi)
    log_probs: torch.Tensor | None = None  # (B, S) log pi(a_s | ...)
    values: torch.Tensor | None = None  # (B, S) critic
    entropy: torch.Tensor | None = None  # (B, S)
    feature_maps: torch.Tensor | None = None  # (B, S, C, h, w) pi's states (detached e_G)
    keep: torch.Tensor | None = None  # (B, T) AdaFocus+: 1 where f_L ran on the patch
    keep_probs: torch.Tensor | None = None  # (B, T) p_B from pi'
    frame_indices: torch.Tensor | None = None  # (B, T) Uni-AdaFocus: the clip frames f_L saw
    glance_indices: torch.Tensor | None = None  # (B, T_G) Uni-AdaFocus: the clip frames f_G saw
    frame_weights: torch.Tensor | None = None  # (B, T_G) Uni-AdaFocus: the temporal policy's weights
    window_sides: torch.Tensor | None = None  # (B, T, 2) Uni-AdaFocus: the cropped window's (h, w) in pixels

    @property
    def prediction(self) -> torch.Tensor:
        """``(B, K)`` logits of the whole video (after the last decision)."""
        return self.logits[:, -1]


class AdaFocusBase(nn.Module):
    """The shared body of the AdaFocus models (see the module doc for what a subclass overrides).

    Args:
        num_classes: K.
        global_backbone / local_backbone: backbone names (:mod:`adafocus.models.backbones`).
        global_weights / local_weights: a local file, a state_dict, or a weights name (``IMAGENET1K_V2``, a
            timm tag) fetched through torchvision's / timm's cache (``adafocus.models.backbones.create_backbone``).
        patch_size: P, side of the square patch fed to f_L.
        grid_size: G, pi chooses among G x G uniformly spread candidates.
        input_size: side of the (square) frames; fixes the size of pi's input.
        glance_size: side the frames are resized to for f_G (default ``input_size``: no resize).
        gaussian_sigma: spread of the ``"gaussian"`` fixed policy, in units of the movable range.
        config: the subclass's constructor arguments, kept as ``self.config`` to rebuild the model.

    Attributes a subclass may set: ``global_frames`` / ``local_frames``, the frames f_G / f_L must
    see in one call (temporal-shift backbones mix the frames of a clip; ``None``: any number), and
    ``clip_frames``, the T a clip must have (``None``: any). ``frame_skipping``: whether ``keep``
    (AdaFocus+) may leave frames out of f_L.
    """

    global_frames: int | None = None
    local_frames: int | None = None
    clip_frames: int | None = None
    frame_skipping: bool = False

    def __init__(
        self,
        num_classes: int,
        *,
        global_backbone: str,
        local_backbone: str,
        global_weights: WeightsArg,
        local_weights: WeightsArg,
        patch_size: int,
        grid_size: int,
        input_size: int,
        glance_size: int | None,
        gaussian_sigma: float,
        config: dict[str, Any],
    ) -> None:
        super().__init__()
        glance_size = glance_size or input_size
        check_positive(num_classes=num_classes, patch_size=patch_size, grid_size=grid_size, input_size=input_size,
                       glance_size=glance_size)  # fmt: skip
        if patch_size > input_size:
            raise ValueError(f"patch_size={patch_size} is larger than the frame (input_size={input_size})")
        self.set_config(config)
        self.num_classes, self.patch_size, self.grid_size = num_classes, patch_size, grid_size
        self.input_size, self.glance_size, self.gaussian_sigma = input_size, glance_size, gaussian_sigma
        self.global_cnn = create_backbone(global_backbone, weights=global_weights)
        self.local_cnn = create_backbone(local_backbone, weights=local_weights)
        self.skip_policy: PolicyNetwork | None = None
        self.register_buffer("candidates", candidate_grid(grid_size), persistent=False)

    def set_config(self, config: dict[str, Any]) -> None:
        """Keep the constructor's arguments (``locals()``) as ``self.config``, without the weights
        (they are loaded now; the config describes the architecture)."""
        self.config = {k: v for k, v in config.items() if k not in ("self", "__class__")}
        self.config.update(global_weights=None, local_weights=None)

    def glance_map_shape(self, frames_per_call: int = 1) -> tuple[int, int, int]:
        """``(C, h, w)`` of e_G for one frame, found by running f_G once on zeros (eval mode)."""
        with torch.no_grad():
            was = self.global_cnn.training
            zeros = torch.zeros(frames_per_call, 3, self.glance_size, self.glance_size)
            fmap = self.global_cnn.eval()(zeros)
            self.global_cnn.train(was)
        return tuple(fmap.shape[1:])

    # ---- where the family members differ ---------------------------------------------------
    def decisions(self, num_frames: int) -> int:
        """S, the locations pi picks for a clip of ``num_frames`` frames (default: one per frame)."""
        return num_frames

    def order_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The clip's frames in the order the model processes them (default: as given; AdaFocusV2:
        coarse to fine). :meth:`forward` applies it; callers of :meth:`forward_glanced` apply it first."""
        return frames

    def in_time_order(self, per_frame: torch.Tensor) -> torch.Tensor:
        """A per-frame output ``(B, T, ...)`` (locations, offsets, features) back in the clip's order."""
        return per_frame

    def glance_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """The frames of a ``(B, T, ...)`` clip that f_G sees (default: all)."""
        return frames

    def policy_input(self, feature_maps: torch.Tensor) -> torch.Tensor:
        """pi's states ``(B, S, C', h, w)`` from e_G ``(B, T_G, C, h, w)`` (default: one per frame)."""
        return feature_maps

    def classify(
        self, global_feats: torch.Tensor, local_feats: torch.Tensor, state: Any = None
    ) -> tuple[torch.Tensor, Any]:
        """f_C: per-decision logits ``(B, S, K)`` and the state to carry on."""
        raise NotImplementedError

    def exit_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The steps of ``logits`` ``(B, S, K)`` a video may stop after (early exit); default: all."""
        return logits

    def counterfactual(
        self, global_feats: torch.Tensor, local_feats: torch.Tensor, alt_local_feats: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(B, S, K)`` where decision s sees the real history before it and the patch
        features ``alt_local_feats`` of decision s instead of its own (Eq. 7's counterfactual)."""
        raise NotImplementedError

    # ---- building blocks -------------------------------------------------------------------
    def glance(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_G on all B*T frames in one call: ``(feature maps (B,T,C,h,w), pooled (B,T,C))``."""
        b, t = frames.shape[:2]
        if self.global_frames is not None and t != self.global_frames:
            raise ValueError(f"glance expects {self.global_frames} frames per clip, got {t}")
        x = frames.flatten(0, 1)
        if x.shape[-2:] != (self.glance_size, self.glance_size):
            x = F.interpolate(x, size=(self.glance_size, self.glance_size), mode="bilinear", align_corners=False)
        fmap = self.global_cnn(x)
        fmap = fmap.view(b, t, *fmap.shape[1:])
        return fmap, fmap.mean(dim=(-2, -1))

    def actions_to_locations(self, actions: torch.Tensor) -> torch.Tensor:
        """Candidate indices ``(...)`` to normalised locations ``(..., 2)``."""
        return self.candidates[actions]

    @staticmethod
    def frame_locations(locations: torch.Tensor, num_frames: int) -> torch.Tensor:
        """Per-decision locations ``(B, S, 2)`` as per-frame ones ``(B, T, 2)``: decision s covers the
        s-th of S equal runs of frames (S = 1: every frame; S = T: its own frame)."""
        s = locations.shape[1]
        if s == 1:
            return locations.expand(locations.shape[0], num_frames, 2)
        if s == num_frames:
            return locations
        if num_frames % s:
            raise ValueError(f"{s} decisions cannot split a clip of {num_frames} frames into equal runs")
        return locations.repeat_interleave(num_frames // s, dim=1)

    def crop(self, frames: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        """Patches ``(B, T, C, P, P)`` at normalised ``locations`` ``(B, S, 2)``."""
        b, t = frames.shape[:2]
        offs = pixel_offsets(self.frame_locations(locations, t), frames.shape[-2:], self.patch_size)
        patches = crop_patches(frames.flatten(0, 1), offs.reshape(b * t, 2), self.patch_size)
        return patches.view(b, t, frames.shape[2], self.patch_size, self.patch_size)

    def focus(self, frames: torch.Tensor, offsets: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Crop every (b, t) patch in one indexing op and run f_L on all of them in one call.

        With ``keep`` ``(B, T)``, only the kept patches are cropped and batched through f_L; the
        skipped frames get all-zero features (paper Sec. 3.3), so no f_L work is spent on them.
        """
        b, t = frames.shape[:2]
        flat_frames, flat_off = frames.flatten(0, 1), offsets.reshape(b * t, 2)
        if keep is None:
            patches = crop_patches(flat_frames, flat_off, self.patch_size)
            return self.local_cnn(patches).mean(dim=(-2, -1)).view(b, t, -1)
        if not self.frame_skipping:
            raise ValueError(f"{type(self).__name__} has no frame skipping (keep=): its f_L needs every frame")
        idx = keep.reshape(-1).nonzero().squeeze(1)
        out = flat_frames.new_zeros(b * t, self.local_cnn.num_features)
        if idx.numel():
            patches = crop_patches(flat_frames[idx], flat_off[idx], self.patch_size)
            out = out.index_copy(0, idx, self.local_cnn(patches).mean(dim=(-2, -1)).to(out.dtype))
        return out.view(b, t, -1)

    # ---- offline ---------------------------------------------------------------------------
    def forward(
        self,
        frames: torch.Tensor,
        *,
        policy: PolicyName = "learned",
        locations: torch.Tensor | None = None,
        sample: bool | None = None,
        generator: torch.Generator | None = None,
        keep: torch.Tensor | None = None,
        policy_stats: bool = True,
        glance_input: torch.Tensor | None = None,
    ) -> AdaFocusOutput:
        """Offline recognition of whole clips.

        Args:
            frames: ``(B, T, 3, H, W)`` normalised frames with ``H = W = input_size``.
            policy: ``"learned"`` (pi), or a fixed policy ``"random" | "centre" | "gaussian"``.
            locations: normalised patch locations overriding ``policy``, ``(B, S, 2)`` (``(B, 2)``
                or identical ``(B, T, 2)`` for one location per video).
            sample: sample pi's actions (default: ``self.training``) instead of taking the argmax.
            generator: RNG for the random / gaussian policies and for sampling pi's actions.
            keep: ``(B, T)`` 0/1 AdaFocus+ decisions (1 = run f_L on the patch) overriding pi'.
            policy_stats: fill ``log_probs`` / ``entropy`` (PPO needs them); :func:`adafocus.infer`
                turns this off, since building pi's distribution costs ~0.3 ms a clip on a CPU.
            glance_input: f_G's own frames (default :meth:`glance_frames` of ``frames``), e.g.
                sampled apart from f_L's as the official Something-Something code does.
        """
        self.check_frames(frames)
        frames = self.order_frames(frames)
        glance_input = None if glance_input is None else self.order_frames(glance_input)
        fmap, g = self.glance(self.glance_frames(frames) if glance_input is None else glance_input)
        return self.forward_glanced(frames, fmap, g, policy=policy, locations=locations, sample=sample,
                                    generator=generator, keep=keep, policy_stats=policy_stats)  # fmt: skip

    def forward_glanced(
        self,
        frames: torch.Tensor,
        fmap: torch.Tensor,
        g: torch.Tensor,
        *,
        policy: PolicyName = "learned",
        locations: torch.Tensor | None = None,
        sample: bool | None = None,
        generator: torch.Generator | None = None,
        keep: torch.Tensor | None = None,
        policy_stats: bool = True,
    ) -> AdaFocusOutput:
        """:meth:`forward` after f_G: ``fmap, g = model.glance(frames)`` once, then several policies
        on the same glance (AdaFocusV2's learned and random passes share it)."""
        b, t = frames.shape[:2]
        steps = self.decisions(t)
        extra: dict[str, Any] = {}
        if locations is not None:
            locations = self._given_locations(locations, b, t, steps)
        elif policy == "learned":
            sample = self.training if sample is None else sample
            state = self.policy_input(fmap.detach())  # pi never back-propagates into f_G
            locations, extra, _ = self.learned_locations(state, None, sample=sample, generator=generator,
                                                         policy_stats=policy_stats)  # fmt: skip
        elif policy in FIXED_POLICIES or policy == "center":
            locations = fixed_locations(policy, b, steps, device=frames.device, generator=generator,
                                        sigma=self.gaussian_sigma)  # fmt: skip
        else:
            raise ValueError(f"policy={policy!r}; choose 'learned' or one of {FIXED_POLICIES}")
        if keep is None and self.skip_policy is not None and policy == "learned":
            keep, keep_probs = self.keep_decisions(fmap.detach(), None, sample, generator)[:2]
            extra.update(keep=keep, keep_probs=keep_probs)
        locations = self.frame_locations(locations, t)
        local, offsets = self.focus_at(frames, locations, keep)
        logits, _ = self.classify(g, local)
        return AdaFocusOutput(logits, locations, offsets, g, local, **extra)

    def learned_locations(
        self,
        state: torch.Tensor,
        hidden: torch.Tensor | None,
        *,
        sample: bool,
        generator: torch.Generator | None,
        policy_stats: bool,
    ) -> tuple[torch.Tensor, dict[str, Any], torch.Tensor | None]:
        """pi on its states ``(B, S, ...)``: ``(locations (B, S, 2), extra output fields, pi's hidden state)``.

        Default: a categorical choice among the G x G candidates (AdaFocus, AdaFocus-TSM), sampled
        when ``sample``; AdaFocusV2 overrides it with a continuous location.
        """
        pol = self.policy(state, hidden)
        actions = self.policy.act(pol.logits, sample, generator)
        extra: dict[str, Any] = dict(actions=actions, values=pol.values, feature_maps=state)
        if policy_stats:
            dist = self.policy.distribution(pol.logits)
            extra.update(log_probs=dist.log_prob(actions), entropy=dist.entropy())
        return self.actions_to_locations(actions), extra, pol.hidden

    def focus_at(
        self, frames: torch.Tensor, locations: torch.Tensor, keep: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """f_L on the patches at per-frame ``locations`` ``(B, T, 2)``: ``(pooled e_L (B, T, D_L), offsets)``.

        Default: whole-pixel patches (:func:`pixel_offsets`, :meth:`focus`); AdaFocusV2 interpolates.
        """
        offsets = pixel_offsets(locations, frames.shape[-2:], self.patch_size)
        return self.focus(frames, offsets, keep), offsets

    def keep_decisions(
        self, state: torch.Tensor, hidden: torch.Tensor | None, sample: bool | None, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """AdaFocus+ (pi'): ``(keep (B, T) 0/1, p_B, pi' hidden state)``; members without pi' never call it."""
        raise NotImplementedError(f"{type(self).__name__} has no skip policy")

    def _given_locations(self, locations: torch.Tensor, b: int, t: int, steps: int) -> torch.Tensor:
        """Explicit locations as ``(B, S, 2)``: ``(B, S, 2)`` itself, or for S = 1 ``(B, 2)`` or ``(B, T, 2)``
        with the same location in every frame."""
        loc = locations.unsqueeze(1) if locations.dim() == 2 else locations
        if loc.dim() == 3 and loc.shape[0] == b and loc.shape[2] == 2:
            if loc.shape[1] == steps:
                return loc
            if steps == 1 and loc.shape[1] == t:
                if not torch.equal(loc, loc[:, :1].expand_as(loc)):
                    raise ValueError(f"{type(self).__name__} uses one location per video; got differing per-frame ones")
                return loc[:, :1]
        raise ValueError(f"locations must be (B, {steps}, 2) = ({b}, {steps}, 2), got {tuple(locations.shape)}")

    # ---- online --------------------------------------------------------------------------
    def init_state(self) -> StreamState:
        """Fresh state for :meth:`step` (all recurrent states start at zero)."""
        return StreamState()

    def step(
        self,
        frame: torch.Tensor,
        state: StreamState,
        *,
        policy: PolicyName = "learned",
        location: torch.Tensor | None = None,
        sample: bool | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[StepOutput, StreamState]:
        """Online recognition: consume one frame ``(B, 3, H, W)``, return the prediction so far.

        Only for members that decide once per frame (not AdaFocus-TSM's one location per video).
        """
        if self.decisions(2) != 2:
            raise ValueError(f"{type(self).__name__} picks one location per video: it has no online mode")
        if frame.dim() != 4:
            raise ValueError(f"frame must be (B, C, H, W), got a {frame.dim()}-D tensor")
        frames = frame.unsqueeze(1)
        self.check_frames(frames, whole_clip=False)
        b = frame.shape[0]
        fmap, g = self.glance(frames)
        extra: dict[str, Any] = {}
        hidden = state.policy_hidden
        sample = self.training if sample is None else sample
        if location is not None:
            loc = location.view(b, 1, 2)
        elif policy == "learned":
            loc, fields, hidden = self.learned_locations(self.policy_input(fmap.detach()), hidden, sample=sample,
                                                         generator=generator, policy_stats=True)  # fmt: skip
            extra = {_STEP_FIELDS[k]: v[:, 0] for k, v in fields.items() if k in _STEP_FIELDS}
        else:
            loc = fixed_locations(policy, b, 1, device=frame.device, generator=generator, sigma=self.gaussian_sigma)
        keep, skip_hidden = None, state.skip_hidden
        if self.skip_policy is not None and policy == "learned" and location is None:
            keep, probs, skip_hidden = self.keep_decisions(fmap.detach(), skip_hidden, sample, generator)
            extra["keep"], extra["keep_prob"] = keep[:, 0], probs[:, 0]
        local, off = self.focus_at(frames, loc, keep)
        logits, cls_state = self.classify(g, local, state.classifier_state)
        new_state = StreamState(hidden, cls_state, state.t + 1, skip_hidden)
        return StepOutput(logits[:, -1], loc[:, 0], off[:, 0], **extra), new_state

    # ---- helpers ---------------------------------------------------------------------------
    def set_trainable(self, **parts: bool) -> None:
        """Switch ``requires_grad`` per part (:data:`PARTS`: f_G, f_L, pi, pi', f_C)."""
        for name, flag in parts.items():
            if name not in PARTS:
                raise ValueError(f"unknown part {name!r}; parts are {PARTS}")
            if getattr(self, name) is not None:
                getattr(self, name).requires_grad_(flag)

    def check_frames(self, frames: torch.Tensor, *, whole_clip: bool = True) -> None:
        """Raise a ``ValueError`` that says what is wrong with a clip (``whole_clip=False``: a part of one,
        e.g. one online step) the model cannot take."""
        if frames.dim() != 5:
            raise ValueError(f"frames must be a 5-D tensor (B, T, C, H, W), got {frames.dim()}-D {tuple(frames.shape)}")
        c, h, w = frames.shape[2:]
        if c != 3:
            raise ValueError(f"frames must have 3 (RGB) channels in dim 2, got {c}")
        if (h, w) != (self.input_size, self.input_size):
            raise ValueError(
                f"frames are {h}x{w} but the model was built for input_size={self.input_size}; "
                "resize/crop the clip or build the model with a matching input_size"
            )
        if not frames.is_floating_point():
            raise ValueError(f"frames must be a floating-point tensor, got {frames.dtype}")
        if whole_clip and self.clip_frames is not None and frames.shape[1] != self.clip_frames:
            raise ValueError(f"clips must have {self.clip_frames} frames for this model, got {frames.shape[1]}")


def check_positive(**kwargs: int) -> None:
    """Raise a ``ValueError`` naming the first argument that is not a positive integer."""
    for name, value in kwargs.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
