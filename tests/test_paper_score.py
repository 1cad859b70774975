"""The paper's score printed beside the measured one after ``adafocus validate`` / ``test`` of a registry config."""

import dataclasses
import shutil
from pathlib import Path

from adafocus.cli import main
from adafocus.registry import REGISTRY, get_entry
from adafocus.training.cli import run_cli
from adafocus.training.paper_score import find_entry, paper_score_line

ROOT = Path(__file__).resolve().parents[1]
STAGE1 = ROOT / "lightning_configs" / "toy" / "stage1.yaml"
QUIET = ["--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
TOY_NET = dict(global_backbone="tiny_cnn", local_backbone="tiny_cnn", input_size=64, patch_size=32, num_classes=3)


def _entry(config: str, **kw):
    """A registry entry for the toy stage-I config (its net's arguments, a made-up paper score)."""
    base = dict(name="toy_p32.toy", model_class="AdaFocus", model_kwargs=TOY_NET, metric="top1", paper_score=12.3,
                paper_ref="Table 9", config=config)  # fmt: skip
    return dataclasses.replace(get_entry("test_adafocus"), **{**base, **kw})


def _run(argv, tmp_path):
    return [*argv, *QUIET, f"--trainer.default_root_dir={tmp_path}", f"--trainer.logger.init_args.save_dir={tmp_path}"]


def test_find_entry_by_config_and_architecture(tmp_path):
    net = get_entry("test_adafocus").build(num_classes=3, patch_size=32, global_backbone="tiny_cnn")
    packaged = _entry("adafocus:toy/stage1.yaml")
    # a packaged config is known by its last two path parts: the installed file, or a copy kept as toy/stage1.yaml
    copy = tmp_path / "mine" / "toy" / "stage1.yaml"
    for f in (STAGE1, copy):
        assert find_entry([f], net, [packaged]) is packaged
    assert find_entry([tmp_path / "stage1.yaml"], net, [packaged]) is None  # another config
    other_p = get_entry("test_adafocus").build(num_classes=3, patch_size=24, global_backbone="tiny_cnn")
    assert find_entry([STAGE1], other_p, [packaged]) is None  # another patch size: another entry's score
    p24 = _entry("adafocus:toy/stage1.yaml", name="toy_p24.toy", model_kwargs={**TOY_NET, "patch_size": 24})
    assert find_entry([STAGE1], other_p, [packaged, p24]) is p24
    assert find_entry([STAGE1], net, [_entry("adafocus:toy/stage1.yaml", model_class="AdaFocusV2")]) is None
    assert find_entry([STAGE1], net, [_entry("adafocus:toy/stage1.yaml", paper_score=None)]) is None
    shutil.copy(STAGE1, tmp_path / "plain.yaml")
    plain = _entry(str(tmp_path / "plain.yaml"))  # an entry may name a plain file too: the same file only
    assert find_entry([tmp_path / "plain.yaml"], net, [plain]) is plain and find_entry([STAGE1], net, [plain]) is None
    assert find_entry([STAGE1], net) is None  # the real registry has no toy entry


def test_paper_score_line():
    e = _entry("adafocus:toy/stage1.yaml", metric="mAP", paper_score=75.0, paper_ref="Table 1")
    line = paper_score_line(e, {"val/mAP": 0.7434, "val/top1": 0.9}, "val")
    assert line == "paper (Table 1, toy_p32.toy): mAP 75.0 | measured: mAP 74.3 (val/mAP)"
    assert "test/mAP was not logged" in paper_score_line(e, {"test/top1": 0.5}, "test")


def test_validate_prints_paper_and_measured_scores(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "toy_stage1.yaml"
    shutil.copy(STAGE1, cfg)
    monkeypatch.setitem(REGISTRY, "toy_p32.toy", _entry(str(cfg)))
    cli = run_cli(_run(["validate", "--config", str(cfg)], tmp_path))
    measured = 100 * float(cli.trainer.callback_metrics["val/top1"])
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("paper (")]
    assert lines == [f"paper (Table 9, toy_p32.toy): top1 12.3 | measured: top1 {measured:.1f} (val/top1)"]
    # another patch size is not the entry's configuration: nothing printed
    run_cli(_run(["validate", "--config", str(cfg), "--model.init_args.net.init_args.patch_size=24"], tmp_path))
    assert "paper (" not in capsys.readouterr().out


def test_adafocus_test_command_on_a_packaged_config(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(REGISTRY, "toy_p32.toy", _entry("adafocus:toy/stage1.yaml", paper_score=41.0))
    assert main(_run(["test", "--config", "adafocus:toy/stage1.yaml"], tmp_path)) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("paper (")]
    assert line.startswith("paper (Table 9, toy_p32.toy): top1 41.0 | measured: top1 ") and line.endswith("(test/top1)")
    monkeypatch.delitem(REGISTRY, "toy_p32.toy")
    assert main(_run(["validate", "--config", "adafocus:toy/stage1.yaml"], tmp_path)) == 0
    assert "paper (" not in capsys.readouterr().out  # not a registry config


def test_a_paper_entry_is_found_from_its_config_and_patch_size():
    """A real entry (P=160 of the ActivityNet config shared by P=96/128/160/192) from its packaged config."""
    from adafocus.resources import config_path

    e = REGISTRY["adafocus_mn2_rn50_p160.activitynet"]
    assert find_entry([config_path(e.config)], e.build()) is e
