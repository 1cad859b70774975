"""Converters on hand-written official-format fixtures, the ``adafocus data`` CLI and the synthetic set."""

import json

import numpy as np
import pytest

from adafocus.cli import main
from adafocus.data import VideoDataset, make_source, read_list
from adafocus.data.convert import convert_activitynet, convert_kinetics, convert_ssv1, convert_ssv2, write_list
from adafocus.data.encode import write_video
from adafocus.data.synth import generate

KINETICS = """label,youtube_id,time_start,time_end,split,is_cc
abseiling,--07WQ2iBlw,1,11,train,0
air drumming,-0Nm4GJ1_9E,30,40,train,0
abseiling,0gEqkhZN0bs,15.0,25.0,train,0
"""

ACTIVITYNET = {
    "version": "VERSION 1.3",
    "taxonomy": [{"nodeId": 1, "nodeName": "Surfing", "parentId": 0, "parentName": "Sports"}],
    "database": {
        "sJFgo9H6zNo": {
            "subset": "training",
            "duration": 139.0,
            "resolution": "640x360",
            "url": "u",
            "annotations": [
                {"segment": [0.0, 48.0], "label": "Surfing"},
                {"segment": [60.0, 90.0], "label": "Surfing"},
                {"segment": [91.0, 99.0], "label": "Archery"},
            ],
        },
        "V1Q3jpSmFRw": {
            "subset": "training",
            "duration": 60.0,
            "resolution": "640x360",
            "url": "u",
            "annotations": [{"segment": [1.0, 9.0], "label": "Archery"}],
        },
        "Xk0Zv4eGf1E": {
            "subset": "validation",
            "duration": 60.0,
            "resolution": "640x360",
            "url": "u",
            "annotations": [{"segment": [1.0, 9.0], "label": "Surfing"}],
        },
        "tEsT0000000": {"subset": "testing", "duration": 60.0, "resolution": "640x360", "url": "u", "annotations": []},
    },
}


def test_kinetics_csv(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text(KINETICS)
    conv = convert_kinetics(str(csv))
    assert conv.classes == ["abseiling", "air drumming"]
    assert conv.rows == [
        ("abseiling/--07WQ2iBlw_000001_000011.mp4", [0], 2),
        ("air_drumming/-0Nm4GJ1_9E_000030_000040.mp4", [1], 3),
        ("abseiling/0gEqkhZN0bs_000015_000025.mp4", [0], 4),
    ]
    sub = convert_kinetics(str(csv), classes=["air drumming"], template="{youtube_id}.mp4")
    assert sub.rows == [("-0Nm4GJ1_9E.mp4", [0], 3)] and len(sub.problems) == 2


def test_something_something_v1_and_v2(tmp_path):
    (tmp_path / "v1-labels.csv").write_text("Holding something\nTurning something upside down\n")
    (tmp_path / "v1-train.csv").write_text("100218;Turning something upside down\n48032;Holding something\n7;Nope\n")
    conv = convert_ssv1(str(tmp_path / "v1-train.csv"), str(tmp_path / "v1-labels.csv"))
    assert conv.rows == [("100218", [1], 1), ("48032", [0], 2)] and "7" not in str(conv.rows)
    assert len(conv.problems) == 1 and ":3:" in conv.problems[0]

    (tmp_path / "v2-labels.json").write_text(
        json.dumps({"Holding something": "0", "Turning something upside down": "1"})
    )
    (tmp_path / "v2-train.json").write_text(
        json.dumps(
            [
                {
                    "id": "78687",
                    "label": "turning a cup upside down",
                    "template": "Turning [something] upside down",
                    "placeholders": ["a cup"],
                },
                {"id": "42326", "label": "holding a pen", "template": "Holding [something]", "placeholders": ["a pen"]},
            ]
        )
    )
    conv = convert_ssv2(str(tmp_path / "v2-train.json"), str(tmp_path / "v2-labels.json"))
    assert conv.classes == ["Holding something", "Turning something upside down"]
    assert conv.rows == [("78687.webm", [1], 1), ("42326.webm", [0], 2)]


def test_activitynet_multi_label_padded(tmp_path):
    js = tmp_path / "activity_net.v1-3.min.json"
    js.write_text(json.dumps(ACTIVITYNET))
    conv = convert_activitynet(str(js), subset="training")
    assert conv.classes == ["Archery", "Surfing"]
    assert [(p, labels) for p, labels, _ in conv.rows] == [("v_sJFgo9H6zNo.mp4", [1, 0]), ("v_V1Q3jpSmFRw.mp4", [0])]
    out = tmp_path / "train.txt"
    assert write_list(conv, str(out), delimiter=",", pad_to=3) == 2
    assert out.read_text() == "v_sJFgo9H6zNo.mp4,0,1,0,-1\nv_V1Q3jpSmFRw.mp4,0,0,-1,-1\n"
    s = read_list(str(out), delimiter=",", num_classes=2)
    assert s[0].labels == (1, 0) and s[1].labels == (0,)


def test_cli_convert_counts_frames_and_drops_missing(tmp_path, capsys):
    (tmp_path / "abseiling").mkdir()
    write_video(tmp_path / "abseiling" / "--07WQ2iBlw_000001_000011.mp4", [np.zeros((16, 16, 3), np.uint8)] * 7)
    csv = tmp_path / "train.csv"
    csv.write_text(KINETICS)
    out, classes = tmp_path / "train.txt", tmp_path / "classes.txt"
    rc = main(
        [
            "data",
            "convert",
            "kinetics",
            str(csv),
            str(out),
            "--classes",
            str(classes),
            "--root",
            str(tmp_path),
            "--template",
            "{label_}/{youtube_id}_{time_start:06d}_{time_end:06d}.mp4",
        ]
    )
    assert rc == 0
    assert out.read_text() == "abseiling/--07WQ2iBlw_000001_000011.mp4 7 0\n"
    assert classes.read_text() == "abseiling\nair drumming\n"
    err = capsys.readouterr().err
    assert err.count("file not found") == 2


def test_cli_check_exit_status_and_line_numbers(tmp_path, capsys):
    write_video(tmp_path / "ok.mp4", [np.zeros((16, 16, 3), np.uint8)] * 8)
    good, bad = tmp_path / "good.txt", tmp_path / "bad.txt"
    good.write_text("ok.mp4 8 1\n")
    bad.write_text("ok.mp4 8 1\nnope.mp4 8 1\nok.mp4 8 5\n")
    assert main(["data", "check", str(good), "--root", str(tmp_path), "--num-classes", "3", "--num-frames", "4"]) == 0
    assert main(["data", "check", str(bad), "--root", str(tmp_path), "--num-classes", "3"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2" in err and "file not found" in err and f"{bad}:3" in err and "out of range" in err


@pytest.fixture(scope="module")
def synth_pair(tmp_path_factory):
    kw = dict(num_train=6, num_val=2, num_test=2, num_frames=4, size=64, patch_hint=24, seed=5)
    return [generate(tmp_path_factory.mktemp(f"synth{i}"), **kw) for i in range(2)], kw


def test_synth_writes_mp4s_and_lists(synth_pair):
    (out, _), kw = synth_pair
    assert out["num_classes"] == 10
    ds = VideoDataset(out["train"], root=out["root"], num_classes=10, num_frames=4)
    assert len(ds) == 6
    item = ds[0]
    assert item["frames"].shape == (4, 3, 64, 64)
    f = item["frames"].float()
    sat = f.max(dim=1).values - f.min(dim=1).values  # the tinted digit is the only saturated region
    ys, xs = np.nonzero((sat[0] > 100).numpy())
    assert 0 < len(ys) and ys.max() - ys.min() <= 20 and xs.max() - xs.min() <= 20  # digit ~0.6 * 24 px
    assert len(VideoDataset(out["val"], root=out["root"], num_classes=10, num_frames=4)) == 2


def test_synth_is_fixed_by_seed(synth_pair):
    (a, b), _ = synth_pair
    la, lb = (open(x["train"]).read() for x in (a, b))
    assert la == lb
    src = make_source("video")
    ca, cb = (src.open(f"{x['root']}/videos/train/00003.mp4") for x in (a, b))
    assert (ca.read([0, 3]) == cb.read([0, 3])).all()


def test_cli_synth(tmp_path, capsys):
    assert (
        main(
            [
                "data",
                "synth",
                str(tmp_path),
                "--num-train",
                "2",
                "--num-val",
                "1",
                "--num-test",
                "1",
                "--num-frames",
                "2",
                "--size",
                "48",
                "--patch-hint",
                "20",
            ]
        )
        == 0
    )
    assert (tmp_path / "train.txt").read_text().count("\n") == 2
    assert "train:" in capsys.readouterr().out
