"""The continuous patch-location policy of the official Something-Something code (``ppo_continuous``).

An actor-critic like :class:`~adafocus.models.policy.PolicyNetwork` (1x1 convolution, linear
embedding, GRU, actor and critic heads), whose actor gives the *mean* of a Gaussian over the
normalised location ``(y, x)``: ``mu = sigmoid(actor(h))``, with a fixed standard deviation
``action_std`` in both coordinates (official ``MultivariateNormal(mu, scale_tril=diag(action_std))``,
run with ``action_std=0.25``). Training samples ``a ~ N(mu, std^2 I)`` and clips it to ``[0, 1]``;
the log-probability PPO uses is the Gaussian density *of the clipped action*, as in the official
code (a clipped sample on the border is scored as if it had been drawn there). Test time takes
``mu``. The entropy is a constant of ``action_std``: the PPO entropy bonus gives no gradient.

With ``batch_norm`` (official ``actorcritic_with_bn=True``) the encoder has a BatchNorm after the
convolution and after the linear layer; in training mode it needs more than one clip per batch.
"""

from __future__ import annotations

import math

import torch
from torch.distributions import Independent, Normal

from .policy import PolicyNetwork, PolicyOutput


class GaussianPolicy(PolicyNetwork):
    """Recurrent actor-critic with a Gaussian over continuous ``(y, x)`` patch locations.

    :class:`~adafocus.models.policy.PolicyNetwork`'s encoder, GRU and critic, with a 2-unit actor
    whose sigmoid is the mean.

    Args:
        in_channels: channels of pi's input map (AdaFocus-TSM: the glance maps of a decision's frames,
            stacked on channels, e.g. 8 x 1280).
        feature_hw: its spatial size (7x7 for a 224 input).
        hidden_dim: embedding and GRU width (official: 1024).
        reduced_channels: output channels of the 1x1 convolution (official: 64).
        batch_norm: BatchNorm in the encoder (official Sth-Sth runs: yes).
        action_std: standard deviation of each coordinate (official Sth-Sth runs: 0.25).
    """

    def __init__(
        self,
        in_channels: int,
        feature_hw: tuple[int, int],
        *,
        hidden_dim: int = 1024,
        reduced_channels: int = 64,
        batch_norm: bool = True,
        action_std: float = 0.25,
    ) -> None:
        if not action_std > 0:
            raise ValueError(f"action_std must be positive, got {action_std}")
        super().__init__(in_channels, feature_hw, 2, hidden_dim=hidden_dim, reduced_channels=reduced_channels,
                         batch_norm=batch_norm)  # fmt: skip
        self.distribution_kind = "gaussian"
        self.action_std = float(action_std)

    def forward(self, feature_maps: torch.Tensor, hidden: torch.Tensor | None = None) -> PolicyOutput:
        """``(B, S, C, h, w)`` -> :class:`PolicyOutput` whose ``logits`` are the means ``(B, S, 2)`` in ``[0, 1]``."""
        out = super().forward(feature_maps, hidden)
        return PolicyOutput(torch.sigmoid(out.logits), out.values, out.hidden)

    def distribution(self, means: torch.Tensor) -> Independent:
        """``N(means, action_std^2 I)`` over the last dim: ``log_prob`` / ``entropy`` are ``(B, S)``."""
        return Independent(Normal(means, torch.full_like(means, self.action_std)), 1)

    def act(self, means: torch.Tensor, sample: bool, generator: torch.Generator | None = None) -> torch.Tensor:
        """A location ``(B, S, 2)``: sampled and clipped to ``[0, 1]`` (training), or the mean (test).

        ``generator`` makes sampling reproducible independently of the global RNG (exact resume).
        """
        if not sample:
            return means
        noise = torch.randn(means.shape, device=means.device, dtype=means.dtype, generator=generator)
        return (means.detach() + self.action_std * noise).clamp(0.0, 1.0)

    def entropy_value(self) -> float:
        """The (constant) entropy of the 2-D Gaussian: ``2 * (1/2) log(2 pi e std^2)``."""
        return math.log(2 * math.pi * math.e * self.action_std**2)
