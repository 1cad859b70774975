"""Jester and Kinetics-400 list converters on small official-format files the tests write."""

import numpy as np
import pytest

from adafocus.cli import main
from adafocus.data import read_list
from adafocus.data.convert import K400_TEMPLATE, convert_jester, convert_kinetics400, write_list
from adafocus.data.encode import write_video

# jester-v1-labels.csv is not in alphabetical order; TSM's lists (and the official checkpoints) index the sorted names
JESTER_LABELS = "Swiping Left\nSwiping Right\nDoing other things\n"
JESTER_TRAIN = "34870;Swiping Right\n56557;Doing other things\n\n1001;Swiping Left\n42;Thumb Up\n"
K400 = """label,youtube_id,time_start,time_end,split,is_cc
zumba,-0Nm4GJ1_9E,30,40,train,0
abseiling,--07WQ2iBlw,1,11,train,0
"passing American football (in game)",0gEqkhZN0bs,15,25,train,0
"""


def test_jester_sorted_class_index_and_dropped_rows(tmp_path):
    (tmp_path / "labels.csv").write_text(JESTER_LABELS)
    (tmp_path / "train.csv").write_text(JESTER_TRAIN)
    conv = convert_jester(str(tmp_path / "train.csv"), str(tmp_path / "labels.csv"))
    assert conv.classes == ["Doing other things", "Swiping Left", "Swiping Right"]
    assert conv.rows == [("34870", [2], 1), ("56557", [0], 2), ("1001", [1], 4)]
    (problem,) = conv.problems
    assert f"{tmp_path / 'train.csv'}:5" in problem and "Thumb Up" in problem
    by_file = convert_jester(str(tmp_path / "train.csv"), str(tmp_path / "labels.csv"), sort_classes=False)
    assert by_file.classes == JESTER_LABELS.split("\n")[:3] and by_file.rows[0] == ("34870", [1], 1)
    # the test CSV lists ids only: every row is dropped, each named
    (tmp_path / "test.csv").write_text("1\n2\n")
    assert not convert_jester(str(tmp_path / "test.csv"), str(tmp_path / "labels.csv")).rows


def test_cli_jester_counts_frame_folders(tmp_path, capsys):
    (tmp_path / "labels.csv").write_text(JESTER_LABELS)
    (tmp_path / "train.csv").write_text(JESTER_TRAIN)
    frames = tmp_path / "20bn-jester-v1"
    for vid, n in (("34870", 3), ("56557", 2)):  # 1001 was never extracted
        (frames / vid).mkdir(parents=True)
        for i in range(1, n + 1):
            (frames / vid / f"{i:05d}.jpg").write_bytes(b"x")  # counted, not decoded
    out, classes = tmp_path / "train.txt", tmp_path / "classes.txt"
    labels = ["--labels", str(tmp_path / "labels.csv")]
    args = ["data", "convert", "jester", str(tmp_path / "train.csv"), str(out), *labels, "--classes", str(classes),
            "--root", str(frames), "--source", "frames"]  # fmt: skip
    assert main(args) == 0
    assert out.read_text() == "34870 3 2\n56557 2 0\n"
    assert classes.read_text() == "Doing other things\nSwiping Left\nSwiping Right\n"
    err = capsys.readouterr().err
    assert "Thumb Up" in err and "1001" in err and "frame folder not found" in err
    assert main(args[:5] + ["--classes", str(classes)]) == 2  # --labels is required
    assert "--labels" in capsys.readouterr().err


def test_kinetics400_cvdf_names_and_class_count(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text(K400)
    conv = convert_kinetics400(str(csv))
    assert K400_TEMPLATE == "{youtube_id}_{time_start:06d}_{time_end:06d}.mp4"
    assert conv.classes == ["abseiling", "passing American football (in game)", "zumba"]
    assert [(p, labels) for p, labels, _ in conv.rows] == [
        ("-0Nm4GJ1_9E_000030_000040.mp4", [2]),
        ("--07WQ2iBlw_000001_000011.mp4", [0]),
        ("0gEqkhZN0bs_000015_000025.mp4", [1]),
    ]
    assert conv.problems == [f"{csv}: 3 classes, Kinetics-400 has 400 (a partial CSV, or Kinetics-600/700?)"]
    folders = convert_kinetics400(str(csv), template="{split}/{label_}/{youtube_id}.mp4")
    assert folders.rows[2][0] == "train/passing_American_football_(in_game)/0gEqkhZN0bs.mp4"


def test_cli_kinetics400_train_then_val_with_its_classes(tmp_path, capsys):
    root = tmp_path / "k400"
    (root / "train").mkdir(parents=True)
    write_video(root / "train" / "--07WQ2iBlw_000001_000011.mp4", [np.zeros((16, 16, 3), np.uint8)] * 5)
    (tmp_path / "train.csv").write_text(K400)
    (tmp_path / "val.csv").write_text(K400.splitlines()[0] + "\nzumba,abc,0,10,val,0\nyoga,x,0,10,val,0\n")
    classes = tmp_path / "classes.txt"
    tmpl = ["--template", "{split}/" + K400_TEMPLATE]
    assert main(["data", "convert", "kinetics400", str(tmp_path / "train.csv"), str(tmp_path / "train.txt"),
                 "--classes", str(classes), "--root", str(root), *tmpl]) == 0  # fmt: skip
    assert (tmp_path / "train.txt").read_text() == "train/--07WQ2iBlw_000001_000011.mp4 5 0\n"
    assert read_list(str(tmp_path / "train.txt"), num_classes=3)[0].num_frames == 5
    capsys.readouterr()
    # val reuses train's classes: an unknown class is dropped, indices stay train's
    assert main(["data", "convert", "kinetics400", str(tmp_path / "val.csv"), str(tmp_path / "val.txt"),
                 "--classes", str(classes), *tmpl]) == 0  # fmt: skip
    assert (tmp_path / "val.txt").read_text() == "val/abc_000000_000010.mp4 0 2\n"
    assert "'yoga' not in the class list" in capsys.readouterr().err


def test_write_list_of_a_jester_conversion_round_trips(tmp_path):
    (tmp_path / "labels.csv").write_text(JESTER_LABELS)
    (tmp_path / "val.csv").write_text("7;Swiping Left\n8;Doing other things\n")
    conv = convert_jester(str(tmp_path / "val.csv"), str(tmp_path / "labels.csv"))
    assert write_list(conv, str(tmp_path / "val.txt")) == 2
    samples = read_list(str(tmp_path / "val.txt"), num_classes=3)
    assert [(s.path, s.labels) for s in samples] == [("7", (1,)), ("8", (0,))]


@pytest.mark.parametrize("fmt", ["jester", "kinetics400"])
def test_formats_are_listed_in_help(fmt, capsys):
    with pytest.raises(SystemExit):
        main(["data", "convert", "--help"])
    assert fmt in capsys.readouterr().out
