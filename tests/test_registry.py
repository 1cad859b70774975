"""The registry: metadata against the paper and count_flops, configs that build exactly the entry,
names (timm's arch.tag, renamed ones), the table, building and loading weights."""

from pathlib import Path

import pytest
import torch
import yaml

from adafocus import AdaFocusTSM, CheckpointError
from adafocus.cli import main
from adafocus.flops import count_flops
from adafocus.registry import METHODS, REGISTRY, architectures, create_model, get_entry, list_models, zoo_rows
from adafocus.resources import config_path
from adafocus.training.cli import run_cli

ROOT = Path(__file__).resolve().parents[1]


def test_entries_carry_paper_metadata():
    assert len(REGISTRY) >= 20 and set(list_models()) == set(REGISTRY)
    anet = get_entry("adafocus_mn2_rn50_p128.activitynet")
    assert (anet.dataset, anet.frames, anet.patch_size, anet.metric, anet.paper_score, anet.method) == (
        "ActivityNet-v1.3", "16", 128, "mAP", 75.0, "adafocus"
    )  # fmt: skip
    assert anet.fit_command == "adafocus fit --config adafocus:activitynet/adafocus_mn2_rn50.yaml"
    tsm = get_entry("adafocus_tsm_p176.sthsth")
    assert (tsm.frames, tsm.preprocess.num_frames, tsm.paper_score, tsm.baseline) == (
        "8+12",
        12,
        48.1,
        "tsm_plus.sthsth",
    )
    assert tsm.config_args == ("--model.init_args.net.init_args.patch_size=176",)
    for e in REGISTRY.values():
        assert e.method in METHODS and (e.baseline is None or e.baseline in REGISTRY), e.name
        if e.paper_score is not None:
            assert 0 < e.paper_score < 100 and e.metric in ("mAP", "top1")
        if e.paper_gflops is not None:  # our count agrees with the paper's within 1%
            assert abs(e.gflops - e.paper_gflops) / e.paper_gflops < 0.01, e.name
    v2 = [get_entry(n) for n in list_models(method="adafocus_v2") if not n.startswith("test_")]
    assert {(e.dataset, e.patch_size) for e in v2} == {
        *(("ActivityNet-v1.3", p) for p in (96, 128, 160)), ("FCVID", 128), ("Mini-Kinetics", 128),
        *((f"Something-Something V{v}", p) for v in (1, 2) for p in (128, 144, 160, 176)),
        ("Jester", 128), ("Jester", 176),
    }  # fmt: skip
    assert all(e.paper_gflops and e.paper_score and e.model_class.startswith("AdaFocusV2") for e in v2)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        get_entry("nope")


def test_names_follow_timm():
    assert get_entry("adafocus_tsm_p144") is get_entry("adafocus_tsm_p144.sthsth")  # an arch: its first tag
    assert list_models("adafocus_tsm_*.sthsth_v2") == [f"adafocus_tsm_p{p}.sthsth_v2" for p in (144, 160, 176)]
    assert set(list_models(method="full_frame")) >= {"tsm_plus.sthsth", "full_mn2_rn50.activitynet"}
    assert "test_adafocus" in architectures(include_tests=True) and "test_adafocus" not in architectures()
    with pytest.warns(FutureWarning, match="renamed 'adafocus_mn2_rn50_p96.activitynet'"):
        assert get_entry("adafocus_mn2_rn50_p96_activitynet").name == "adafocus_mn2_rn50_p96.activitynet"


@pytest.mark.parametrize("name", ["adafocus_mn2_rn50_p96.activitynet", "adafocus_mn2_rn50_p128.fcvid",
                                  "adafocus_tsm_p176.sthsth", "adafocus_v2_mn2_rn50_p96.activitynet",
                                  "adafocus_v2_tsm_p128.sthsth_v2"])  # fmt: skip
def test_stored_gflops_equal_count_flops(name):
    # three representative architectures (a P without a paper figure, K=239, the TSM variant); the
    # other entries' stored figures are checked against the paper above and are shared per (K, P)
    e = get_entry(name)
    model = e.build()
    t = e.preprocess.num_frames
    assert count_flops(model, model.global_frames or t, local_frames=t).total == pytest.approx(e.gflops, abs=6e-4)
    same = [o.gflops for o in REGISTRY.values() if dict(o.model_kwargs) == dict(e.model_kwargs)]
    assert same and all(g == e.gflops for g in same)


def test_every_config_builds_exactly_its_entry(capsys):
    """``adafocus fit --config C ARGS`` of every entry resolves to the entry's architecture and data."""
    entries = [e for e in REGISTRY.values() if e.config]
    paper = [p for p in (ROOT / "lightning_configs").glob("*/*.yaml") if p.parent.name not in ("demo", "toy")]
    assert {e.config for e in entries} == {f"adafocus:{p.parent.name}/{p.name}" for p in paper}
    for e in entries:
        assert config_path(e.config).read_bytes() == (ROOT / "lightning_configs" / e.config[9:]).read_bytes()
        with pytest.raises(SystemExit):
            run_cli(["fit", "--config", str(config_path(e.config)), *e.config_args, "--print_config"])
        cfg = yaml.safe_load(capsys.readouterr().out)
        net = cfg["model"]["init_args"]["net"]
        assert net["class_path"].rsplit(".", 1)[-1] == e.model_class, e.name
        built = {**net["init_args"], "num_classes": cfg["data"]["init_args"]["num_classes"]}
        assert {k: built[k] for k in e.model_kwargs} == dict(e.model_kwargs), e.name
        assert cfg["data"]["init_args"]["num_frames"] == e.preprocess.num_frames, e.name


def test_zoo_cli_table(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    for row in zoo_rows():
        assert row["name"] in out
    assert "83.4" in out and "adafocus_mn2_rn50_p128.fcvid" in out and "test_adafocus" not in out
    assert main(["zoo", "--json", "--method", "adafocus"]) == 0
    rows = yaml.safe_load(capsys.readouterr().out)
    assert rows and all(r["method"] == "adafocus" and r["fit"].startswith("adafocus fit --config") for r in rows)


def test_create_model_with_local_weights(tmp_path):
    model = create_model("adafocus_tsm_p144.sthsth")
    assert isinstance(model, AdaFocusTSM) and model.patch_size == 144 and model.num_classes == 174
    torch.nn.init.constant_(model.classifier.fc_local.bias, 0.25)
    torch.save(model.state_dict(), tmp_path / "w.pt")
    again = create_model("adafocus_tsm_p144.sthsth", pretrained_path=tmp_path / "w.pt")
    torch.testing.assert_close(again.classifier.fc_local.bias, torch.full((174,), 0.25))
    with pytest.raises(CheckpointError, match=r"do not fit model 'adafocus_mn2_rn50_p128.fcvid'.*policy\.actor"):
        create_model("adafocus_mn2_rn50_p128.fcvid", pretrained_path=tmp_path / "w.pt")
    # another number of classes: everything but f_C's last layer comes from the file
    other = create_model("adafocus_tsm_p144.sthsth", pretrained_path=tmp_path / "w.pt", num_classes=10)
    assert other.classifier.fc_local.out_features == 10
    torch.testing.assert_close(other.policy.actor.weight, model.policy.actor.weight)
    with pytest.warns(FutureWarning, match="pretrained_path"):
        create_model("adafocus_tsm_p144.sthsth", weights=tmp_path / "w.pt")
