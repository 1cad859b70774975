"""One model file format, one safe loader: malicious and broken files are refused by every entry point
with one line and never run; every zoo model and every model class round-trips exactly."""

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_model
from test_tsm import tiny_tsm

from adafocus import (
    AdaFocus,
    AdaFocusBase,
    AdaFocusTSM,
    CheckpointError,
    TSMPlus,
    create_model,
    list_models,
    load_model,
    save_model,
)
from adafocus.cli import main
from adafocus.data.encode import write_video
from adafocus.predict import predict_video
from adafocus.registry import get_entry
from adafocus.serialization import read_checkpoint

ROOT = Path(__file__).resolve().parents[1]
STAGE1 = str(ROOT / "lightning_configs" / "toy" / "stage1.yaml")


class Payload:
    """Unpickling this runs code: it creates ``marker``. Every safe path must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


def _malicious(tmp_path: Path, marker: Path) -> dict[str, Path]:
    """The three shapes a user tried: a raw pickle, an export-shaped file and a stage-shaped .ckpt."""
    model = tiny_model(num_classes=3)
    files = {k: tmp_path / f"{k}.pt" for k in ("raw_pickle", "export_shaped", "stage_shaped")}
    with open(files["raw_pickle"], "wb") as f:
        pickle.dump(Payload(marker), f)
    torch.save({"config": model.config, "state_dict": model.state_dict(), "extra": Payload(marker)},
               files["export_shaped"])  # fmt: skip
    torch.save({"adafocus_config": model.config, "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": {"lr": Payload(marker)}}, files["stage_shaped"])  # fmt: skip
    return files


def _broken(tmp_path: Path) -> dict[str, Path]:
    good = tmp_path / "good.pt"
    save_model(tiny_model(num_classes=3), good)
    data = good.read_bytes()
    files = {"empty": tmp_path / "empty.pt", "garbage": tmp_path / "garbage.pt", "truncated": tmp_path / "trunc.pt"}
    files["empty"].write_bytes(b"")
    files["garbage"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["truncated"].write_bytes(data[: len(data) // 2])
    return files


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    rng = np.random.default_rng(0)
    write_video(path, [rng.integers(0, 255, (72, 96, 3), dtype=np.uint8) for _ in range(14)], fps=8)
    return str(path)


def _entry_points(path: Path, video: str, out: Path) -> dict[str, list[str]]:
    return {
        "predict": ["predict", video, "--checkpoint", str(path)],
        "export": ["export", str(path), "--out", str(out)],
        "convert-official": ["convert-official", str(path), "--out", str(out), "--patch-size", "32"],
        "init_from": ["fit", "--config", STAGE1, f"--model.init_args.init_from={path}", "--trainer.fast_dev_run=true",
                      f"--trainer.default_root_dir={out.parent}", f"--trainer.logger.init_args.save_dir={out.parent}"],
    }  # fmt: skip


def _refused_by_every_command(path: Path, video: str, capsys, expect: str) -> None:
    out = path.parent / "out.pt"
    for name, argv in _entry_points(path, video, out).items():
        rc = main(argv)
        err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("adafocus ")]
        assert rc != 0, name
        assert len(err) == 1 and str(path) in err[0] and expect in err[0], (name, err)
        assert not out.exists(), name  # nothing written, no training run from random weights
    with pytest.raises(CheckpointError, match=expect) as info:
        load_model(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(CheckpointError, match=expect):
        create_model("adafocus_mn2_rn50_p128.fcvid", pretrained_path=path)


def test_malicious_files_are_refused_everywhere_and_never_run(tmp_path, video, capsys):
    marker = tmp_path / "PWNED"
    for shape, path in _malicious(tmp_path, marker).items():
        _refused_by_every_command(path, video, capsys, "refused")
        assert "exec" in str(pytest.raises(CheckpointError, load_model, path).value), shape  # names what it holds
        assert not marker.exists(), f"{shape}: the payload ran"
    # the payload is live: a user who vouches for the file gets it run (and the model, where there is one)
    assert isinstance(load_model(tmp_path / "export_shaped.pt", trust=True), AdaFocus) and marker.exists()
    marker.unlink()
    with pytest.raises(CheckpointError, match="raw_pickle.pt: not a readable PyTorch checkpoint"):
        load_model(tmp_path / "raw_pickle.pt", trust=True)  # unpickled (and run), then not a torch file
    assert marker.exists()


def test_broken_files_give_one_line_everywhere(tmp_path, video, capsys):
    expect = {"empty": "empty file", "garbage": "not a PyTorch", "truncated": "truncated or corrupt"}
    for kind, path in _broken(tmp_path).items():
        _refused_by_every_command(path, video, capsys, expect[kind])
    _refused_by_every_command(tmp_path / "absent.pt", video, capsys, "not found")


def test_wrong_weights_are_named(tmp_path, capsys):
    model = tiny_model(num_classes=3)
    path = tmp_path / "bent.pt"
    save_model(model, path)
    record = torch.load(path, weights_only=True)
    record["state_dict"]["classifier.fc.weight"] = torch.zeros(7, 2)
    torch.save(record, path)
    with pytest.raises(CheckpointError, match=r"bent\.pt: the weights do not fit its AdaFocus: 1 of the wrong shape"):
        load_model(path)
    other = tmp_path / "other.pt"  # a plain state_dict of another network: init_from must not train from scratch
    torch.save(torch.nn.Linear(3, 3).state_dict(), other)
    assert main(["fit", "--config", STAGE1, f"--model.init_args.init_from={other}", "--trainer.fast_dev_run=true",
                 f"--trainer.default_root_dir={tmp_path}"]) == 2  # fmt: skip
    assert "holds none of this AdaFocus's weights" in capsys.readouterr().err
    wide = tiny_model(num_classes=3, classifier_hidden_dim=48)
    torch.save({"state_dict": wide.state_dict()}, other)
    assert main(["fit", "--config", STAGE1, f"--model.init_args.init_from={other}", "--trainer.fast_dev_run=true",
                 f"--trainer.default_root_dir={tmp_path}"]) == 2  # fmt: skip
    assert "another architecture" in capsys.readouterr().err


@pytest.mark.parametrize("name", list_models())
def test_every_zoo_model_round_trips(name, tmp_path):
    torch.manual_seed(0)
    model = create_model(name).eval()
    path = save_model(model, tmp_path / "m.pt", class_names=[f"c{i}" for i in range(model.num_classes)])
    torch.load(path, weights_only=True)  # plain data only
    loaded = load_model(path)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded.preprocess == get_entry(name).preprocess and loaded.class_names[-1] == f"c{model.num_classes - 1}"
    size = loaded.preprocess.input_size
    clip = torch.randn(1, model.clip_frames or 2, 3, size, size)  # T fixed by the model, else any
    with torch.inference_mode():
        a, b = model(clip), loaded(clip)
    if isinstance(model, AdaFocusBase):
        assert torch.equal(a.logits, b.logits) and torch.equal(a.offsets, b.offsets)
    else:  # a full-frame baseline: video logits
        assert torch.equal(a, b)
    os.remove(path)


def test_each_model_class_round_trips_and_older_files_still_load(tmp_path):
    plus = TSMPlus(4, global_backbone="tiny_cnn", local_backbone="tiny_cnn", num_frames=3, input_size=64).eval()
    for model in (tiny_model(num_classes=4).eval(), tiny_tsm().eval(), plus):
        loaded = load_model(save_model(model, tmp_path / "m.pt"))
        assert type(loaded) is type(model)
        assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    tsm = tiny_tsm()  # a file of an earlier `adafocus export`: no class recorded, found from its config
    torch.save(
        {"config": tsm.config, "state_dict": tsm.state_dict(), "eval_data": {"num_frames": 4}}, tmp_path / "o.pt"
    )
    old = load_model(tmp_path / "o.pt")
    assert isinstance(old, AdaFocusTSM) and old.preprocess.num_frames == tsm.local_frames  # T fixed by the model


def test_save_model_refuses_what_it_cannot_write_back(tmp_path):
    from adafocus.accelerate.prepare import prepare_for_inference

    model = tiny_model()
    with pytest.raises(TypeError, match="metadata.*plain data"):
        save_model(model, tmp_path / "x.pt", note=object())
    with pytest.raises(ValueError, match="5 classes"):
        save_model(model, tmp_path / "x.pt", class_names=["a", "b"])
    with pytest.raises(ValueError, match="prepared for inference"):
        save_model(prepare_for_inference(model), tmp_path / "x.pt")
    with pytest.raises(TypeError, match="not a registered model class"):
        save_model(torch.nn.Linear(2, 2), tmp_path / "x.pt")
    assert not (tmp_path / "x.pt").exists()


def test_predict_runs_a_saved_adafocus_tsm_on_an_mp4(tmp_path, video, capsys):
    torch.manual_seed(0)
    model = tiny_tsm().eval()  # 5 classes
    path = save_model(model, tmp_path / "tsm.pt", class_names=["a", "b", "c", "d", "e"])
    assert main(["predict", video, "--checkpoint", path, "--json"]) == 0
    (res,) = json.loads(capsys.readouterr().out)
    assert res["num_frames"] == model.local_frames and len(res["boxes"]) == model.local_frames
    assert len({tuple(b) for b in res["boxes"]}) == 1  # one patch location per video
    assert res["topk"][0]["name"] in "abcde"
    api = predict_video(load_model(path), video)
    assert [c["class"] for c in api["topk"]] == [c["class"] for c in res["topk"]]


def test_read_checkpoint_allows_named_globals_only(tmp_path):
    import argparse

    torch.save({"args": argparse.Namespace(p=1), "w": torch.ones(1)}, tmp_path / "ns.pt")
    with pytest.raises(CheckpointError, match="argparse.Namespace"):
        read_checkpoint(tmp_path / "ns.pt")
    assert read_checkpoint(tmp_path / "ns.pt", safe_globals=[argparse.Namespace])["args"].p == 1
