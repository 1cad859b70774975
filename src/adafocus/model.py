"""The reusable ``AdaFocus`` nn.Module: glance (f_G), policy (pi), crop, focus (f_L), classify (f_C).

Usable without Lightning::

    model = AdaFocus(num_classes=200)                 # MobileNet-V2 + ResNet-50, P=128, 7x7 grid
    out = model(frames)                               # frames: (B, T, 3, 224, 224)
    out.logits[:, -1]                                 # offline prediction after all T frames

    state = model.init_state()                        # online / streaming
    for frame in stream:
        step, state = model.step(frame, state)        # step.logits: prediction so far
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import WeightsArg, create_backbone
from .classifier import FrameAverageClassifier, GRUClassifier
from .crop import candidate_grid, crop_patches, pixel_offsets
from .fixed_policies import FIXED_POLICIES, fixed_locations
from .policy import PolicyNetwork

PolicyName = Literal["learned", "random", "centre", "center", "gaussian"]


@dataclass
class AdaFocusOutput:
    """Offline forward result. Per-step tensors are ``(B, T, ...)``."""

    logits: torch.Tensor  # (B, T, K): prediction after frames 1..t
    locations: torch.Tensor  # (B, T, 2) normalised (y, x) patch locations
    offsets: torch.Tensor  # (B, T, 2) integer top-left pixel (y, x)
    global_features: torch.Tensor  # (B, T, D_G) pooled e_G
    local_features: torch.Tensor  # (B, T, D_L) pooled e_L
    actions: torch.Tensor | None = None  # (B, T) candidate indices (learned policy only)
    log_probs: torch.Tensor | None = None  # (B, T) log pi(a_t | ...)
    values: torch.Tensor | None = None  # (B, T) critic
    entropy: torch.Tensor | None = None  # (B, T)
    feature_maps: torch.Tensor | None = None  # (B, T, C, h, w) e_G as the policy saw it (detached)
    keep: torch.Tensor | None = None  # (B, T) AdaFocus+: 1 where f_L ran on the patch
    keep_probs: torch.Tensor | None = None  # (B, T) p_B from pi'


@dataclass
class StreamState:
    """What online inference carries from one frame to the next."""

    policy_hidden: torch.Tensor | None = None
    classifier_state: Any = None
    t: int = 0
    skip_hidden: torch.Tensor | None = None


@dataclass
class StepOutput:
    logits: torch.Tensor  # (B, K)
    location: torch.Tensor  # (B, 2)
    offset: torch.Tensor  # (B, 2)
    action: torch.Tensor | None = None
    log_prob: torch.Tensor | None = None
    value: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    keep: torch.Tensor | None = None
    keep_prob: torch.Tensor | None = None


class AdaFocus(nn.Module):
    """AdaFocus (Wang et al., ICCV 2021).

    Args:
        num_classes: number of classes K.
        global_backbone / local_backbone: backbone names (see :mod:`adafocus.backbones`).
        global_weights / local_weights: local file or state_dict for the backbones (never downloaded).
        patch_size: P, side of the square patch fed to f_L.
        grid_size: G, the policy chooses among G x G uniformly spread candidates.
        input_size: side of the (square) frames; fixes the size of the policy's input.
        glance_size: side the frames are resized to for f_G (default: ``input_size``, no resize).
        policy_hidden_dim / policy_channels: width of pi's GRU and of its 1x1 convolution.
        classifier: ``"gru"`` (paper) or ``"fc"`` (frame average, TSM variant).
        classifier_hidden_dim: width of the GRU classifier.
        reuse_global: feed pooled e_G to f_C beside e_L (Table 4); ``False`` uses e_L only.
        dropout: dropout before the classifier's last linear layer.
        policy_scope: ``"frame"`` — one patch per frame (AdaFocus); ``"video"`` — a single patch per
            video chosen from all frames' e_G stacked on channels (AdaFocus-TSM); needs ``num_frames``.
        num_frames: frames per video, required for ``policy_scope="video"``.
        gaussian_sigma: spread of the ``"gaussian"`` fixed policy, in units of the movable range.
        skip_policy: AdaFocus+ — add pi', a Bernoulli policy deciding per frame whether f_L runs;
            at test time f_L runs where p_B >= ``keep_threshold`` (rho, see ``solve_keep_threshold``).
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
        grid_size: int = 7,
        input_size: int = 224,
        glance_size: int | None = None,
        policy_hidden_dim: int = 1024,
        policy_channels: int = 32,
        classifier: Literal["gru", "fc"] = "gru",
        classifier_hidden_dim: int = 1024,
        reuse_global: bool = True,
        dropout: float = 0.5,
        policy_scope: Literal["frame", "video"] = "frame",
        num_frames: int | None = None,
        gaussian_sigma: float = 0.25,
        skip_policy: bool = False,
    ) -> None:
        super().__init__()
        _check_positive(num_classes=num_classes, patch_size=patch_size, grid_size=grid_size, input_size=input_size)
        glance_size = glance_size or input_size
        _check_positive(glance_size=glance_size, policy_hidden_dim=policy_hidden_dim, policy_channels=policy_channels)
        if patch_size > input_size:
            raise ValueError(f"patch_size={patch_size} is larger than the frame (input_size={input_size})")
        if classifier not in ("gru", "fc"):
            raise ValueError(f"classifier must be 'gru' or 'fc', got {classifier!r}")
        if policy_scope not in ("frame", "video"):
            raise ValueError(f"policy_scope must be 'frame' or 'video', got {policy_scope!r}")
        if policy_scope == "video" and not num_frames:
            raise ValueError("policy_scope='video' needs num_frames (the policy sees all frames at once)")
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        for k in ("global_weights", "local_weights"):
            self.config[k] = None  # weights are loaded now; the config describes the architecture

        self.num_classes = num_classes
        self.patch_size = patch_size
        self.grid_size = grid_size
        self.input_size = input_size
        self.glance_size = glance_size
        self.reuse_global = reuse_global
        self.policy_scope = policy_scope
        self.num_frames = num_frames
        self.clip_frames = num_frames if policy_scope == "video" else None  # T a clip must have (None: any)
        self.gaussian_sigma = gaussian_sigma

        self.global_cnn = create_backbone(global_backbone, weights=global_weights)
        self.local_cnn = create_backbone(local_backbone, weights=local_weights)
        d_g, d_l = self.global_cnn.num_features, self.local_cnn.num_features
        with torch.no_grad():
            was = self.global_cnn.training
            fmap = self.global_cnn.eval()(torch.zeros(1, 3, glance_size, glance_size))
            self.global_cnn.train(was)
        fh, fw = fmap.shape[-2:]
        in_ch = d_g * (num_frames if policy_scope == "video" else 1)
        self.policy = PolicyNetwork(
            in_ch, (fh, fw), grid_size * grid_size, hidden_dim=policy_hidden_dim, reduced_channels=policy_channels
        )
        self.skip_policy = (
            PolicyNetwork(
                in_ch,
                (fh, fw),
                1,
                hidden_dim=policy_hidden_dim,
                reduced_channels=policy_channels,
                distribution="bernoulli",
            )
            if skip_policy
            else None
        )
        self.register_buffer("keep_threshold", torch.tensor(0.5))
        if classifier == "gru":
            self.classifier: nn.Module = GRUClassifier(
                (d_g if reuse_global else 0) + d_l, num_classes, hidden_dim=classifier_hidden_dim, dropout=dropout
            )
        else:
            self.classifier = FrameAverageClassifier(d_g if reuse_global else None, d_l, num_classes, dropout=dropout)
        self.register_buffer("candidates", candidate_grid(grid_size), persistent=False)

    # ---- building blocks -------------------------------------------------------------------
    def glance(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f_G on all B*T frames in one call: ``(feature maps (B,T,C,h,w), pooled (B,T,C))``."""
        b, t = frames.shape[:2]
        x = frames.flatten(0, 1)
        if self.glance_size != x.shape[-1] or self.glance_size != x.shape[-2]:
            x = F.interpolate(x, size=(self.glance_size, self.glance_size), mode="bilinear", align_corners=False)
        fmap = self.global_cnn(x)
        fmap = fmap.view(b, t, *fmap.shape[1:])
        return fmap, fmap.mean(dim=(-2, -1))

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
        idx = keep.reshape(-1).nonzero().squeeze(1)
        out = flat_frames.new_zeros(b * t, self.local_cnn.num_features)
        if idx.numel():
            patches = crop_patches(flat_frames[idx], flat_off[idx], self.patch_size)
            out = out.index_copy(0, idx, self.local_cnn(patches).mean(dim=(-2, -1)).to(out.dtype))
        return out.view(b, t, -1)

    def crop(self, frames: torch.Tensor, locations: torch.Tensor) -> torch.Tensor:
        """Patches ``(B, T, C, P, P)`` at normalised ``locations`` ``(B, T, 2)``."""
        b, t = frames.shape[:2]
        offs = pixel_offsets(locations, frames.shape[-2:], self.patch_size)
        return crop_patches(frames.flatten(0, 1), offs.reshape(b * t, 2), self.patch_size).view(
            b, t, frames.shape[2], self.patch_size, self.patch_size
        )

    def actions_to_locations(self, actions: torch.Tensor) -> torch.Tensor:
        """Candidate indices ``(...)`` to normalised locations ``(..., 2)``."""
        return self.candidates[actions]

    def classify(
        self, global_feats: torch.Tensor, local_feats: torch.Tensor, state: Any = None
    ) -> tuple[torch.Tensor, Any]:
        return self.classifier(global_feats if self.reuse_global else None, local_feats, state)

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
    ) -> AdaFocusOutput:
        """Offline recognition of whole clips.

        Args:
            frames: ``(B, T, 3, H, W)`` normalised frames with ``H = W = input_size``.
            policy: ``"learned"`` (pi), or a fixed policy ``"random" | "centre" | "gaussian"``.
            locations: ``(B, T, 2)`` normalised patch locations overriding ``policy`` (stage I
                random patches, replaying a rollout, tests).
            sample: sample pi's actions (default: ``self.training``) instead of taking the argmax.
            generator: RNG for the random / gaussian policies and for sampling pi's actions.
            keep: ``(B, T)`` 0/1 AdaFocus+ decisions overriding pi' (1 = run f_L on the patch).
            policy_stats: fill ``log_probs`` / ``entropy`` (PPO needs them); :func:`adafocus.infer`
                turns this off, since building pi's distribution costs ~0.3 ms a clip on a CPU.
        """
        self._check_frames(frames)
        b, t = frames.shape[:2]
        fmap, g = self.glance(frames)
        out_extra: dict[str, Any] = {}
        if locations is not None:
            if locations.shape != (b, t, 2):
                raise ValueError(f"locations must be (B, T, 2) = ({b}, {t}, 2), got {tuple(locations.shape)}")
        elif policy == "learned":
            sample = self.training if sample is None else sample
            state = fmap.detach()  # pi never back-propagates into f_G (paper: f_G fixed in stage II)
            if self.policy_scope == "video":
                if t != self.num_frames:
                    raise ValueError(f"frames has T={t}; the policy was built for num_frames={self.num_frames}")
                state = state.reshape(b, 1, -1, *state.shape[-2:])
            pol = self.policy(state)
            actions = self.policy.act(pol.logits, sample, generator)
            out_extra = dict(actions=actions, values=pol.values, feature_maps=state)
            if policy_stats:
                dist = self.policy.distribution(pol.logits)
                out_extra.update(log_probs=dist.log_prob(actions), entropy=dist.entropy())
            locations = self.actions_to_locations(actions)
            if self.policy_scope == "video":
                locations = locations.expand(b, t, 2)
        elif policy in FIXED_POLICIES or policy == "center":
            locations = fixed_locations(
                policy, b, t, device=frames.device, generator=generator, sigma=self.gaussian_sigma
            )
        else:
            raise ValueError(f"policy={policy!r}; choose 'learned' or one of {FIXED_POLICIES}")
        if keep is None and self.skip_policy is not None and policy == "learned":
            keep, keep_probs = self._keep(fmap.detach(), None, sample, generator)[:2]
            out_extra.update(keep=keep, keep_probs=keep_probs)
        offsets = pixel_offsets(locations, frames.shape[-2:], self.patch_size)
        local = self.focus(frames, offsets, keep)
        logits, _ = self.classify(g, local)
        return AdaFocusOutput(logits, locations, offsets, g, local, **out_extra)

    def _keep(
        self, state: torch.Tensor, hidden: torch.Tensor | None, sample: bool | None, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        sample = self.training if sample is None else sample
        pol = self.skip_policy(state, hidden)
        probs = torch.sigmoid(pol.logits.squeeze(-1))
        if sample:
            keep = self.skip_policy.act(pol.logits, True, generator)
        else:
            keep = (probs >= self.keep_threshold).to(probs.dtype)
        return keep, probs, pol.hidden

    # ---- online ----------------------------------------------------------------------------
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
        """Online recognition: consume one frame ``(B, 3, H, W)``, return the prediction so far."""
        if self.policy_scope == "video":
            raise ValueError("policy_scope='video' picks one patch from the whole clip; online steps are undefined")
        if frame.dim() != 4:
            raise ValueError(f"frame must be (B, C, H, W), got a {frame.dim()}-D tensor")
        frames = frame.unsqueeze(1)
        self._check_frames(frames)
        b = frame.shape[0]
        fmap, g = self.glance(frames)
        extra: dict[str, Any] = {}
        hidden = state.policy_hidden
        if location is not None:
            loc = location.view(b, 1, 2)
        elif policy == "learned":
            sample = self.training if sample is None else sample
            pol = self.policy(fmap.detach(), hidden)
            hidden = pol.hidden
            action = self.policy.act(pol.logits, sample, generator)
            dist = self.policy.distribution(pol.logits)
            extra = dict(
                action=action[:, 0],
                log_prob=dist.log_prob(action)[:, 0],
                value=pol.values[:, 0],
                entropy=dist.entropy()[:, 0],
            )
            loc = self.actions_to_locations(action)
        else:
            loc = fixed_locations(policy, b, 1, device=frame.device, generator=generator, sigma=self.gaussian_sigma)
        keep, skip_hidden = None, state.skip_hidden
        if self.skip_policy is not None and policy == "learned" and location is None:
            keep, probs, skip_hidden = self._keep(fmap.detach(), skip_hidden, sample, generator)
            extra["keep"], extra["keep_prob"] = keep[:, 0], probs[:, 0]
        off = pixel_offsets(loc, frame.shape[-2:], self.patch_size)
        local = self.focus(frames, off, keep)
        logits, cls_state = self.classify(g, local, state.classifier_state)
        new_state = StreamState(hidden, cls_state, state.t + 1, skip_hidden)
        return StepOutput(logits[:, -1], loc[:, 0], off[:, 0], **extra), new_state

    # ---- helpers ---------------------------------------------------------------------------
    def set_trainable(self, **parts: bool) -> None:
        """Switch ``requires_grad`` per part: ``global_cnn``, ``local_cnn``, ``policy``, ``classifier``."""
        for name, flag in parts.items():
            if name not in ("global_cnn", "local_cnn", "policy", "skip_policy", "classifier"):
                raise ValueError(f"unknown part {name!r}")
            if getattr(self, name) is not None:
                getattr(self, name).requires_grad_(flag)

    @torch.no_grad()
    def solve_keep_threshold(self, keep_probs: torch.Tensor, keep_ratio: float) -> float:
        """Set rho so that f_L runs on the ``keep_ratio`` (eta) share of frames with the largest p_B."""
        if not 0.0 < keep_ratio <= 1.0:
            raise ValueError(f"keep_ratio must be in (0, 1], got {keep_ratio}")
        flat = keep_probs.flatten().float()
        k = max(1, round(keep_ratio * flat.numel()))
        rho = torch.topk(flat, k).values.min()
        self.keep_threshold.fill_(rho.item())
        return float(rho)

    def _check_frames(self, frames: torch.Tensor) -> None:
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


def _check_positive(**kwargs: int) -> None:
    for name, value in kwargs.items():
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer (>= 1), got {value!r}")
