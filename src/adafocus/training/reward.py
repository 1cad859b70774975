"""Rollouts and rewards for stage II (paper Eq. 6, 7 and 10)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..crop import pixel_offsets
from ..fixed_policies import random_locations
from ..model import AdaFocus


@dataclass
class Rollout:
    """One batch of T decisions per video, everything detached."""

    feature_maps: torch.Tensor  # (B, T, C, h, w) the policies' inputs
    actions: torch.Tensor  # (B, T) pi's candidate indices
    log_probs: torch.Tensor  # (B, T) log pi(a_t) at rollout time
    rewards: torch.Tensor  # (B, T) Eq. 7
    logits: torch.Tensor  # (B, T, K) predictions along the rollout
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
    model: AdaFocus,
    frames: torch.Tensor,
    labels: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    skip_penalty: float = 1e-6,
) -> Rollout:
    """Sample pi (and pi') on a batch and score every decision against its counterfactual.

    Eq. 7: ``r_t = p_y(chosen patch at t | history) - p_y(random patch at t | same history)``, one
    Monte-Carlo random patch per step, all B*T counterfactual steps in one batched call.
    Eq. 10 (AdaFocus+): ``r'_t = b_t * (p_y(history, f_L on) - p_y(history, f_L off) - lambda P^2)``.
    The history is what really happened: skipped frames contribute all-zero local features.
    """
    if getattr(model, "policy_scope", "frame") == "video":
        return video_rollout(model, frames, labels, generator=generator)
    b, t = frames.shape[:2]
    fmap, g = model.glance(frames)
    pol = model.policy(fmap)
    actions = model.policy.act(pol.logits, True, generator)
    log_probs = model.policy.distribution(pol.logits).log_prob(actions)
    hw = frames.shape[-2:]
    chosen = model.focus(frames, pixel_offsets(model.actions_to_locations(actions), hw, model.patch_size))
    rand_locs = random_locations(b, t, device=frames.device, generator=generator)
    rand = model.focus(frames, pixel_offsets(rand_locs, hw, model.patch_size))
    keep = keep_lp = keep_rewards = None
    history = chosen
    if model.skip_policy is not None:
        sp = model.skip_policy(fmap)
        keep = model.skip_policy.act(sp.logits, True, generator)
        keep_lp = model.skip_policy.distribution(sp.logits).log_prob(keep)
        history = chosen * keep.unsqueeze(-1)
    g_in = g if model.reuse_global else None
    cf = model.classifier.counterfactual
    p_chosen = confidence(cf(g_in, history, chosen), labels)
    rewards = p_chosen - confidence(cf(g_in, history, rand), labels)
    if keep is not None:
        p_off = confidence(cf(g_in, history, torch.zeros_like(chosen)), labels)
        keep_rewards = keep * (p_chosen - p_off - skip_penalty * model.patch_size**2)
    logits, _ = model.classify(g, history)
    return Rollout(fmap, actions, log_probs, rewards, logits, keep, keep_lp, keep_rewards)


@torch.no_grad()
def video_rollout(
    model, frames: torch.Tensor, labels: torch.Tensor, *, generator: torch.Generator | None = None
) -> Rollout:
    """One decision per video (AdaFocus-TSM, ``policy_scope="video"``): a single PPO step.

    Eq. 7 with T = 1: ``r = p_y(clip cropped at the chosen location) - p_y(clip cropped at a
    random location)`` (the official Sth-Sth reward with ``video_div=1``). Tensors are ``(B, 1)``.
    """
    b, t = frames.shape[:2]
    gin = model.select_glance_frames(frames) if hasattr(model, "select_glance_frames") else frames
    fmap, g = model.glance(gin)
    state = fmap.reshape(b, 1, -1, *fmap.shape[-2:])  # all frames' e_G stacked on channels
    pol = model.policy(state)
    actions = model.policy.act(pol.logits, True, generator)
    log_probs = model.policy.distribution(pol.logits).log_prob(actions)
    hw = frames.shape[-2:]

    def clip_logits(locs: torch.Tensor) -> torch.Tensor:  # (B, 1, 2) -> final logits (B, 1, K)
        offsets = pixel_offsets(locs.expand(b, t, 2), hw, model.patch_size)
        return model.classify(g, model.focus(frames, offsets))[0][:, -1:]

    logits = clip_logits(model.actions_to_locations(actions))
    rand = clip_logits(random_locations(b, 1, device=frames.device, generator=generator))
    rewards = confidence(logits, labels) - confidence(rand, labels)
    return Rollout(state, actions, log_probs, rewards, logits)
