import runpy
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def test_adafocus_inside_another_model(capsys):
    runpy.run_path(str(EXAMPLES / "adafocus_inside_another_model.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "scores:" in out and "patch top-left" in out


def test_run_on_video(tmp_path, monkeypatch, capsys):
    import numpy as np
    import torch
    from conftest import tiny_model

    from adafocus.data.encode import write_video

    model = tiny_model(num_classes=4)
    torch.save({"config": model.config, "state_dict": model.state_dict()}, tmp_path / "model.pt")  # = adafocus export
    rng = np.random.default_rng(0)
    write_video(tmp_path / "clip.mp4", [rng.integers(0, 255, (48, 64, 3), dtype=np.uint8) for _ in range(12)])
    model_file, clip_file = str(tmp_path / "model.pt"), str(tmp_path / "clip.mp4")
    argv = ["run_on_video.py", model_file, clip_file, "--topk", "2", "--num-frames", "4"]
    monkeypatch.setattr("sys.argv", argv)
    runpy.run_path(str(EXAMPLES / "run_on_video.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "scores:" in out and "patch boxes" in out and out.count("  frame ") == 4


def test_train_on_your_videos(tmp_path, monkeypatch, capsys):
    """The own-video-list example chains stage 0 -> III on a small written set (1 epoch each)."""
    from adafocus.data import synth

    ds = synth.generate(tmp_path / "data", num_train=8, num_val=4, num_test=4, num_frames=8, size=64, patch_hint=24)
    argv = ["train_on_your_videos.py", "--train-list", ds["train"], "--val-list", ds["val"], "--root", ds["root"],
            "--num-classes", "10", "--out", str(tmp_path / "out"), "--epochs", "1",
            "--set", "data.init_args.num_workers=0", "trainer.enable_progress_bar=false"]  # fmt: skip
    monkeypatch.setattr("sys.argv", argv)
    runpy.run_path(str(EXAMPLES / "train_on_your_videos.py"), run_name="__main__")
    assert "done:" in capsys.readouterr().out
    for stage in range(4):
        assert (tmp_path / "out" / f"stage{stage}.ckpt").stat().st_size > 0
