"""Rollouts and rewards for stage II (paper Eq. 6, 7 and 10)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.base import AdaFocusBase
from ..models.crop import pixel_offsets
from ..models.fixed_policies import random_locations


@dataclass
class Rollout:
    """One batch of T decisions per video, everything detached."""

    feature_maps: torch.Tensor  # (B, S, C, h, w) the policies' inputs (S decisions per clip)
    actions: torch.Tensor  # (B, S) pi's candidate indices
    log_probs: torch.Tensor  # (B, S) log pi(a_s) at rollout time
    rewards: torch.Tensor  # (B, S) Eq. 7
    logits: torch.Tensor  # (B, S, K) predictions along the rollout
    keep: torch.Tensor | None = None  # (B, T) pi' decisions (AdaFocus+)
    keep_log_probs: torch.Tensor | None = None
    keep_rewards: torch.Tensor | None = None  # (B, T) Eq. 10


def confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Softmax probability of the true class, ``(B, T)``, for logits ``(B, T, K)`` and labels ``(B,)``."""
    probs = torch.softmax(logits.float(), dim=-1)
    return probs.gather(-1, labels.view(-1, 1, 1).expand(-1, logits.shape[1], 1)).squeeze(-1)


def discounted_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    """``R_t = sum_{k >= t} gamma^(k-t) r_k`` along dim 1 of ``(B, T)`` rewards (Eq. 6)."""
    out = torch.empty_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in range(rewards.shape[1] - 1, -1, -1):
        running = rewards[:, t] + gamma * running
        out[:, t] = running
    return out


@torch.no_grad()
def rollout(
    model: AdaFocusBase,
    frames: torch.Tensor,
    labels: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    skip_penalty: float = 1e-6,
    glance_input: torch.Tensor | None = None,
) -> Rollout:
    """Sample pi (and pi') on a batch and score every decision against its counterfactual.

    Eq. 7: ``r_s = p_y(chosen patch at s | history) - p_y(random patch at s | same history)``, one
    Monte-Carlo random patch per decision, all B*S counterfactual steps in one batched call
    (:meth:`~adafocus.models.base.AdaFocusBase.counterfactual`; with one decision per video, as in
    AdaFocus-TSM, that is the official Sth-Sth reward with ``video_div=1``).
    Eq. 10 (AdaFocus+): ``r'_t = b_t * (p_y(history, f_L on) - p_y(history, f_L off) - lambda P^2)``.
    The history is what really happened: skipped frames contribute all-zero local features.
    ``glance_input``: f_G's own frames (the data module's ``glance_frames``), else taken from the clip.
    """
    b, t = frames.shape[:2]
    fmap, g = model.glance(model.glance_frames(frames) if glance_input is None else glance_input)
    state = model.policy_input(fmap)
    pol = model.policy(state)
    actions = model.policy.act(pol.logits, True, generator)
    log_probs = model.policy.distribution(pol.logits).log_prob(actions)
    hw = frames.shape[-2:]

    def patches_at(locations: torch.Tensor) -> torch.Tensor:  # (B, S, 2) -> f_L features (B, T, D_L)
        return model.focus(frames, pixel_offsets(model.frame_locations(locations, t), hw, model.patch_size))

    chosen = patches_at(model.actions_to_locations(actions))
    rand = patches_at(random_locations(b, actions.shape[1], device=frames.device, generator=generator))
    keep = keep_lp = keep_rewards = None
    history = chosen
    if model.skip_policy is not None:
        sp = model.skip_policy(fmap)
        keep = model.skip_policy.act(sp.logits, True, generator)
        keep_lp = model.skip_policy.distribution(sp.logits).log_prob(keep)
        history = chosen * keep.unsqueeze(-1)
    p_chosen = confidence(model.counterfactual(g, history, chosen), labels)
    rewards = p_chosen - confidence(model.counterfactual(g, history, rand), labels)
    if keep is not None:
        p_off = confidence(model.counterfactual(g, history, torch.zeros_like(chosen)), labels)
        keep_rewards = keep * (p_chosen - p_off - skip_penalty * model.patch_size**2)
    logits, _ = model.classify(g, history)
    return Rollout(state, actions, log_probs, rewards, logits, keep, keep_lp, keep_rewards)
