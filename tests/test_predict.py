import argparse
import json
import os

import numpy as np
import pytest
import torch
from conftest import tiny_model
from PIL import Image

from adafocus import CheckpointError, load_model
from adafocus.cli import main
from adafocus.cli.predict import POLICIES as CLI_POLICIES
from adafocus.cli.predict import is_lightning_predict
from adafocus.data.encode import write_video
from adafocus.data.sampling import tsn_indices
from adafocus.data.sources import VideoSource
from adafocus.data.transforms import apply_clip_transform, build_transform
from adafocus.predict import POLICIES, predict_video, read_clip


def _video(path, n=20, h=72, w=96, seed=0):
    rng = np.random.default_rng(seed)
    write_video(path, [rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for _ in range(n)], fps=8)
    return str(path)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("predict")
    torch.manual_seed(0)
    model = tiny_model(num_classes=5)
    torch.save({"config": model.config, "state_dict": model.state_dict()}, d / "model.pt")  # = adafocus export
    (d / "bad.mp4").write_bytes(b"\x00\x01 not a video " * 64)
    return dict(dir=d, model=str(d / "model.pt"), a=_video(d / "a.mp4"), b=_video(d / "b.mp4", n=7, seed=1))


def _run(capsys, *argv):
    rc = main(["predict", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _expected(model, path, t, scale_size):
    """The model run directly on frames decoded and transformed with the data layer."""
    clip = VideoSource().open(path)
    frames = clip.read(tsn_indices(clip.num_frames, t, train=False))
    clip.close()
    x = apply_clip_transform(build_transform(train=False, input_size=64, scale_size=scale_size), frames)
    model.eval()
    with torch.no_grad():
        out = model(x[None], sample=False)
    return torch.softmax(out.logits[0, -1], -1), out.offsets[0]


def test_cli_json_matches_the_model_on_the_same_frames(files, capsys):
    rc, out, err = _run(capsys, files["a"], "--checkpoint", files["model"], "--json", "--topk", "3")
    assert rc == 0, err
    (res,) = json.loads(out)
    model = load_model(files["model"])
    probs, offsets = _expected(model, files["a"], 16, round(64 * 256 / 224))
    scores, classes = probs.topk(3)
    assert [c["class"] for c in res["topk"]] == classes.tolist()
    assert [c["score"] for c in res["topk"]] == pytest.approx(scores.tolist(), abs=1e-6)
    assert res["boxes"] == [[y, x, 32, 32] for y, x in offsets.tolist()]
    assert res["num_frames"] == 16 and res["video_frames"] == 20 and "keep" not in res
    # the Python API gives the same document
    api = predict_video(model, files["a"], topk=3)
    assert api["boxes"] == res["boxes"] and [c["class"] for c in api["topk"]] == [c["class"] for c in res["topk"]]
    assert [c["score"] for c in api["topk"]] == pytest.approx([c["score"] for c in res["topk"]], abs=1e-6)


def test_text_output_labels_and_num_frames(files, capsys, tmp_path):
    names = tmp_path / "classes.txt"
    names.write_text("zero\none\ntwo\nthree\nfour\n")
    rc, out, err = _run(capsys, files["b"], "--checkpoint", files["model"], "--num-frames", "4", "--topk", "2",
                        "--labels", str(names))  # fmt: skip
    assert rc == 0, err
    assert "top-2:" in out and "T=4 of 7 frames" in out and "patches" in out
    assert any(n in out for n in ("zero", "one", "two", "three", "four"))
    names5 = ["c0", "c1", "c2", "c3", "c4"]
    res = predict_video(load_model(files["model"]), files["b"], num_frames=4, class_names=names5)
    assert len(res["boxes"]) == 4 and res["topk"][0]["name"] == f"c{res['topk'][0]['class']}"


def test_stage_checkpoint_and_adafocus_plus(tmp_path, capsys):
    model = tiny_model(num_classes=4, skip_policy=True)
    ckpt = tmp_path / "stage.ckpt"
    stage = {
        "adafocus_config": model.config,
        "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()} | {"other.x": torch.zeros(1)},
        "hyper_parameters": {"lr": 0.1, "_class_path": "adafocus.training.FinetuneStage"},  # plain, like ours
        "datamodule_hyper_parameters": {"num_frames": 6, "scale_size": 80},
    }
    torch.save(stage, ckpt)
    loaded = load_model(ckpt)
    assert (loaded.preprocess.num_frames, loaded.preprocess.scale_size) == (6, 80) and not loaded.training
    from adafocus.training.export import export_checkpoint, load_exported

    exported = export_checkpoint(ckpt, tmp_path / "exported.pt")  # keeps the clip settings for predict
    reloaded = load_exported(exported)
    assert load_model(exported).preprocess == loaded.preprocess == reloaded.preprocess and reloaded.training
    torch.save({**stage, "hyper_parameters": {"ns": argparse.Namespace(a=1)}}, tmp_path / "objects.ckpt")
    with pytest.raises(CheckpointError, match=r"objects\.ckpt: refused.*argparse\.Namespace.*trust=True"):
        load_model(tmp_path / "objects.ckpt")  # a file that needs unpickling needs an explicit opt-in
    assert load_model(tmp_path / "objects.ckpt", trust=True).preprocess == loaded.preprocess
    video = _video(tmp_path / "v.mp4", n=9)
    rc, out, err = _run(capsys, video, "--checkpoint", str(ckpt), "--json", "--policy", "learned")
    assert rc == 0, err
    (res,) = json.loads(out)
    assert res["num_frames"] == 6 and len(res["keep"]) == 6 and all(isinstance(k, bool) for k in res["keep"])
    probs, _ = _expected(loaded, video, 6, 80)
    assert res["topk"][0]["score"] == pytest.approx(float(probs.max()), abs=1e-6)


def test_list_with_corrupt_and_missing_files(files, capsys):
    d = files["dir"]
    lst = d / "videos.txt"
    lst.write_text("# comment\na.mp4 20 1\nbad.mp4 0 2\nmissing.mp4 3\n\nb.mp4\n")
    rc, out, err = _run(capsys, str(lst), "--checkpoint", files["model"], "--json")
    assert rc == 1
    res = json.loads(out)
    assert [r.get("error") is None for r in res] == [True, False, False, True]
    assert res[0]["label"] == 1 and res[0]["topk"] and len(res[3]["boxes"]) == 16
    assert f"{lst}:3" in err and "bad.mp4" in err and "not a readable video" in err
    assert f"{lst}:4" in err and "missing.mp4" in err and "file not found" in err
    assert "Traceback" not in err


def test_directory_with_a_corrupt_file(files, capsys):
    rc, out, err = _run(capsys, str(files["dir"]), "--checkpoint", files["model"], "--json", "--topk", "1")
    assert rc == 1
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in json.loads(out)}
    assert set(by_name) == {"a.mp4", "b.mp4", "bad.mp4"}
    assert by_name["a.mp4"]["topk"] and by_name["b.mp4"]["topk"] and "error" in by_name["bad.mp4"]
    assert "bad.mp4" in err


def test_single_unreadable_file_is_one_line(files, capsys, tmp_path):
    rc, out, err = _run(capsys, str(files["dir"] / "bad.mp4"), "--checkpoint", files["model"])
    assert rc == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and "bad.mp4" in err and "Traceback" not in err
    rc, _, err = _run(capsys, str(tmp_path / "nope.mp4"), "--checkpoint", files["model"])
    assert rc == 1 and "nope.mp4" in err and "not found" in err
    rc, _, err = _run(capsys, files["a"], "--checkpoint", str(tmp_path / "nope.pt"))
    assert rc == 1 and "nope.pt" in err


def test_visualize_writes_png_and_gif(files, capsys, tmp_path):
    out_dir = tmp_path / "viz"
    rc, out, err = _run(capsys, files["b"], "--checkpoint", files["model"], "--num-frames", "4",
                        "--visualize", str(out_dir), "--json")  # fmt: skip
    assert rc == 0, err
    (res,) = json.loads(out)
    png, gif = out_dir / "b.png", out_dir / "b.gif"
    assert res["visualization"] == {"png": str(png), "gif": str(gif)}
    assert png.stat().st_size > 0 and gif.stat().st_size > 0
    with Image.open(gif) as im:
        assert im.n_frames == 4
    with Image.open(png) as im:
        assert im.format == "PNG"


def test_one_location_per_video_model_and_wrong_num_frames(tmp_path, capsys):
    from adafocus import AdaFocusTSM, save_model

    model = AdaFocusTSM(3, global_backbone="tiny_cnn", local_backbone="tiny_cnn", input_size=64, patch_size=32,
                        grid_size=3, global_frames=4, local_frames=4, policy_hidden_dim=16)  # fmt: skip
    path = save_model(model, tmp_path / "video_scope.pt")
    video = _video(tmp_path / "v.mp4", n=10)
    assert len(predict_video(load_model(path), video)["boxes"]) == 4  # T fixed by the model
    rc, _, err = _run(capsys, video, "--checkpoint", str(path), "--num-frames", "6")
    assert rc == 1 and "clips must have 4 frames" in err and "Traceback" not in err


def test_lightning_routing_rule():
    assert CLI_POLICIES == POLICIES  # the command line's choices, written without importing torch
    assert is_lightning_predict(["--config", "x.yaml"]) and is_lightning_predict(["-c", "x.yaml"])
    assert is_lightning_predict(["--trainer.accelerator=cpu"]) and is_lightning_predict(["--ckpt_path", "x"])
    assert not is_lightning_predict(["video.mp4", "--checkpoint", "m.pt", "--device", "cpu", "--delimiter", ","])


def test_fast_and_int8_glance_flags(files, capsys):
    inputs = str(files["dir"])  # a.mp4, b.mp4 and the corrupt bad.mp4
    rc, out, _ = _run(capsys, inputs, "--checkpoint", files["model"], "--json")
    ref = {r["path"]: r for r in json.loads(out)}
    rc_fast, out, _ = _run(capsys, inputs, "--checkpoint", files["model"], "--json", "--fast")
    fast = {r["path"]: r for r in json.loads(out)}
    assert rc == rc_fast == 1 and set(fast) == set(ref)  # bad.mp4 still reported, the others predicted
    for p, r in ref.items():
        if "error" in r:
            assert "error" in fast[p]
            continue
        assert fast[p]["boxes"] == r["boxes"]
        assert [c["class"] for c in fast[p]["topk"]] == [c["class"] for c in r["topk"]]
        assert [c["score"] for c in fast[p]["topk"]] == pytest.approx([c["score"] for c in r["topk"]], abs=1e-4)
    rc, out, err = _run(capsys, inputs, "--checkpoint", files["model"], "--json", "--int8-glance", "3")
    q8 = {r["path"]: r for r in json.loads(out)}
    assert rc == 1 and "bad.mp4" in err and "Traceback" not in err
    for p, r in ref.items():
        if "error" not in r:  # same classes scored, probabilities within int8 error
            got = {c["class"]: c["score"] for c in q8[p]["topk"]}
            assert all(abs(got[c["class"]] - c["score"]) < 0.05 for c in r["topk"])
    rc, _, err = _run(capsys, files["a"], "--checkpoint", files["model"], "--int8-glance", "0")
    assert rc == 1 and "--int8-glance" in err
    rc, _, err = _run(capsys, str(files["dir"] / "bad.mp4"), "--checkpoint", files["model"], "--int8-glance", "1")
    assert rc == 1 and "calibration" in err


def test_fast_folds_a_resnet_f_l_with_the_same_results(tmp_path, capsys):
    torch.manual_seed(0)  # AdaFocus+ with a ResNet-18 f_L: the skip path feeds f_L a subset of the frames
    model = tiny_model(num_classes=4, skip_policy=True, local_backbone="resnet18")
    path = tmp_path / "model.pt"
    torch.save({"config": model.config, "state_dict": model.state_dict()}, path)
    for i in range(2):
        video = _video(tmp_path / f"v{i}.mp4", n=12, seed=i)
        (r,) = json.loads(_run(capsys, video, "--checkpoint", str(path), "--json")[1])
        (f,) = json.loads(_run(capsys, video, "--checkpoint", str(path), "--json", "--fast")[1])
        assert f["boxes"] == r["boxes"] and f["keep"] == r["keep"]
        assert [c["class"] for c in f["topk"]] == [c["class"] for c in r["topk"]]
        assert [c["score"] for c in f["topk"]] == pytest.approx([c["score"] for c in r["topk"]], abs=1e-4)


def test_budget_early_exit_streams_until_confident(capsys, tmp_path):
    from adafocus import AdaFocusV2, save_model
    from adafocus.early_exit import step_gflops

    torch.manual_seed(0)
    model = AdaFocusV2(5, global_backbone="tiny_cnn", local_backbone="tiny_cnn", input_size=64, patch_size=32,
                       num_frames=4, policy_hidden_dim=16, policy_channels=4, classifier_hidden_dim=32)  # fmt: skip
    save_model(model, tmp_path / "v2.pt")
    videos = [_video(tmp_path / f"v{i}.mp4", seed=i) for i in range(6)]
    (tmp_path / "calib.txt").write_text("".join(f"{v} 20 0\n" for v in videos))
    full = float(step_gflops(model, 4)[-1])
    ckpt = ["--checkpoint", str(tmp_path / "v2.pt"), "--json"]
    rc, out, err = _run(capsys, str(tmp_path / "calib.txt"), *ckpt, "--budget", f"{0.5 * full}",
                        "--calibration", str(tmp_path / "calib.txt"))  # fmt: skip
    assert rc == 0, err
    results = json.loads(out)
    assert "early exit at" in err and len(results) == 6
    used = [r["exit"]["frames_used"] for r in results]
    assert min(used) < 4 and sum(r["exit"]["gflops"] for r in results) / 6 <= 0.5 * full + 1e-9  # fitted on these
    for r in results:  # boxes only where a frame was processed
        assert sum(b is not None for b in r["boxes"]) == r["exit"]["frames_used"]
    rc, _, err = _run(capsys, videos[0], *ckpt, "--budget", "1")
    assert rc == 1 and len(err.strip().splitlines()) == 1 and "--calibration" in err
    rc, _, err = _run(capsys, videos[0], *ckpt, "--budget", f"{0.1 * full}", "--calibration", videos[0])
    assert rc == 1 and "below one step" in err


@pytest.mark.parametrize("name", ["test_adafocus_v2", "test_uni_adafocus"])
def test_v2_and_uni_predict_with_boxes_in_the_clip_order(name, capsys, tmp_path):
    from adafocus import create_model, save_model

    torch.manual_seed(0)
    model = create_model(name).eval()
    save_model(model, tmp_path / "m.pt")
    video = _video(tmp_path / "v.mp4", n=30)
    rc, out, err = _run(capsys, video, "--checkpoint", str(tmp_path / "m.pt"), "--json", "--visualize",
                        str(tmp_path / "viz"))  # fmt: skip
    assert rc == 0, err
    (res,) = json.loads(out)
    assert os.path.exists(res["visualization"]["png"])
    frames = read_clip(video, num_frames=model.clip_frames, input_size=64, scale_size=round(64 * 256 / 224))[0]
    with torch.no_grad():
        ref = model(frames[None], sample=False)
    assert res["topk"][0]["class"] == int(ref.prediction.argmax())
    if name == "test_uni_adafocus":  # one box per focused frame, of the window's own size
        assert res["focus_frames"] == ref.frame_indices[0].tolist()
        assert [b[2:] for b in res["boxes"]] == [[round(h), round(w)] for h, w in ref.window_sides[0].tolist()]
    else:  # per frame in the video's order, although V2 processes them coarse to fine
        assert [b[:2] for b in res["boxes"]] == model.in_time_order(ref.offsets)[0].tolist()


def test_a_list_with_a_byte_order_mark_names_its_first_video(tmp_path):
    from adafocus.predict import collect_inputs

    (tmp_path / "a.mp4").write_bytes(b"")
    lst = tmp_path / "list.txt"
    lst.write_bytes("a.mp4 8 1\n".encode("utf-8-sig"))
    items, errors = collect_inputs(str(lst))
    assert not errors and [os.path.basename(i.path) for i in items] == ["a.mp4"]
