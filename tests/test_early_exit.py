"""Early exit to a GFLOPs budget: thresholds fitted on a fixture meet the budget; streaming stops early."""

import pytest
import torch

from adafocus import AdaFocus, AdaFocusTSM, AdaFocusV2
from adafocus import early_exit as ee


def fixture_logits(n: int = 400, steps: int = 8, classes: int = 5) -> torch.Tensor:
    """Per-step logits whose confidence grows with the step, at a different pace per video."""
    g = torch.Generator().manual_seed(0)
    pace = torch.rand(n, 1, 1, generator=g)
    base = torch.randn(n, 1, classes, generator=g)
    grow = torch.arange(1, steps + 1).view(1, steps, 1) * pace
    return base * grow + 0.1 * torch.randn(n, steps, classes, generator=g)


@pytest.mark.parametrize("confidence", ["max_logit", "max_prob"])
@pytest.mark.parametrize("share", [0.2, 0.35, 0.5, 0.7, 0.9])
def test_fitted_thresholds_meet_the_budget(share, confidence):
    logits = fixture_logits()
    gflops = torch.arange(1, 9, dtype=torch.float64) * 0.5  # 0.5 GFLOPs a step, 4.0 for all 8
    policy = ee.fit_exit_policy(logits, gflops, share * 4.0, confidence=confidence)
    steps = ee.exit_steps(ee.confidences(logits, confidence), policy.thresholds)
    spent = float(gflops[steps].mean())
    assert spent == pytest.approx(policy.expected_gflops)
    assert spent <= share * 4.0 + 1e-9  # meets the budget ...
    assert spent >= share * 4.0 - 0.5 / 20  # ... and uses it: within 1/20 of a step of the target
    assert sum(policy.exit_shares) == pytest.approx(1.0)


def test_exit_steps_take_the_first_confident_step_and_the_last_answers():
    conf = torch.tensor([[0.9, 0.1, 0.1], [0.1, 0.8, 0.9], [0.1, 0.1, 0.1]])
    thr = torch.tensor([0.5, 0.5, float("inf")])
    assert ee.exit_steps(conf, thr).tolist() == [0, 1, 2]


def test_budget_edges():
    logits, gflops = fixture_logits(), torch.arange(1, 9, dtype=torch.float64)
    with pytest.raises(ValueError, match="below one step"):
        ee.fit_exit_policy(logits, gflops, 0.5)
    full = ee.fit_exit_policy(logits, gflops, 100.0)
    assert full.exit_shares[-1] == 1.0 and full.expected_gflops == 8.0
    with pytest.raises(ValueError, match="one entry per step"):
        ee.fit_exit_policy(logits, gflops[:3], 4.0)


def _tiny(cls, **kw):
    torch.manual_seed(0)
    return cls(5, global_backbone="tiny_cnn", local_backbone="tiny_cnn", input_size=64, patch_size=32,
               policy_hidden_dim=16, **kw).eval()  # fmt: skip


@pytest.mark.parametrize("cls,kw", [(AdaFocus, {}), (AdaFocusV2, dict(num_frames=4, classifier_hidden_dim=32))])
def test_streaming_stops_at_the_exit_with_the_offline_prediction(cls, kw):
    model = _tiny(cls, **kw)
    clips = torch.randn(6, 4, 3, 64, 64)
    logits = model(clips).logits
    gflops = ee.step_gflops(model, 4)
    torch.testing.assert_close(gflops, gflops[0] * torch.arange(1, 5, dtype=torch.float64))
    policy = ee.fit_exit_policy(logits, gflops, 0.5 * float(gflops[-1]))
    _, _, steps = ee.exit_accuracy(logits, torch.zeros(6, dtype=torch.long), policy)
    for i in range(6):
        out, used, offsets = ee.stream_with_exit(model, clips[i], policy)
        assert torch.equal(offsets, model(clips[i : i + 1]).offsets[0, :used])
        assert used == int(steps[i]) + 1
        torch.testing.assert_close(out, logits[i, steps[i]], rtol=1e-4, atol=1e-5)


def test_one_decision_per_video_has_no_steps_to_exit_after():
    model = AdaFocusTSM(5, global_backbone="tsm_tiny_mobilenet", local_backbone="tsm_tiny_resnet", input_size=64,
                        patch_size=32, grid_size=3, global_frames=2, local_frames=4, policy_hidden_dim=8,
                        policy_channels=4)  # fmt: skip
    with pytest.raises(ValueError, match="once per video"):
        ee.step_gflops(model, 4)
