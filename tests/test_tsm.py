"""Temporal shift, AdaFocus-TSM (8 global / 12 local frames, one location per video) and TSM+."""

import pytest
import torch

from adafocus import AdaFocusTSM, TSMPlus, create_backbone
from adafocus.flops import count_flops
from adafocus.models.adafocus_tsm import glance_indices
from adafocus.models.backbones.tsm import TemporalShift, set_num_frames, temporal_shift
from adafocus.models.crop import crop_patches
from adafocus.training.reward import rollout

TINY_TSM = dict(global_backbone="tsm_tiny_mobilenet", local_backbone="tsm_tiny_resnet", input_size=64,
                patch_size=32, grid_size=3, policy_hidden_dim=16, policy_channels=4, dropout=0.0)  # fmt: skip


def tiny_tsm(**kw) -> AdaFocusTSM:
    return AdaFocusTSM(5, **{**TINY_TSM, **kw})


def test_temporal_shift_exact_values():
    t, c = 3, 8  # fold_div=4 -> fold = 2 channels each way
    x = torch.tensor([[10.0 * f + ch for ch in range(c)] for f in range(t)]).view(t, c, 1, 1)
    x = torch.cat([x, x + 100])  # two videos: the shift must not cross the clip boundary
    out = temporal_shift(x, num_frames=t, fold_div=4).view(2, t, c)
    expected = torch.tensor(
        [
            [10, 11, 0, 0, 4, 5, 6, 7],  # frame 0: ch 0-1 from frame 1, ch 2-3 zero (nothing before)
            [20, 21, 2, 3, 14, 15, 16, 17],  # frame 1: ch 0-1 from frame 2, ch 2-3 from frame 0
            [0, 0, 12, 13, 24, 25, 26, 27],  # frame 2: ch 0-1 zero (nothing after), ch 2-3 from frame 1
        ],
        dtype=torch.float32,
    )
    torch.testing.assert_close(out[0], expected)
    torch.testing.assert_close(out[1], torch.where(expected == 0, 0.0, expected + 100))
    with pytest.raises(ValueError, match="multiple of num_frames"):
        temporal_shift(torch.zeros(4, 8, 1, 1), 3)


def test_shift_is_residual_and_mixes_frames_only_within_a_clip():
    net = create_backbone("tsm_tiny_resnet").eval()
    blocks = [m for m in net.modules() if type(m).__name__ == "BasicBlock"]
    assert blocks and all(isinstance(b.conv1, TemporalShift) for b in blocks)  # residual branch only
    mn2 = create_backbone("tsm_tiny_mobilenet")
    shifted = [m for m in mn2.modules() if type(m).__name__ == "InvertedResidual" and m.use_res_connect]
    assert shifted and all(isinstance(b.conv[0], TemporalShift) for b in shifted)
    assert set_num_frames(net, 2) == 4
    x = torch.randn(4, 3, 32, 32)  # two clips of two frames
    y = x.clone()
    y[1] += 1  # change frame 1 of clip 0
    with torch.no_grad():
        a, b = net(x), net(y)
    assert not torch.allclose(a[0], b[0])  # frame 0 sees frame 1 through the shift
    torch.testing.assert_close(a[2:], b[2:])  # clip 1 untouched


def test_tsm_backbone_loads_plain_torchvision_weights():
    from torchvision.models.resnet import BasicBlock, ResNet

    sd = ResNet(BasicBlock, [1, 1, 1, 1]).state_dict()
    net = create_backbone("tsm_tiny_resnet", weights=sd)
    torch.testing.assert_close(net.model.layer1[0].conv1.net.weight, sd["layer1.0.conv1.weight"])


def test_glance_indices_are_segment_centres():
    assert glance_indices(12, 8) == [0, 2, 3, 5, 6, 8, 9, 11]
    assert glance_indices(8, 8) == list(range(8)) and glance_indices(4, 2) == [1, 3]


def test_adafocus_tsm_shapes_one_location_per_video():
    model = tiny_tsm(global_frames=8, local_frames=12).eval()
    assert model.policy.in_channels == 8 * model.global_cnn.num_features
    frames = torch.randn(2, 12, 3, 64, 64)
    seen = {}
    model.global_cnn.register_forward_hook(lambda m, i, o: seen.update(g=i[0].shape) or None)
    model.local_cnn.register_forward_hook(lambda m, i, o: seen.update(l=i[0]) or None)
    out = model(frames)
    assert out.logits.shape == (2, 1, 5)
    assert out.global_features.shape == (2, 8, model.global_cnn.num_features)
    assert out.local_features.shape == (2, 12, model.local_cnn.num_features)
    assert out.actions.shape == (2, 1, 2) and out.feature_maps.shape[1] == 1  # Gaussian pi: one (y, x)
    torch.testing.assert_close(out.locations[:, :1], out.actions)  # eval: the mean, used as is
    grid = tiny_tsm(global_frames=8, local_frames=12, policy_type="categorical").eval()(frames)
    assert grid.actions.shape == (2, 1) and grid.feature_maps.shape[1] == 1
    assert seen["g"][0] == 16 and seen["l"].shape == (24, 3, 32, 32)  # one f_G call, one f_L call
    assert out.locations.shape == (2, 12, 2)
    assert torch.equal(out.offsets, out.offsets[:, :1].expand_as(out.offsets))  # one location per video
    expected = crop_patches(frames.flatten(0, 1), out.offsets.reshape(-1, 2), 32)
    torch.testing.assert_close(seen["l"], expected)
    # fixed policies also give one location per video; explicit per-video locations are accepted
    rnd = model(frames, policy="random", generator=torch.Generator().manual_seed(0))
    assert torch.equal(rnd.offsets, rnd.offsets[:, :1].expand_as(rnd.offsets))
    loc = model(frames, locations=torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert loc.offsets[0, 0].tolist() == [0, 0] and loc.offsets[1, 5].tolist() == [32, 32]
    with pytest.raises(ValueError, match="clips must have 12 frames"):
        model(torch.randn(2, 8, 3, 64, 64))


def test_adafocus_tsm_glance_frames_and_flops():
    model = tiny_tsm(global_frames=2, local_frames=4).eval()
    frames = torch.randn(1, 4, 3, 64, 64)
    a = model(frames, locations=torch.zeros(1, 2))
    b = model(frames, glance_input=frames[:, [1, 3]], locations=torch.zeros(1, 2))  # = the default choice
    torch.testing.assert_close(a.logits, b.logits)
    br = count_flops(model, 2, local_frames=4)
    assert br.global_frames == 2 and br.local_frames == 4 and br.policy_steps == 1 and br.total > 0


def test_video_rollout_one_step():
    model = tiny_tsm(global_frames=2, local_frames=4).eval()
    ro = rollout(model, torch.randn(3, 4, 3, 64, 64), torch.tensor([0, 1, 2]), generator=torch.Generator())
    assert ro.actions.shape == (3, 1, 2) and ro.rewards.shape == ro.log_probs.shape == (3, 1)
    assert 0 <= ro.actions.min() and ro.actions.max() <= 1  # sampled, clipped to the frame
    assert ro.logits.shape == (3, 1, 5) and ro.rewards.abs().max() <= 1
    lp, _, _ = model.policy.evaluate(ro.feature_maps, ro.actions)
    torch.testing.assert_close(lp, ro.log_probs)


def test_tsm_plus_shapes():
    model = TSMPlus(5, global_backbone="tsm_tiny_mobilenet", local_backbone="tsm_tiny_resnet", num_frames=4).eval()
    assert model.fc.in_features == model.global_cnn.num_features + model.local_cnn.num_features
    assert model(torch.randn(2, 4, 3, 64, 64)).shape == (2, 5)


def test_training_stages_train_adafocus_tsm(tmp_path):
    """Stages 0-III accept AdaFocus-TSM (stage II: one PPO step per video); each changes its parts."""
    import pytorch_lightning as pl

    from adafocus.training import FinetuneStage, FullFrameStage, PolicyStage, WarmupStage
    from adafocus.training.toydata import ToyClipDataModule

    def net(k: int) -> AdaFocusTSM:
        return AdaFocusTSM(k, **{**TINY_TSM, "global_frames": 2, "local_frames": 4})

    dm = ToyClipDataModule(num_classes=3, num_frames=4, size=64, num_train=4, num_val=2, batch_size=2)
    before = net(3).state_dict()
    init = None
    expected = {FullFrameStage: {"global_cnn", "local_cnn", "global_head"}, WarmupStage: {"local_cnn", "classifier"},
                PolicyStage: {"policy"}, FinetuneStage: {"classifier"}}  # fmt: skip
    for stage_cls, parts in expected.items():
        torch.manual_seed(0)
        stage = stage_cls(
            num_classes=3, net=net, init_from=init, **({"lr_local": 0.01} if stage_cls is WarmupStage else {})
        )
        start = {k: v.clone() for k, v in stage.model.state_dict().items()}
        val = 1 if stage_cls is PolicyStage else 0  # validate once (the (B, 1, K) logits), keep it fast
        trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_progress_bar=False,
                             enable_model_summary=False, limit_val_batches=val, num_sanity_val_steps=0,
                             enable_checkpointing=False, default_root_dir=tmp_path)  # fmt: skip
        trainer.fit(stage, datamodule=dm)
        after = stage.model.state_dict()
        changed = {k.split(".")[0] for k in after if "num_batches" not in k and not torch.equal(after[k], start[k])}
        assert changed == parts, stage_cls.__name__
        init = str(tmp_path / f"{stage_cls.__name__}.ckpt")
        trainer.save_checkpoint(init)
    assert before.keys() == after.keys()
