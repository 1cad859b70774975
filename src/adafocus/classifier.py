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

    def hidden_states(self, global_feats: torch.Tensor | None, local_feats: torch.Tensor) -> torch.Tensor:
        """GRU hidden state *before* each step, ``(B, T, hidden)`` (h_0 = 0): lets a reward compare
        alternative inputs at step t under the same history in one batched call."""
        x = local_feats if global_feats is None else torch.cat([global_feats, local_feats], dim=-1)
        out, _ = self.gru(x)
        return torch.cat([out.new_zeros(out.shape[0], 1, out.shape[2]), out[:, :-1]], dim=1)

    def step_from(
        self, hidden_before: torch.Tensor, global_feats: torch.Tensor | None, local_feats: torch.Tensor
    ) -> torch.Tensor:
        """Logits of a single step for every (b, t) at once, from the given prior hidden states."""
        b, t = local_feats.shape[:2]
        x = local_feats if global_feats is None else torch.cat([global_feats, local_feats], dim=-1)
        out, _ = self.gru(x.reshape(b * t, 1, -1), hidden_before.reshape(1, b * t, -1).contiguous())
        return self.fc(self.dropout(out)).view(b, t, -1)


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
        local_logits = self.fc_local(self.dropout(local_feats))
        if self.fc_global is not None and global_feats is not None and global_feats.shape[1] != local_feats.shape[1]:
            final = local_logits.mean(1) + self.fc_global(self.dropout(global_feats)).mean(1)
            return final.unsqueeze(1), (final * local_feats.shape[1], local_feats.shape[1])
        frame_logits = local_logits
        if self.fc_global is not None:
            if global_feats is None:
                raise ValueError("this classifier reuses e_G: global_feats is required")
            frame_logits = frame_logits + self.fc_global(self.dropout(global_feats))
        total, seen = state if state is not None else (0.0, 0)
        cum = torch.cumsum(frame_logits, dim=1) + (total.unsqueeze(1) if torch.is_tensor(total) else total)
        steps = torch.arange(1, frame_logits.shape[1] + 1, device=frame_logits.device) + seen
        return cum / steps.view(1, -1, 1).to(cum.dtype), (cum[:, -1], int(steps[-1]))
