"""``AdaFocus`` (Wang et al., ICCV 2021): one patch per frame, chosen online; AdaFocus+ skips f_L.

Usable without Lightning::

    model = AdaFocus(num_classes=200)                 # MobileNet-V2 + ResNet-50, P=128, 7x7 grid
    out = model(frames)                               # frames: (B, T, 3, 224, 224)
    out.prediction                                    # offline prediction after all T frames

    state = model.init_state()                        # online / streaming
    for frame in stream:
        step, state = model.step(frame, state)        # step.logits: prediction so far
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from .backbones import WeightsArg
from .base import AdaFocusBase, check_positive
from .classifier import FrameAverageClassifier, GRUClassifier, ProbabilityAverageClassifier
from .policy import PolicyNetwork


class AdaFocus(AdaFocusBase):
    """AdaFocus: pi picks a patch in every frame from that frame's e_G and its own history.

    Takes :class:`~adafocus.models.base.AdaFocusBase`'s arguments (backbones, weights, ``patch_size``,
    ``grid_size``, ``input_size``, ``glance_size``, ``gaussian_sigma``) and:

    Args:
        policy_hidden_dim / policy_channels: width of pi's GRU and of its 1x1 convolution.
        classifier: ``"gru"`` (paper), ``"fc"`` (frame-averaged logits) or ``"fc_probs"`` (frame-averaged
            softmax probabilities, the official V1 ``consensus='fc'``; its per-step "logits" are log-probabilities).
        classifier_hidden_dim: width of the GRU classifier.
        reuse_global: feed pooled e_G to f_C beside e_L (Table 4); ``False`` uses e_L only.
        dropout: dropout before the classifier's last linear layer.
        skip_policy: AdaFocus+ - add pi', a Bernoulli policy deciding per frame whether f_L runs;
            at test time f_L runs where p_B >= ``keep_threshold`` (rho, see :meth:`solve_keep_threshold`).
        policy_scope, num_frames: kept so that configs and files of earlier versions load;
            ``policy_scope="video"`` (one patch per video) is :class:`~adafocus.AdaFocusTSM` now.
    """

    frame_skipping = True

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
        classifier: Literal["gru", "fc", "fc_probs"] = "gru",
        classifier_hidden_dim: int = 1024,
        reuse_global: bool = True,
        dropout: float = 0.5,
        policy_scope: Literal["frame"] = "frame",
        num_frames: int | None = None,
        gaussian_sigma: float = 0.25,
        skip_policy: bool = False,
    ) -> None:
        if policy_scope != "frame":
            raise ValueError(
                f"policy_scope={policy_scope!r}: one patch per video is its own model now, "
                "adafocus.AdaFocusTSM(global_frames=T, local_frames=T, global_backbone=..., local_backbone=...)"
            )
        if classifier not in ("gru", "fc", "fc_probs"):
            raise ValueError(f"classifier must be 'gru', 'fc' or 'fc_probs', got {classifier!r}")
        check_positive(policy_hidden_dim=policy_hidden_dim, policy_channels=policy_channels)
        super().__init__(num_classes, global_backbone=global_backbone, local_backbone=local_backbone,
                         global_weights=global_weights, local_weights=local_weights, patch_size=patch_size,
                         grid_size=grid_size, input_size=input_size, glance_size=glance_size,
                         gaussian_sigma=gaussian_sigma, config=locals())  # fmt: skip
        self.reuse_global = reuse_global
        c, h, w = self.glance_map_shape()

        def make_policy(actions: int, distribution: Literal["categorical", "bernoulli"]) -> PolicyNetwork:
            return PolicyNetwork(c, (h, w), actions, hidden_dim=policy_hidden_dim, reduced_channels=policy_channels,
                                 distribution=distribution)  # fmt: skip

        self.policy = make_policy(grid_size * grid_size, "categorical")
        self.skip_policy = make_policy(1, "bernoulli") if skip_policy else None
        self.register_buffer("keep_threshold", torch.tensor(0.5))
        d_g, d_l = self.global_cnn.num_features, self.local_cnn.num_features
        if classifier == "gru":
            self.classifier: nn.Module = GRUClassifier(
                (d_g if reuse_global else 0) + d_l, num_classes, hidden_dim=classifier_hidden_dim, dropout=dropout
            )
        elif classifier == "fc_probs":
            self.classifier = ProbabilityAverageClassifier((d_g if reuse_global else 0) + d_l, num_classes,
                                                           dropout=dropout)  # fmt: skip
        else:
            self.classifier = FrameAverageClassifier(d_g if reuse_global else None, d_l, num_classes, dropout=dropout)

    def classify(
        self, global_feats: torch.Tensor, local_feats: torch.Tensor, state: Any = None
    ) -> tuple[torch.Tensor, Any]:
        return self.classifier(global_feats if self.reuse_global else None, local_feats, state)

    def counterfactual(
        self, global_feats: torch.Tensor, local_feats: torch.Tensor, alt_local_feats: torch.Tensor
    ) -> torch.Tensor:
        return self.classifier.counterfactual(global_feats if self.reuse_global else None, local_feats, alt_local_feats)

    def keep_decisions(
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
