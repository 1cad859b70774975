"""Classifiers f_C that aggregate per-frame features into per-step predictions.

Both take global features ``(B, T, D_G)`` (or ``None`` when e_G is not reused) and local features
``(B, T, D_L)`` plus an optional carried state, and return per-step logits ``(B, T, K)``: the
logits after step t use frames 1..t only, which is what online recognition needs.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class GRUClassifier(nn.Module):
    """A one-layer GRU over ``[e_G, e_L]`` followed by dropout and a linear layer (paper default)."""

    def __init__(self, input_dim: int, num_classes: int, *, hidden_dim: int = 1024, dropout: float = 0.5) -> None:
        super().__init__()
        self.gru = nn.GRU(input_dim, hidden_dim, batch_first=True)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(hidden_dim, num_classes)
        self.hidden_dim = hidden_dim

    def forward(
        self, global_feats: torch.Tensor | None, local_feats: torch.Tensor, state: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        x = local_feats if global_feats is None else torch.cat([global_feats, local_feats], dim=-1)
        out, state = self.gru(x, state)
        return self.fc(self.dropout(out)), state

    def counterfactual(
        self, global_feats: torch.Tensor | None, local_feats: torch.Tensor, alt_local_feats: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(B, T, K)`` where step t sees the real history 1..t-1 but ``alt_local_feats[:, t]``
        at step t (Eq. 7 / Eq. 10). All B*T single steps run as one batched GRU call."""
        b, t = local_feats.shape[:2]
        cat = (lambda loc: loc) if global_feats is None else (lambda loc: torch.cat([global_feats, loc], dim=-1))
        out, _ = self.gru(cat(local_feats))
        before = torch.cat([out.new_zeros(b, 1, out.shape[2]), out[:, :-1]], dim=1)
        alt, _ = self.gru(cat(alt_local_feats).reshape(b * t, 1, -1), before.reshape(1, b * t, -1).contiguous())
        return self.fc(self.dropout(alt)).view(b, t, -1)


class FrameAverageClassifier(nn.Module):
    """Per-frame linear heads averaged over frames (the TSM variant's consensus).

    The logit of frame t is ``W_G e_G,t + W_L e_L,t + b``, i.e. a linear layer over the concatenated
    features; step t's prediction is the mean of frames 1..t. The carried state is
    ``(sum of frame logits, frames seen)``. If global and local frame counts differ (AdaFocus-TSM),
    only the final prediction is defined and a ``(B, 1, K)`` tensor is returned.
    """

    def __init__(self, global_dim: int | None, local_dim: int, num_classes: int, *, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc_local = nn.Linear(local_dim, num_classes)
        self.fc_global = nn.Linear(global_dim, num_classes, bias=False) if global_dim else None

    def forward(
        self, global_feats: torch.Tensor | None, local_feats: torch.Tensor, state: Any = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, int]]:
        if self.fc_global is not None and global_feats is not None and global_feats.shape[1] != local_feats.shape[1]:
            local_logits = self.fc_local(self.dropout(local_feats))
            final = local_logits.mean(1) + self.fc_global(self.dropout(global_feats)).mean(1)
            return final.unsqueeze(1), (final * local_feats.shape[1], local_feats.shape[1])
        if self.fc_global is not None and global_feats is None:
            raise ValueError("this classifier reuses e_G: global_feats is required")
        frame_logits = self._frame_logits(global_feats, local_feats)
        return self._cumulative(frame_logits, state)

    def _frame_logits(self, global_feats: torch.Tensor | None, local_feats: torch.Tensor) -> torch.Tensor:
        logits = self.fc_local(self.dropout(local_feats))
        if self.fc_global is not None:
            logits = logits + self.fc_global(self.dropout(global_feats))
        return logits

    def _cumulative(self, frame_logits: torch.Tensor, state: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, int]]:
        total, seen = state if state is not None else (0.0, 0)
        cum = torch.cumsum(frame_logits, dim=1) + (total.unsqueeze(1) if torch.is_tensor(total) else total)
        steps = torch.arange(1, frame_logits.shape[1] + 1, device=frame_logits.device) + seen
        return cum / steps.view(1, -1, 1).to(cum.dtype), (cum[:, -1], int(steps[-1]))

    def counterfactual(
        self, global_feats: torch.Tensor | None, local_feats: torch.Tensor, alt_local_feats: torch.Tensor
    ) -> torch.Tensor:
        """Logits ``(B, T, K)`` where step t averages the real frames 1..t-1 with the alternative frame t."""
        real = self._frame_logits(global_feats, local_feats)
        alt = self._frame_logits(global_feats, alt_local_feats)
        before = torch.cumsum(real, dim=1) - real
        steps = torch.arange(1, real.shape[1] + 1, device=real.device, dtype=real.dtype).view(1, -1, 1)
        return (before + alt) / steps


class PoolingClassifier(nn.Module):
    """AdaFocusV2's f_C: an MLP per frame, a running max over the frames so far, one head per step.

    Step t's logits are ``head_t(max_{s<=t} relu(bn(W x_s)))`` (official ``PoolingClassifier``);
    the carried state is ``(running max, steps seen)``. ``num_steps`` heads: clips have at most that
    many frames.
    """

    def __init__(
        self, input_dim: int, num_classes: int, *, num_steps: int, hidden_dim: int = 4096, dropout: float = 0.2
    ) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU())
        self.heads = nn.ModuleList(nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_dim, num_classes))
                                   for _ in range(num_steps))  # fmt: skip
        self.num_steps = num_steps

    def forward(
        self, global_feats: torch.Tensor | None, local_feats: torch.Tensor, state: Any = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, int]]:
        x = local_feats if global_feats is None else torch.cat([global_feats, local_feats], dim=-1)
        b, t = x.shape[:2]
        pooled, seen = state if state is not None else (None, 0)
        if seen + t > self.num_steps:
            raise ValueError(f"this classifier has {self.num_steps} per-step heads; got frame {seen + t}")
        z = self.mlp(x.flatten(0, 1)).view(b, t, -1)
        if pooled is not None:
            z = torch.cat([pooled.unsqueeze(1), z], dim=1)
        z = torch.cummax(z, dim=1).values[:, -t:]
        logits = torch.stack([self.heads[seen + i](z[:, i]) for i in range(t)], dim=1)
        return logits, (z[:, -1], seen + t)


class ProbabilityAverageClassifier(nn.Module):
    """One linear layer over ``[e_G, e_L]`` per frame, softmax per frame, probabilities averaged over
    frames (the official AdaFocus V1 ``consensus='fc'``, ``LinearCLassifier``).

    Step t's output is ``log(mean_{s<=t} softmax(W x_s + b))``: log-probabilities, so their softmax is
    the averaged probability itself and cross-entropy on them is the official ``NLLLoss`` on
    ``log(avg)``. It is computed as a running log-sum-exp of per-frame log-softmax (no ``log(0)``);
    the carried state is ``(log of the summed frame probabilities (B, K), frames seen)``.
    """

    def __init__(self, input_dim: int, num_classes: int, *, dropout: float = 0.5) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(input_dim, num_classes)

    def _frame_log_probs(self, global_feats: torch.Tensor | None, local_feats: torch.Tensor) -> torch.Tensor:
        x = local_feats if global_feats is None else torch.cat([global_feats, local_feats], dim=-1)
        return torch.log_softmax(self.fc(self.dropout(x)), dim=-1)

    @staticmethod
    def _steps(like: torch.Tensor, seen: int = 0) -> torch.Tensor:
        steps = torch.arange(seen + 1, seen + like.shape[1] + 1, device=like.device, dtype=like.dtype)
        return steps.view(1, -1, 1)

    def forward(
        self, global_feats: torch.Tensor | None, local_feats: torch.Tensor, state: Any = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, int]]:
        log_sum = torch.logcumsumexp(self._frame_log_probs(global_feats, local_feats), dim=1)
        prev, seen = state if state is not None else (None, 0)
        if prev is not None:
            log_sum = torch.logaddexp(log_sum, prev.unsqueeze(1))
        steps = self._steps(log_sum, seen)
        return log_sum - steps.log(), (log_sum[:, -1], seen + log_sum.shape[1])

    def counterfactual(
        self, global_feats: torch.Tensor | None, local_feats: torch.Tensor, alt_local_feats: torch.Tensor
    ) -> torch.Tensor:
        """Log-probabilities ``(B, T, K)`` where step t averages the real frames 1..t-1 with the alternative frame t."""
        real = self._frame_log_probs(global_feats, local_feats)
        alt = self._frame_log_probs(global_feats, alt_local_feats)
        # log of the probability sums before step t: -inf (a zero sum) before the first frame
        before = torch.cat([torch.full_like(real[:, :1], float("-inf")), torch.logcumsumexp(real, dim=1)[:, :-1]], 1)
        return torch.logaddexp(before, alt) - self._steps(real).log()
