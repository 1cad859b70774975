"""AdaFocusV2: the differentiable crop, gradients through it, the frame order, online = offline."""

import pytest
import torch

from adafocus import AdaFocusV2, AdaFocusV2TSM, load_model, save_model
from adafocus.models.adafocus_v2 import coarse_to_fine
from adafocus.models.crop import crop_patches, pixel_offsets, sample_patches


def tiny_v2(**kw) -> AdaFocusV2:
    torch.manual_seed(0)
    args = dict(global_backbone="tiny_cnn", local_backbone="tiny_cnn", input_size=64, patch_size=32, num_frames=4,
                policy_hidden_dim=16, policy_channels=4, classifier_hidden_dim=32)  # fmt: skip
    return AdaFocusV2(10, **{**args, **kw})


@pytest.mark.parametrize("hw", [(64, 64), (48, 80)])
def test_differentiable_crop_at_whole_pixels_is_the_integer_crop(hw):
    h, w = hw
    frames = torch.randn(6, 3, h, w, generator=torch.Generator().manual_seed(0))
    offsets = torch.tensor([[0, 0], [h - 24, w - 24], [7, 3], [1, w - 25], [h - 24, 0], [11, 13]])
    locations = offsets.double() / torch.tensor([h - 24.0, w - 24.0])
    assert torch.equal(pixel_offsets(locations, (h, w), 24), offsets)
    got = sample_patches(frames, locations.float(), 24)
    torch.testing.assert_close(got, crop_patches(frames, offsets, 24), rtol=0, atol=1e-4)


def test_differentiable_crop_interpolates_between_pixels():
    frames = torch.arange(64.0).view(1, 1, 8, 8).expand(1, 3, 8, 8).contiguous()  # value = 8 * row + col
    half = torch.tensor([[0.5 / 4, 0.5 / 4]])  # top-left corner at pixel (0.5, 0.5) for P = 4
    patch = sample_patches(frames, half, 4)
    expected = frames[:, :, :4, :4] + 4.5  # bilinear: half a row (+4) and half a column (+0.5)
    torch.testing.assert_close(patch, expected, rtol=0, atol=1e-4)


def test_gradients_reach_the_policy_through_the_crop_but_not_the_glance():
    model = tiny_v2()
    out = model(torch.randn(2, 4, 3, 64, 64))
    out.local_features.sum().backward()  # only the patch path: f_L <- crop <- pi
    policy_grad = sum(p.grad.abs().sum() for p in model.policy.parameters() if p.grad is not None)
    assert policy_grad > 0
    assert all(p.grad is None or not p.grad.any() for p in model.global_cnn.parameters())  # pi's input is detached


def test_the_policy_learns_to_move_the_patch_toward_what_the_loss_wants():
    torch.manual_seed(0)
    frames = torch.zeros(1, 1, 3, 64, 64)
    frames[..., 40:, 40:] = 1.0  # bright bottom-right corner
    loc = torch.full((1, 2), 0.6, requires_grad=True)  # patch rows/cols 24..47: the edge at 40 is inside
    (-sample_patches(frames[:, 0], loc, 24).mean()).backward()  # more brightness = lower loss
    assert (loc.grad < 0).all()  # gradient descent moves the corner down and right


def test_coarse_to_fine_is_the_official_order():
    assert coarse_to_fine(16) == [7, 0, 15, 3, 11, 1, 5, 9, 13, 2, 4, 6, 8, 10, 12, 14]
    for t in (1, 2, 3, 5, 8, 12, 17):
        assert sorted(coarse_to_fine(t)) == list(range(t))


def test_online_steps_match_the_offline_forward():
    model = tiny_v2().eval()
    x = torch.randn(2, 4, 3, 64, 64)
    out = model(x)
    state, ordered = model.init_state(), model.order_frames(x)
    for t in range(4):
        step, state = model.step(ordered[:, t], state)
        torch.testing.assert_close(step.logits, out.logits[:, t], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(step.location, out.locations[:, t], rtol=1e-5, atol=1e-6)
    # per-frame outputs come back in the clip's order
    assert torch.equal(model.in_time_order(out.locations)[:, model.frame_order], out.locations)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="frame_order"):
        tiny_v2(frame_order=[0, 1, 1, 2])
    with pytest.raises(ValueError, match="4 frames"):
        tiny_v2()(torch.randn(1, 3, 3, 64, 64))
    with pytest.raises(ValueError, match="frame skipping"):
        tiny_v2()(torch.randn(1, 4, 3, 64, 64), keep=torch.ones(1, 4))


def test_v2_tsm_one_location_per_video_and_heads_on_detached_features():
    torch.manual_seed(0)
    model = AdaFocusV2TSM(7, global_backbone="tsm_tiny_mobilenet", local_backbone="tsm_tiny_resnet", input_size=64,
                          patch_size=32, global_frames=2, local_frames=4, policy_hidden_dim=16, policy_head_dim=8,
                          policy_channels=4)  # fmt: skip
    out = model(torch.randn(2, 4, 3, 64, 64))
    assert out.logits.shape == (2, 1, 7)
    assert torch.equal(out.locations, out.locations[:, :1].expand_as(out.locations))
    out.logits.sum().backward()  # the fused logits train f_C only (official new_fc on detached features)
    assert all(p.grad is None for p in model.local_cnn.parameters())
    _, local_logits = model.auxiliary_logits(model(torch.randn(2, 4, 3, 64, 64)))
    local_logits.sum().backward()
    assert sum(p.grad.abs().sum() for p in model.policy.parameters() if p.grad is not None) > 0


def test_save_and_load_round_trip(tmp_path):
    model = tiny_v2(frame_order="temporal").eval()
    save_model(model, tmp_path / "v2.pt")
    back = load_model(tmp_path / "v2.pt")
    x = torch.randn(1, 4, 3, 64, 64)
    assert type(back) is AdaFocusV2 and not back.reorders
    assert torch.equal(back(x).logits, model(x).logits)
