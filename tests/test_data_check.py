"""``adafocus data check`` on the two reproduction pitfalls: frame counts that disagree with the media
(frames extracted at another rate than the list was made for) and frame rates far from the set's."""

import json

import numpy as np
import pytest
import torch
from torchvision.io import write_jpeg

from adafocus.cli import main
from adafocus.data.check import check_list, duration_of, parse_count_tolerance, read_durations
from adafocus.data.encode import write_video


def _frames(folder, n):
    folder.mkdir(parents=True)
    img = torch.zeros(3, 16, 16, dtype=torch.uint8)
    for i in range(1, n + 1):
        write_jpeg(img, str(folder / f"img_{i:05d}.jpg"))


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """Frame folders of 3 s videos: two extracted at 1 fps (3 frames), two at 10 fps (30 frames);
    MP4s of 8 frames at 25, 25 and 1 fps; the durations as an ActivityNet JSON."""
    d = tmp_path_factory.mktemp("media")
    for name, n in (("v_slow1", 3), ("v_slow2", 3), ("v_ok1", 30), ("v_ok2", 30)):
        _frames(d / name, n)
    for name, fps in (("a", 25), ("b", 25), ("one_fps", 1)):
        write_video(d / f"{name}.mp4", [np.zeros((16, 16, 3), np.uint8)] * 8, fps=fps)
    db = {vid: {"duration": 3.0, "subset": "training"} for vid in ("slow1", "slow2", "ok1", "ok2")}
    (d / "anet.json").write_text(json.dumps({"database": db}))
    return d


def test_list_made_at_another_rate_is_flagged_per_line_with_the_ratio(media, tmp_path):
    lst = tmp_path / "val.txt"
    # the list was made from 10 fps folders (30 frames); two folders were extracted at 1 fps
    lst.write_text("v_ok1 30 0\nv_slow1 30 1\nv_ok2 30 0\nv_slow2 30 1\n")
    r = check_list(str(lst), root=str(media), source="frames", num_frames=2)
    assert not r.ok and [e.line for e in r.errors] == [2, 4]
    assert all(r.kind(e) == "frame-count" and "list says 30 frames, found 3" in e.reason for e in r.errors)
    assert r.counts() == {"frame-count": 2} and r.flagged_lines() == [2, 4]
    out = r.lines()
    assert out[-2] == f"{lst}: 4 samples, 2 errors, 0 warnings"  # the existing count line, unchanged
    assert out[-1].startswith(f"{lst}: 2 of 4 lines flagged (frame-count 2); first lines: 2, 4")
    assert "10x the frames found" in out[-1]  # the likely cause: frames at a tenth of the list's rate


def test_count_tolerance_frames_or_percent(media, tmp_path):
    lst = tmp_path / "val.txt"
    lst.write_text("a.mp4 9 0\nb.mp4 10 0\n")  # both videos hold 8 frames
    exact = check_list(str(lst), root=str(media), num_frames=2, decode=False)
    assert exact.ok and [(w.line, exact.kind(w)) for w in exact.warnings] == [(1, "frame-count"), (2, "frame-count")]
    one = check_list(str(lst), root=str(media), num_frames=2, decode=False, count_tolerance=1)
    assert [w.line for w in one.warnings] == [2] and "beyond the tolerance of 1" in one.warnings[0].reason
    assert not check_list(str(lst), root=str(media), num_frames=2, decode=False, count_tolerance="25%").warnings
    # a frame list claiming more frames than the folder holds stays an error whatever the tolerance
    frames = tmp_path / "frames.txt"
    frames.write_text("v_ok1 31 0\n")
    r = check_list(str(frames), root=str(media), source="frames", num_frames=2, count_tolerance="50%")
    assert [r.kind(e) for e in r.errors] == ["frame-count"]
    assert parse_count_tolerance("5%") == (5.0, True) and parse_count_tolerance(2) == (2.0, False)
    with pytest.raises(ValueError, match="count_tolerance='x'"):
        parse_count_tolerance("x")


def test_video_fps_against_expected_and_median(media, tmp_path):
    lst = tmp_path / "val.txt"
    lst.write_text("a.mp4 8 0\none_fps.mp4 8 1\nb.mp4 8 0\n")
    assert not check_list(str(lst), root=str(media), num_frames=4).warnings  # no rate check unless asked
    for expected in (25, "auto"):  # the median of 25, 1, 25 is 25
        r = check_list(str(lst), root=str(media), num_frames=4, expected_fps=expected)
        assert r.ok and [(w.line, r.kind(w)) for w in r.warnings] == [(2, "fps")]
        assert r.warnings[0].reason.startswith("1 fps, far from the") and "25 fps" in r.warnings[0].reason
    assert len(check_list(str(lst), root=str(media), num_frames=4, expected_fps=1).warnings) == 2
    # 25 fps against 30 is 1.2x: within the default tolerance (0.25), beyond 0.1
    assert [w.line for w in check_list(str(lst), root=str(media), num_frames=4, expected_fps=30).warnings] == [2]
    assert len(check_list(str(lst), root=str(media), num_frames=4, expected_fps=30, fps_tolerance=0.1).warnings) == 3


def test_frame_folders_rate_from_known_durations(media, tmp_path):
    lst = tmp_path / "val.txt"
    lst.write_text("v_ok1 30 0\nv_slow1 3 1\nv_ok2 30 0\nv_missing_duration 0 0\n")
    _frames(tmp_path / "root" / "v_missing_duration", 30)
    for name in ("v_ok1", "v_slow1", "v_ok2"):
        (tmp_path / "root" / name).symlink_to(media / name)
    durations = read_durations(str(media / "anet.json"))
    assert durations["slow1"] == 3.0 and duration_of(durations, "v_slow1") == 3.0
    r = check_list(str(lst), root=str(tmp_path / "root"), source="frames", num_frames=2, expected_fps=10,
                   durations=str(media / "anet.json"))  # fmt: skip
    assert [(w.line, r.kind(w)) for w in r.warnings] == [(2, "duration")]
    assert r.warnings[0].reason.startswith("3 frames over 3 s = 1 fps, far from the expected 10 fps")
    assert r.notes == [f"{lst}: 1 frame folders not rate-checked: no duration listed in the durations"]
    auto = check_list(str(lst), root=str(tmp_path / "root"), source="frames", num_frames=2, expected_fps="auto",
                      durations=durations)  # fmt: skip
    assert [w.line for w in auto.warnings] == [2] and "median 10 fps" in auto.warnings[0].reason
    # text durations: 'name seconds' lines, any separator; a bad line names the file and line
    txt = tmp_path / "durations.txt"
    txt.write_text("# name seconds\nv_ok1 3\nv_slow1,3.0\n")
    assert read_durations(str(txt)) == {"v_ok1": 3.0, "v_slow1": 3.0}
    txt.write_text("v_ok1 3\nv_slow1 long\n")
    with pytest.raises(Exception, match=rf"{txt}:2"):
        read_durations(str(txt))


def test_clean_list_output_is_unchanged(media, tmp_path):
    lst = tmp_path / "val.txt"
    lst.write_text("a.mp4 8 0\nb.mp4 8 1\n")
    r = check_list(str(lst), root=str(media), num_frames=4, expected_fps=25, count_tolerance="5%")
    assert r.lines() == [f"{lst}: 2 samples, 0 errors, 0 warnings"] and r.summary() is None


def test_cli_flags_and_summarises(media, tmp_path, capsys):
    lst = tmp_path / "val.txt"
    lst.write_text("a.mp4 8 0\none_fps.mp4 240 1\nb.mp4 8 0\n")
    args = ["data", "check", str(lst), "--root", str(media), "--num-frames", "4", "--no-decode"]
    assert main([*args, "--expected-fps", "25"]) == 0  # warnings only: every line is still usable
    out, err = capsys.readouterr()
    assert f"warning: {lst}:2 " in err and "list says 240 frames, found 8" in err and "1 fps, far from" in err
    assert f"{lst}: 1 of 3 lines flagged (frame-count 1, fps 1); first lines: 2" in out
    assert main([*args, "--count-tolerance", "many"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--count-tolerance='many'" in err[0]
    assert main([*args, "--expected-fps", "-3"]) == 2 and "--expected-fps" in capsys.readouterr().err
    assert main([*args, "--durations", str(tmp_path / "nope.json")]) == 2
    assert "durations file not found" in capsys.readouterr().err
