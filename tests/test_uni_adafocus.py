"""Uni-AdaFocus: frame selection, the scaled crop, the Monte-Carlo temporal loss, exits and their GFLOPs."""

import pytest
import torch
import torch.nn.functional as F

from adafocus import UniAdaFocus, load_model, save_model
from adafocus import early_exit as ee
from adafocus.flops import count_flops, exit_gflops
from adafocus.models.crop import sample_patches
from adafocus.models.uni_adafocus import mc_frame_logits
from adafocus.models.uni_policies import select_frames


def tiny_uni(**kw) -> UniAdaFocus:
    torch.manual_seed(0)
    args = dict(global_backbone="tiny_cnn", local_backbone="tiny_cnn", input_size=64, patch_size=32, min_side=24,
                num_segments=12, glance_segments=4, focus_segments=4, spatial_hidden_dim=8, temporal_hidden_dim=8,
                classifier_hidden_dim=32)  # fmt: skip
    return UniAdaFocus(5, **{**args, **kw})


def test_uniform_weights_pick_evenly_spread_frames():
    idx = select_frames(torch.full((1, 4), 0.25), 48, 16, sample=False)
    assert idx.tolist() == [[1 + 3 * i for i in range(16)]]  # quantile (i + 1/2) / 16 of 48 frames


def test_peaked_weights_gather_frames_where_they_are_high():
    w = torch.tensor([[0.01, 0.01, 0.97, 0.01]])  # the third quarter of the clip
    idx = select_frames(w, 48, 8, sample=False)[0]
    assert ((idx >= 24) & (idx < 36)).sum() >= 6
    for seed in range(5):  # sampled quantiles: still strictly increasing and inside the clip
        s = select_frames(w.expand(3, 4), 48, 16, sample=True, generator=torch.Generator().manual_seed(seed))
        assert (s.diff(dim=1) > 0).all() and s.min() >= 0 and s.max() <= 47


def test_hand_computed_inverse_cdf():
    # CDF 0, .5, .75, 1 at segment edges 0, 1/3, 2/3, 1: quantile 1/4 lies at 1/6, quantile 3/4 at 2/3
    idx = select_frames(torch.tensor([[0.5, 0.25, 0.25]]), 60, 2, sample=False)
    assert idx.tolist() == [[10, 40]]


def test_scaled_window_is_the_resized_region():
    frames = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    corner = torch.tensor([[8 / 16, 4 / 16]])  # window 48 px: top-left (8, 4)
    got = sample_patches(frames, corner, 24, torch.tensor([[48.0, 48.0]]))
    expected = F.interpolate(frames[:, :, 8:56, 4:52], size=24, mode="bilinear", align_corners=False)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_mc_frame_logits_without_drops_is_the_weighted_mean():
    logits, w = torch.randn(2, 4, 3), torch.softmax(torch.randn(2, 4), 1)
    torch.testing.assert_close(mc_frame_logits(logits, w, drops=1, samples=3), (logits * w.unsqueeze(-1)).sum(1))
    w.requires_grad_(True)
    mc_frame_logits(logits, w, drops=3, generator=torch.Generator().manual_seed(0)).sum().backward()
    assert w.grad.abs().sum() > 0  # the temporal policy learns through it


def test_forward_shapes_exits_and_detached_focus():
    model = tiny_uni()
    out = model(torch.randn(2, 12, 3, 64, 64))
    assert out.logits.shape == (2, 8, 5) and model.exit_logits(out.logits).shape == (2, 5, 5)
    assert out.frame_indices.shape == (2, 4) and (out.frame_indices.diff(dim=1) > 0).all()
    assert ((out.window_sides >= 24) & (out.window_sides <= 64)).all()
    out.local_features.sum().backward()  # f_L's patches use detached actions (official)
    assert all(p.grad is None for p in model.spatial_policy.parameters())
    train = model.train().forward_train(torch.randn(2, 12, 3, 64, 64))
    train.spatial_logits.sum().backward()  # the auxiliary crop of e_G's map trains the spatial policy
    assert sum(p.grad.abs().sum() for p in model.spatial_policy.parameters() if p.grad is not None) > 0


def test_exit_gflops_and_early_exit_meet_a_budget():
    model = tiny_uni().eval()
    gf = exit_gflops(model)
    assert gf.shape == (5,) and float(gf[-1]) == pytest.approx(count_flops(model).total)
    assert (gf.diff() > 0).all()
    torch.testing.assert_close(ee.step_gflops(model, 12), gf)
    logits = model.exit_logits(model(torch.randn(20, 12, 3, 64, 64)).logits)
    budget = float(gf[0] + gf[-1]) / 2
    policy = ee.fit_exit_policy(logits, gf, budget)
    assert policy.expected_gflops <= budget + 1e-9


def test_save_and_load_round_trip(tmp_path):
    model = tiny_uni().eval()
    back = load_model(save_model(model, tmp_path / "uni.pt"))
    x = torch.randn(1, 12, 3, 64, 64)
    assert type(back) is UniAdaFocus and torch.equal(back(x).logits, model(x).logits)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="multiple of glance_segments"):
        tiny_uni(num_segments=10)
    with pytest.raises(ValueError, match="12 frames"):
        tiny_uni()(torch.randn(1, 8, 3, 64, 64))
