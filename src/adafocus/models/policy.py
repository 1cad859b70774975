"""The patch-selection policy pi (paper Fig. 3) and the frame-skipping policy pi' (AdaFocus+).

Both share one architecture (as in the official code): a 1x1 convolution reduces the un-pooled
global feature map e_G, a linear layer embeds it, a GRU carries the history, and two heads give
the action distribution (actor) and the state value (critic, for PPO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.distributions import Bernoulli, Categorical, Distribution


@dataclass
class PolicyOutput:
    logits: torch.Tensor  # (B, T, A) actor logits (A = 1 for a Bernoulli policy)
    values: torch.Tensor  # (B, T) critic estimates
    hidden: torch.Tensor  # (1, B, hidden) GRU state after the last step


class PolicyNetwork(nn.Module):
    """Recurrent actor-critic over global feature maps.

    Args:
        in_channels: channels of e_G (1280 for MobileNet-V2).
        feature_hw: spatial size (h, w) of e_G (7x7 for a 224 input).
        num_actions: G*G patch candidates; 1 for the Bernoulli "keep frame" policy.
        hidden_dim: embedding and GRU width (1024 in the paper).
        reduced_channels: output channels of the 1x1 convolution (32 in the official code).
        distribution: ``"categorical"`` for pi, ``"bernoulli"`` for pi'.
        batch_norm: BatchNorm after the convolution and the linear layer (the official
            Something-Something ``actorcritic_with_bn``); then the official indices are 0 and 4.
    """

    def __init__(
        self,
        in_channels: int,
        feature_hw: tuple[int, int],
        num_actions: int,
        *,
        hidden_dim: int = 1024,
        reduced_channels: int = 32,
        distribution: Literal["categorical", "bernoulli"] = "categorical",
        batch_norm: bool = False,
    ) -> None:
        super().__init__()
        if distribution not in ("categorical", "bernoulli"):
            raise ValueError(f"distribution must be 'categorical' or 'bernoulli', got {distribution!r}")
        if distribution == "bernoulli" and num_actions != 1:
            raise ValueError("a bernoulli policy has num_actions=1")
        h, w = feature_hw
        bn2d = [nn.BatchNorm2d(reduced_channels)] if batch_norm else []
        bn1d = [nn.BatchNorm1d(hidden_dim)] if batch_norm else []
        # the indices match the official ActorCritic.state_encoder's, easing checkpoint conversion
        self.encoder = nn.Sequential(
            nn.Conv2d(in_channels, reduced_channels, kernel_size=1, bias=False),
            *bn2d,
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(reduced_channels * h * w, hidden_dim),
            *bn1d,
            nn.ReLU(),
        )
        self.gru = nn.GRU(hidden_dim, hidden_dim, batch_first=True)
        self.actor = nn.Linear(hidden_dim, num_actions)
        self.critic = nn.Linear(hidden_dim, 1)
        self.distribution_kind = distribution
        self.hidden_dim = hidden_dim
        self.in_channels = in_channels
        self.feature_hw = (h, w)

    def forward(self, feature_maps: torch.Tensor, hidden: torch.Tensor | None = None) -> PolicyOutput:
        """``feature_maps``: ``(B, T, C, h, w)``; runs the GRU over all T steps in one call."""
        b, t = feature_maps.shape[:2]
        if tuple(feature_maps.shape[2:]) != (self.in_channels, *self.feature_hw):
            raise ValueError(
                f"policy expects feature maps (B, T, {self.in_channels}, {self.feature_hw[0]}, {self.feature_hw[1]}), "
                f"got {tuple(feature_maps.shape)}; were the frames resized away from the model's input_size?"
            )
        z = self.encoder(feature_maps.flatten(0, 1)).view(b, t, -1)
        out, hidden = self.gru(z, hidden)
        return PolicyOutput(self.actor(out), self.critic(out).squeeze(-1), hidden)

    def distribution(self, logits: torch.Tensor) -> Distribution:
        if self.distribution_kind == "categorical":
            return Categorical(logits=logits)
        return Bernoulli(logits=logits.squeeze(-1))

    def act(self, logits: torch.Tensor, sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample an action (training) or take the most probable one (test).

        ``generator`` makes sampling reproducible independently of the global RNG (exact resume).
        """
        if self.distribution_kind == "categorical":
            if not sample:
                return logits.argmax(-1)
            probs = torch.softmax(logits.detach().float(), -1)
            flat = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
            return flat.view(probs.shape[:-1])
        p = torch.sigmoid(logits.detach().squeeze(-1).float())
        if not sample:
            return (p >= 0.5).to(logits.dtype)
        u = torch.rand(p.shape, device=p.device, generator=generator)
        return (u < p).to(logits.dtype)

    def evaluate(
        self, feature_maps: torch.Tensor, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Re-run the policy on stored states: ``(log_probs, values, entropy)``, each ``(B, T)`` (PPO)."""
        out = self(feature_maps)
        dist = self.distribution(out.logits)
        return dist.log_prob(actions), out.values, dist.entropy()
