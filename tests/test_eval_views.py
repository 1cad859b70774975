"""Multi-view test protocols: shifted clips (TSM twice sampling), three crops, full resolution, and the
averaging of the views' softmax scores in the stages' evaluation, Lightning test/predict and `adafocus predict`."""

import json

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from conftest import tiny_model
from torchvision import tv_tensors
from torchvision.transforms import v2

from adafocus import load_model
from adafocus.cli import main
from adafocus.data import VideoDataModule
from adafocus.data.encode import write_video
from adafocus.data.sampling import tsn_indices, tsn_test_indices
from adafocus.data.sources import VideoSource
from adafocus.data.transforms import ThreeCrop, apply_clip_transform, build_transform
from adafocus.predict import predict_video
from adafocus.training import WarmupStage

T, K, SIZE = 4, 5, 64


# ---- (a) clip indices ---------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 3, 4, 7, 16, 17, 100, 301])
def test_one_clip_is_the_single_view_clip(n):
    for t in (1, 4, 8):
        assert tsn_test_indices(n, t, 1) == [tsn_indices(n, t, train=False)]
        assert tsn_test_indices(n, t, 3)[0] == tsn_indices(n, t, train=False)  # clip 0 never moves


@pytest.mark.parametrize("n", [8, 9, 16, 30, 97])
def test_two_clips_are_tsm_twice_sampling(n):
    tick = n / T
    centres, starts = tsn_test_indices(n, T, 2)
    # TSM's _get_test_indices with twice_sample: segment centres, then segment starts (0-based here)
    assert centres == [int(tick / 2.0 + tick * x) for x in range(T)]
    assert starts == [int(tick * x) for x in range(T)]


@pytest.mark.parametrize("n,clips", [(8, 3), (30, 4), (97, 5), (12, 12)])
def test_clips_stay_in_their_segments_in_order(n, clips):
    tick = n / T
    out = tsn_test_indices(n, T, clips)
    assert len(out) == clips and len({tuple(c) for c in out}) == min(clips, int(tick))
    for c in out:
        assert c == sorted(c) and len(c) == T
        assert all(int(k * tick) <= i < (k + 1) * tick for k, i in enumerate(c))  # frame k from segment k


@pytest.mark.parametrize("n", [1, 2, 3])
def test_short_videos(n):
    out = tsn_test_indices(n, 8, 2)
    assert out[0] == tsn_indices(n, 8, train=False)
    for c in out:
        assert c == sorted(c) and all(0 <= i < n for i in c) and set(c) == set(range(n))
    assert tsn_test_indices(n, 8, 3, short_videos="last") == [tsn_indices(n, 8, train=False, short_videos="last")] * 3


def test_bad_clip_counts_are_refused():
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="num_clips"):
            tsn_test_indices(10, 4, bad)
    with pytest.raises(ValueError, match="test_crops"):
        VideoDataModule(num_classes=3, test_crops=2)
    with pytest.raises(ValueError, match="test_clips"):
        VideoDataModule(num_classes=3, test_clips=0)
    with pytest.raises(ValueError, match="crops"):
        build_transform(train=True, crops=3)


# ---- (b) three crops ----------------------------------------------------------------------------
@pytest.mark.parametrize("h,w", [(40, 100), (100, 40), (40, 40)])
def test_three_crops_land_at_centre_start_end_of_the_long_side(h, w):
    s = 40 if h == w else 32
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    frame = torch.stack([ys, xs, ys + xs]).to(torch.uint8)  # channel 0 encodes y, channel 1 x
    video = tv_tensors.Video(frame.expand(2, -1, -1, -1))  # two frames
    crops = ThreeCrop(s)(video)
    assert crops.shape == (3, 2, 3, s, s)
    long_axis, short_len, long_len = (1, h, w) if w >= h else (0, w, h)
    expected_starts = [round((long_len - s) / 2), 0, long_len - s]  # centre, start, end
    for c, start in enumerate(expected_starts):
        coords = crops[c, :, long_axis]  # the coordinate along the long side, (2, s, s)
        assert (coords[..., 0, 0] == start).all()
        assert int(coords.max()) == start + s - 1 and int(coords.min()) == start
        across = crops[c, :, 1 - long_axis]  # centred across
        assert int(across.min()) == round((short_len - s) / 2)
    torch.testing.assert_close(crops[0], v2.CenterCrop(s)(video).as_subclass(torch.Tensor), rtol=0, atol=0)


def test_three_crop_transform_first_view_is_the_centre_crop():
    x = torch.randint(0, 256, (3, 3, 48, 80), dtype=torch.uint8)
    one = apply_clip_transform(build_transform(train=False, input_size=32, scale_size=40), x)
    three = apply_clip_transform(build_transform(train=False, input_size=32, scale_size=40, crops=3), x)
    assert three.shape == (3, 3, 3, 32, 32) and three.dtype == torch.float32
    torch.testing.assert_close(three[0], one, rtol=0, atol=0)


# ---- fixtures: landscape videos and a list ------------------------------------------------------
@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    d = tmp_path_factory.mktemp("views")
    rng = np.random.default_rng(0)
    lines = []
    for i, n in enumerate((12, 9, 3, 16)):  # 3 < T: the short-video path too
        write_video(d / f"v{i}.mp4", [rng.integers(0, 255, (SIZE, 96, 3), dtype=np.uint8) for _ in range(n)], fps=8)
        lines.append(f"v{i}.mp4 {n} {i % K}")
    (d / "test.txt").write_text("\n".join(lines) + "\n")
    return d


def _data(videos, **kw) -> VideoDataModule:
    dm = VideoDataModule(
        test_list=str(videos / "test.txt"),
        root=str(videos),
        num_classes=K,
        num_frames=T,
        input_size=SIZE,
        scale_size=SIZE,
        batch_size=2,
        num_workers=0,
        on_error="raise",
        **kw,
    )
    dm.setup("test")
    return dm


def test_dataset_views_are_the_separate_clips_and_crops(videos):
    single = _data(videos).datasets["test"]
    multi = _data(videos, test_crops=3, test_clips=2).datasets["test"]
    three = build_transform(train=False, input_size=SIZE, scale_size=SIZE, crops=3)
    for i in range(len(single)):
        views = multi[i]["frames"]
        assert views.shape == (6, T, 3, SIZE, SIZE)
        torch.testing.assert_close(views[0], single[i]["frames"], rtol=0, atol=0)  # view 0 = today's input
        clip = VideoSource().open(str(videos / f"v{i}.mp4"))
        for j, idx in enumerate(tsn_test_indices(clip.num_frames, T, 2)):
            crops = apply_clip_transform(three, clip.read(idx))
            torch.testing.assert_close(views[3 * j : 3 * j + 3], crops, rtol=0, atol=0)  # clip-major
        clip.close()
    # one view keeps the 5-D batches exactly
    assert next(iter(_data(videos).test_dataloader()))["frames"].shape == (2, T, 3, SIZE, SIZE)
    assert next(iter(_data(videos, test_clips=2).test_dataloader()))["frames"].shape == (2, 2, T, 3, SIZE, SIZE)


# ---- (c) the stage averages the views' softmax scores ------------------------------------------
def _sharp_model(num_classes: int = K):
    """A tiny model whose scores move with the input: a random one predicts almost the same for every
    clip, where the mean of the probabilities and the softmax of the mean logits could not be told apart."""
    model = tiny_model(num_classes=num_classes)
    with torch.no_grad():
        model.classifier.fc.weight.mul_(300)
    return model


def _stage() -> WarmupStage:
    stage = WarmupStage(K, net=_sharp_model, eval_policy="learned")
    return stage.eval()


def _spy(metric, seen: list):
    update = metric.update

    def record(preds, target):
        seen.append(preds.detach().clone())
        return update(preds, target)

    metric.update = record


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer: the logs go nowhere
def test_stage_scores_are_the_mean_of_the_single_view_scores():
    stage = _stage()
    b, v = 3, 4
    frames, labels = torch.randn(b, v, T, 3, SIZE, SIZE), torch.tensor([0, 3, 1])
    seen: list[torch.Tensor] = []
    _spy(stage.test_metrics["top1"], seen)
    with torch.no_grad():
        loss = stage.test_step({"frames": frames, "label": labels}, 0)
        multi = seen.pop()
        for k in range(v):  # each view on its own, through the 5-D path
            stage.test_step({"frames": frames[:, k], "label": labels}, 0)
        single = torch.stack(seen)  # (V, B, K)
        logits = torch.stack([stage.model(frames[:, k], sample=False).logits for k in range(v)])  # (V, B, S, K)
    steps = torch.softmax(logits, -1)
    assert (torch.softmax(logits[:, :, -1].mean(0), -1) - single.mean(0)).abs().max() > 1e-3  # probs, not logits
    torch.testing.assert_close(multi, single.mean(0))
    torch.testing.assert_close(loss, -single.mean(0).gather(1, labels[:, None]).log().mean())
    # online accuracy: argmax of the per-step probabilities averaged over views
    stage.test_online.reset()
    with torch.no_grad():
        stage.test_step({"frames": frames, "label": labels}, 0)
    hits = (steps.mean(0).argmax(-1) == labels[:, None]).float().mean(0)
    torch.testing.assert_close(stage.test_online.compute(), hits)
    # predict: averaged probabilities, offsets of the first view
    with torch.no_grad():
        pred = stage.predict_step({"frames": frames, "index": torch.arange(b)}, 0)
        first = stage.model(frames[:, 0], sample=False)
    torch.testing.assert_close(pred["probs"], single.mean(0))
    assert torch.equal(pred["offsets"], first.offsets)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_stage0_validation_averages_the_views_scores():
    from adafocus.training import FullFrameStage

    stage = FullFrameStage(K, net=_sharp_model).eval()
    frames, labels = torch.randn(2, 3, T, 3, SIZE, SIZE), torch.tensor([0, 1])
    seen: list[torch.Tensor] = []
    _spy(stage.val_metrics["top1"], seen)
    with torch.no_grad():
        stage.validation_step({"frames": frames, "label": labels}, 0)
        for k in range(3):
            stage.validation_step({"frames": frames[:, k], "label": labels}, 0)
    torch.testing.assert_close(seen[0], torch.stack(seen[1:]).mean(0))


def test_trainer_test_with_three_crops_and_two_clips(videos):
    stage = _stage()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
    )
    (res,) = trainer.test(stage, datamodule=_data(videos, test_crops=3, test_clips=2), verbose=False)
    assert 0.0 <= res["test/top1"] <= 1.0 and np.isfinite(res["test/loss"])
    # the logged top-1 is that of the mean softmax over the six views of each video
    dm = _data(videos, test_crops=3, test_clips=2)
    with torch.no_grad():
        hits = []
        for batch in dm.test_dataloader():
            mean = torch.stack(
                [torch.softmax(stage.model(batch["frames"][:, k], sample=False).prediction, -1) for k in range(6)]
            ).mean(0)
            hits += (mean.argmax(-1) == batch["label"]).tolist()
    assert res["test/top1"] == pytest.approx(sum(hits) / len(hits))


# ---- (d) adafocus predict ----------------------------------------------------------------------
def test_predict_api_and_cli_average_the_views(videos, tmp_path, capsys):
    model = _sharp_model()
    torch.save({"config": model.config, "state_dict": model.state_dict()}, tmp_path / "model.pt")
    model = load_model(tmp_path / "model.pt")
    path = str(videos / "v0.mp4")
    res = predict_video(model, path, num_frames=T, topk=K, test_crops=3, test_clips=2, scale_size=SIZE)
    three = build_transform(train=False, input_size=SIZE, scale_size=SIZE, crops=3)
    clip = VideoSource().open(path)
    clips = tsn_test_indices(clip.num_frames, T, 2)
    views = torch.cat([apply_clip_transform(three, clip.read(idx)) for idx in clips])
    clip.close()
    with torch.no_grad():  # each view on its own
        expected = torch.stack([torch.softmax(model(x[None], sample=False).prediction[0], -1) for x in views]).mean(0)
    scores, classes = expected.topk(K)
    assert [c["class"] for c in res["topk"]] == classes.tolist()
    assert [c["score"] for c in res["topk"]] == pytest.approx(scores.tolist(), abs=1e-6)
    single = predict_video(model, path, num_frames=T, topk=K, scale_size=SIZE)  # first view = the single-view run
    assert res["boxes"] == single["boxes"] and res["frame_indices"] == single["frame_indices"] == clips[0]
    assert res["views"] == {"crops": 3, "clips": 2} and "views" not in single
    rc = main(
        [
            "predict",
            path,
            "--checkpoint",
            str(tmp_path / "model.pt"),
            "--json",
            "--topk",
            str(K),
            "--num-frames",
            str(T),
            "--scale-size",
            str(SIZE),
            "--test-crops",
            "3",
            "--test-clips",
            "2",
        ]
    )
    out = capsys.readouterr()
    assert rc == 0, out.err
    (cli,) = json.loads(out.out)
    assert [c["score"] for c in cli["topk"]] == pytest.approx(scores.tolist(), abs=1e-6)
    rc = main(["predict", path, "--checkpoint", str(tmp_path / "model.pt"), "--test-clips", "0"])
    assert rc == 1 and "--test-clips" in capsys.readouterr().err
    with pytest.raises(ValueError, match="test_crops"):
        predict_video(model, path, test_crops=2)
