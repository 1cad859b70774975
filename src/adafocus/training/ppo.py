"""The PPO update for pi / pi' (clipped surrogate + value loss - entropy bonus).

Defaults follow the official AdaFocus code: returns normalised over the batch, advantage =
normalised return - V, loss = -min(ratio*A, clip(ratio)*A) + 0.5*MSE(V, R) - 0.01*H.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.policy import PolicyNetwork
from .reward import discounted_returns


def normalised_returns(rewards: torch.Tensor, gamma: float) -> torch.Tensor:
    returns = discounted_returns(rewards, gamma)
    return (returns - returns.mean()) / (returns.std() + 1e-5)


def ppo_loss(
    policy: PolicyNetwork,
    feature_maps: torch.Tensor,
    actions: torch.Tensor,
    old_log_probs: torch.Tensor,
    returns: torch.Tensor,
    *,
    clip: float = 0.2,
    value_coef: float = 0.5,
    entropy_coef: float = 0.01,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Re-score the stored rollout with the current policy and return ``(loss, stats)``."""
    log_probs, values, entropy = policy.evaluate(feature_maps, actions)
    ratio = torch.exp(log_probs - old_log_probs)
    adv = returns - values.detach()
    surrogate = torch.min(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    value_loss = F.mse_loss(values, returns)
    loss = -surrogate.mean() + value_coef * value_loss - entropy_coef * entropy.mean()
    stats = {
        "policy_loss": -surrogate.mean().detach(),
        "value_loss": value_loss.detach(),
        "entropy": entropy.mean().detach(),
        "clip_frac": ((ratio - 1).abs() > clip).float().mean().detach(),
    }
    return loss, stats
