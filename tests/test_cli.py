"""The command line: help without torch, LightningCLI's predict with its writer, refused options."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from adafocus.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "lightning_configs" / "toy"
COMMANDS = ["fit", "validate", "test", "predict", "data", "export", "convert-official", "zoo", "flops", "demo",
            "benchmark"]  # fmt: skip


def test_every_help_answers_without_importing_torch():
    """``adafocus --help`` / ``adafocus CMD --help`` load no torch, numpy or Lightning (start-up is their import)."""
    code = f"""
import contextlib, io, sys
from adafocus.cli import main
for argv in [["--help"]] + [[c, "--help"] for c in {COMMANDS!r}] + [["data", "check", "--help"]]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            rc = main(argv)
        except SystemExit as e:
            rc = e.code
    assert rc == 0 and "usage: adafocus" in out.getvalue(), (argv, rc)
heavy = sorted(m for m in ("torch", "numpy", "pytorch_lightning", "torchvision", "av") if m in sys.modules)
print(heavy)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_fit_help_all_is_lightning_clis(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--help-all"])
    assert info.value.code == 0 and "--trainer.max_epochs" in capsys.readouterr().out


def test_every_subcommand_is_listed():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


def test_optimizer_flag_is_refused_with_a_way_forward(capsys):
    assert main(["fit", "--config", str(TOY / "stage1.yaml"), "--optimizer", "torch.optim.Adam"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--optimizer" in err[0] and "--model.init_args.lr_local" in err[0]
    assert main(["fit", "--config", str(TOY / "stage2.yaml"), "--lr_scheduler", "torch.optim.lr_scheduler.StepLR",
                 "--lr_scheduler.step_size", "1"]) == 2  # fmt: skip
    assert "--lr_scheduler" in capsys.readouterr().err


def test_lightning_predict_writes_one_line_per_video(tmp_path):
    from test_training import QUIET, fit

    ckpt = fit(1, tmp_path)
    out = tmp_path / "predict"
    args = ["predict", "--config", "adafocus:toy/stage3.yaml", f"--ckpt_path={ckpt}", *QUIET,
            f"--trainer.default_root_dir={out}", f"--trainer.logger.init_args.save_dir={out}"]  # fmt: skip
    assert main(args) == 0
    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 8 and sorted(r["index"] for r in rows) == list(range(8))  # the toy set's 8 clips
    for r in rows:
        assert len(r["topk"]) == 3 and abs(sum(c["score"] for c in r["topk"]) - 1) < 1e-4  # 3 classes
        assert len(r["boxes"]) == 4 and all(b[2:] == [32, 32] for b in r["boxes"]) and r["label"] in (0, 1, 2)


def test_packaged_config_names(capsys):
    assert main(["fit", "--config", "adafocus:toy/nope.yaml"]) == 2
    assert "no such packaged config" in capsys.readouterr().err
    with pytest.raises(SystemExit) as info:
        main(["fit", "--config=adafocus:toy/stage1.yaml", "--print_config"])
    assert info.value.code == 0 and "adafocus.training.WarmupStage" in capsys.readouterr().out


def test_a_folded_config_names_its_replacement(capsys):
    assert main(["fit", "--config", "lightning_configs/activitynet/adafocus_mn2_rn50_p96.yaml"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(
        "--config adafocus:activitynet/adafocus_mn2_rn50.yaml --model.init_args.net.init_args.patch_size=96"
    )


def test_export_with_labels_and_bad_labels(tmp_path, capsys):
    from conftest import tiny_model

    from adafocus import load_model, save_model

    src = save_model(tiny_model(num_classes=3), tmp_path / "m.pt")
    (tmp_path / "names.txt").write_text("a\nb\nc\n")
    assert main(["export", src, "--out", str(tmp_path / "o.pt"), "--labels", str(tmp_path / "names.txt")]) == 0
    assert load_model(tmp_path / "o.pt").class_names == ["a", "b", "c"]
    (tmp_path / "two.txt").write_text("a\nb\n")
    for labels, expect in (("two.txt", "2 class names for a model with 3 classes"), ("none.txt", "cannot read")):
        assert main(["export", src, "--out", str(tmp_path / "x.pt"), "--labels", str(tmp_path / labels)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and expect in err[0]
    assert not (tmp_path / "x.pt").exists()
