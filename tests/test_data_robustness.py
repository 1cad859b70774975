"""Real videos and real list files: rotated phone videos, variable frame rate, images named .mp4,
lists in Latin-1 or with a BOM, symlink loops and paths that contain the delimiter."""

import os
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from torchvision.io import write_jpeg, write_png

from adafocus.cli import main
from adafocus.data import DataError, VideoDataModule, VideoDataset, read_list
from adafocus.data.check import check_list
from adafocus.data.encode import write_video
from adafocus.data.sampling import clip_indices, clip_test_indices, tsn_time_indices
from adafocus.data.sources import VideoSource, make_source

H, W = 16, 32  # landscape as stored; a quarter turn displays it 16 wide, 32 tall
RED = np.array([255, 0, 0], np.uint8)
# 40 frames over 10 s: 10 frames 0.8 s apart, then 30 crowded into the last 2 s (a phone's VFR clip)
VFR_TIMES = [0.8 * i for i in range(10)] + [8.0 + 2.0 / 30 * i for i in range(30)]


def _marked(i: int = 0) -> np.ndarray:
    """A grey frame (level codes ``i``) with a red top-left corner."""
    img = np.full((H, W, 3), 40 + 5 * i, np.uint8)
    img[:4, :4] = RED
    return img


def _write(path, frames, *, rotation=None, times=None, gop=None) -> None:
    """Encode ``frames`` with PyAV: a display matrix of ``rotation`` degrees (counter-clockwise, as
    FFmpeg and ``VideoFrame.rotation`` count) and/or presentation ``times`` in seconds."""
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        if gop:
            s.codec_context.gop_size = gop
            s.options = {"x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0"}
        if rotation is not None:
            s.set_display_rotation(rotation)
        if times is not None:
            s.time_base = s.codec_context.time_base = Fraction(1, 1000)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if times is not None:
                f.pts, f.time_base = round(times[i] * 1000), Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _index_of(frames: torch.Tensor) -> list[int]:
    """The frame numbers coded in the grey level of ``_marked`` frames (away from the red corner)."""
    return [round((float(f[:, -4:, -4:].float().mean()) - 40) / 5) for f in frames]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("robust")
    frames = [_marked(i) for i in range(8)]
    for name in ("a.mp4", "café.mp4", "my video.mp4"):
        write_video(d / name, frames)
    write_video(d / "one.mp4", frames[:1])  # a real 1-frame video
    write_jpeg(torch.zeros(3, 16, 16, dtype=torch.uint8), str(d / "photo.mp4"))
    write_png(torch.zeros(3, 16, 16, dtype=torch.uint8), str(d / "still.mp4"))
    os.symlink("loop.mp4", d / "loop.mp4")  # points at itself
    can_rotate = hasattr(av.video.stream.VideoStream, "set_display_rotation")  # PyAV >= 17
    for deg in (90, -90, 180) if can_rotate else ():
        _write(d / f"rot{deg}.mp4", frames, rotation=deg, gop=2)
    _write(d / "vfr.mp4", [_marked(i % 40) for i in range(40)], times=VFR_TIMES)
    return d


def _list(tmp_path, data: bytes | str, name="list.txt") -> str:
    p = tmp_path / name
    p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return str(p)


def _red_corner(frame: torch.Tensor) -> tuple[str, str]:
    """Which corner of ``(3, H, W)`` is red: ("top" | "bottom", "left" | "right")."""
    red = (frame[0] > 180) & (frame[1] < 80)
    ys, xs = red.nonzero(as_tuple=True)
    h, w = frame.shape[1:]
    return ("top" if ys.float().mean() < h / 2 else "bottom"), ("left" if xs.float().mean() < w / 2 else "right")


# 1. rotated phone videos


@pytest.mark.parametrize(
    "deg,corner",
    [(90, ("bottom", "left")), (-90, ("top", "right")), (180, ("bottom", "right"))],  # counter-clockwise degrees
)
def test_rotated_video_is_turned_upright(media, deg, corner):
    if not (media / f"rot{deg}.mp4").exists():
        pytest.skip("this PyAV cannot write a display matrix (VideoStream.set_display_rotation)")
    path = str(media / f"rot{deg}.mp4")
    clip = VideoSource().open(path)  # rotation="auto" by default
    got = clip.read([0, 5])  # frame 5 comes after a seek (keyframe every 2 frames): still rotated
    quarter = deg % 180 != 0
    assert got.shape == ((2, 3, W, H) if quarter else (2, 3, H, W))
    assert [_red_corner(f) for f in got] == [corner, corner]
    assert got.is_contiguous()
    raw = VideoSource(rotation="ignore").open(path).read([0])
    assert raw.shape == (1, 3, H, W) and _red_corner(raw[0]) == ("top", "left")  # as stored
    assert torch.equal(torch.rot90(raw[0], deg // 90, dims=(-2, -1)), got[0])
    # through the dataset and the data module's option
    lst = str(media / f"rot{deg}.txt")
    with open(lst, "w", encoding="utf-8") as f:
        f.write(f"rot{deg}.mp4 8 0\n")
    assert VideoDataset(lst, root=str(media), num_frames=2)[0]["frames"].shape[-2:] == got.shape[-2:]
    ignored = VideoDataset(lst, root=str(media), num_frames=2, rotation="ignore")[0]["frames"]
    assert ignored.shape[-2:] == (H, W)


def test_rotate_tag_of_older_ffmpeg_is_honoured(media, monkeypatch):
    """Older FFmpeg builds report a phone's rotation only as the stream's clockwise ``rotate`` tag
    (frames carry no display matrix): faked here on an unrotated video."""
    clip = VideoSource().open(str(media / "a.mp4"))
    clip._tag_rotation = -90  # what the tag rotate=90 (clockwise) becomes
    assert _red_corner(clip.read([0])[0]) == ("top", "right")
    with pytest.raises(ValueError, match="rotation must be one of"):
        make_source("video", rotation="sideways")
    with pytest.raises(ValueError, match="rotation must be one of"):
        VideoDataModule(num_classes=2, rotation="sideways")


# 2. variable frame rate


def test_time_sampling_spreads_a_vfr_video_evenly_in_time(media):
    clip = VideoSource().open(str(media / "vfr.mp4"))
    ts = clip.timestamps
    assert clip.num_frames == 40 and ts == pytest.approx(VFR_TIMES, abs=1e-3)
    assert clip.duration == pytest.approx(10.0, abs=0.1)  # the last frame lasts 1/25 s or 1/15 s
    t = 8
    in_last_2s = lambda idx: sum(ts[i] >= 8.0 for i in idx)  # noqa: E731
    by_index = clip_indices(clip, t, train=False)
    assert in_last_2s(by_index) == 6  # the report: 6 of 8 samples in the last 2 s
    by_time = clip_indices(clip, t, train=False, sampling="time")
    assert in_last_2s(by_time) == 2 and by_time == sorted(by_time)
    span = clip.duration / t
    gap = max(np.diff(ts)) / 2  # a frame is at most this far from any time in the video
    for k, i in enumerate(by_time):  # each segment's centre, to the nearest frame
        assert abs(ts[i] - span * (k + 0.5)) <= gap + 1e-9
    # the decoded frames are those frames (the grey level codes the frame number)
    assert _index_of(clip.read(by_time)) == by_time
    g = torch.Generator().manual_seed(0)
    for _ in range(5):  # training: a random time in each segment, to the nearest frame
        drawn = clip_indices(clip, t, train=True, sampling="time", generator=g)
        assert all(span * k - gap - 1e-9 <= ts[i] <= span * (k + 1) + gap for k, i in enumerate(drawn))
    views = clip_test_indices(clip, t, 2, sampling="time")
    assert views[0] == by_time and views[1] != by_time and in_last_2s(views[1]) <= 3
    # a video with fewer frames than T is sampled as by index; frame folders (no timestamps) by index
    assert tsn_time_indices([0.0, 0.5], 1.0, 4, train=False) == [0, 0, 1, 1]


def test_time_sampling_through_dataset_and_datamodule(media, tmp_path):
    lst = _list(tmp_path, "vfr.mp4 40 0\n")
    by_index = _index_of(VideoDataset(lst, root=str(media), num_frames=8)[0]["frames"])
    by_time = _index_of(VideoDataset(lst, root=str(media), num_frames=8, sampling="time")[0]["frames"])
    assert sum(i >= 10 for i in by_index) == 6 and sum(i >= 10 for i in by_time) == 2
    dm = VideoDataModule(lst, lst, num_classes=1, root=str(media), num_frames=8, sampling="time",
                         rotation="ignore", encoding="latin-1", num_workers=0, on_error="raise")  # fmt: skip
    dm.setup("fit")
    ds = dm.datasets["train"]
    assert ds.sampling == "time" and ds.source.rotation == "ignore"
    with pytest.raises(ValueError, match="sampling must be one of"):
        VideoDataset(lst, sampling="pts")
    with pytest.raises(ValueError, match="encoding='nope'"):
        VideoDataModule(num_classes=2, encoding="nope")


# 3. images named .mp4


@pytest.mark.parametrize("name,kind", [("photo.mp4", "JPEG"), ("still.mp4", "PNG")])
def test_image_named_mp4_is_not_a_video(media, tmp_path, name, kind):
    with pytest.raises(DataError, match=rf"not a video \({kind} image\)"):
        VideoSource().open(str(media / name))
    assert VideoSource().open(str(media / "one.mp4")).read([0]).shape == (1, 3, H, W)  # a real 1-frame MP4
    lst = _list(tmp_path, f"a.mp4 8 0\n{name} 1 1\none.mp4 1 0\n")
    ds = VideoDataset(lst, root=str(media), num_classes=2, num_frames=2, on_error="raise")
    assert ds[2]["frames"].shape == (2, 3, H, W)  # the 1-frame video, repeated
    with pytest.raises(DataError) as e:
        ds[1]
    msg = str(e.value)
    assert msg.startswith(f"{lst}:2 {media / name}: not a video ({kind} image)") and "\n" not in msg


# 4. list files


def _check_cli(capsys, lst, root, *extra) -> tuple[int, list[str], str]:
    code = main(["data", "check", lst, "--root", str(root), "--num-frames", "2", *extra])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, [line for line in err.splitlines() if line.startswith("error:")], out


def test_latin1_list_names_the_line_and_the_encoding_option(media, tmp_path, capsys):
    lst = _list(tmp_path, "a.mp4 8 0\ncafé.mp4 8 1\nmy_missing.mp4 8 0\n".encode("latin-1"))
    with pytest.raises(DataError) as e:
        VideoDataset(lst, root=str(media), num_frames=2, on_error="raise")
    msg = str(e.value)
    assert msg.startswith(f"{lst}:2: not UTF-8 (byte 0xe9 at column 4") and "pass encoding=" in msg
    assert "\n" not in msg
    ok = VideoDataset(lst, root=str(media), num_frames=2, encoding="latin-1", on_error="raise")
    assert ok.samples[1].path == "café.mp4" and ok[1]["frames"].shape == (2, 3, H, W)
    skip = VideoDataset(lst, root=str(media), num_frames=2, on_error="skip")
    assert [s.line for s in skip.samples] == [1, 3]  # only the undecodable line is lost
    with pytest.raises(DataError, match=rf"{lst}:2: not UTF-8"):
        VideoDataModule(lst, num_classes=2, root=str(media), on_error="raise").setup("fit")  # what `fit` runs
    code, errors, out = _check_cli(capsys, lst, media)
    assert code == 1 and len(errors) == 2  # line 2 (encoding) and line 3 (missing): the rest still checked
    assert f"{lst}:2: not UTF-8 (byte 0xe9" in errors[0] and "file not found" in errors[1]
    assert f"{lst}: 2 samples, 2 errors" in out
    code, errors, out = _check_cli(capsys, lst, media, "--encoding", "latin-1")
    assert code == 1 and len(errors) == 1 and "my_missing.mp4: file not found" in errors[0]
    assert main(["data", "check", lst, "--encoding", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--encoding='nope'" in err[0]


def test_utf8_bom_and_crlf_are_not_part_of_the_path(media, tmp_path, capsys):
    lst = _list(tmp_path, b"\xef\xbb\xbfa.mp4 8 0\r\nmy\xc3\xa9.mp4 8 1\r\n")
    assert [s.path for s in read_list(lst)] == ["a.mp4", "my\u00e9.mp4"]
    ds = VideoDataset(lst, root=str(media), num_frames=2, on_error="raise")
    assert ds[0]["frames"].shape == (2, 3, H, W)
    r = check_list(lst, root=str(media), num_frames=2)
    assert [e.line for e in r.errors] == [2] and "file not found" in r.errors[0].reason  # line 1 found
    utf16 = _list(tmp_path, "a.mp4 8 0\n".encode("utf-16"), name="utf16.txt")  # BOM of its own
    assert [s.path for s in read_list(utf16, encoding="utf-16")] == ["a.mp4"]


def test_symlink_loop_is_not_file_not_found(media, tmp_path, capsys):
    lst = _list(tmp_path, "a.mp4 8 0\nloop.mp4 8 1\none.mp4 1 0\n")
    ds = VideoDataset(lst, root=str(media), num_frames=2, on_error="raise")
    with pytest.raises(DataError) as e:
        ds[1]
    assert str(e.value).startswith(f"{lst}:2 {media / 'loop.mp4'}: symlink loop")
    code, errors, out = _check_cli(capsys, lst, media)
    assert code == 1 and len(errors) == 1 and f"{lst}:2 " in errors[0] and "symlink loop" in errors[0]
    assert f"{lst}: 3 samples, 1 errors" in out


def test_path_with_the_delimiter_gets_a_hint_and_can_be_quoted(media, tmp_path, capsys):
    lst = _list(tmp_path, "a.mp4 8 0\nmy video.mp4 8 1\n")
    with pytest.raises(DataError) as e:
        VideoDataset(lst, root=str(media), num_frames=2, on_error="raise")
    msg = str(e.value)
    assert msg.startswith(f"{lst}:2: num_frames and labels must be integers")
    assert "the path may contain the delimiter ' '" in msg and "quote it or pass --delimiter / delimiter=','" in msg
    code, errors, out = _check_cli(capsys, lst, media)
    assert code == 1 and len(errors) == 1 and "may contain the delimiter" in errors[0]
    assert f"{lst}: 1 samples, 1 errors" in out  # line 1 still checked
    for text, delimiter in (('a.mp4 8 0\n"my video.mp4" 8 1\n', " "), ("a.mp4,8,0\nmy video.mp4,8,1\n", ",")):
        good = _list(tmp_path, text, name="good.txt")
        ds = VideoDataset(good, root=str(media), num_frames=2, delimiter=delimiter, on_error="raise")
        assert ds.samples[1].path == "my video.mp4" and ds[1]["frames"].shape == (2, 3, H, W)
        assert check_list(good, root=str(media), num_frames=2, delimiter=delimiter).ok


def test_an_error_in_a_dataloader_worker_stays_one_line(tmp_path):
    """``on_error="raise"`` with worker processes: PyTorch re-raises the DataError with its worker traceback as
    the message; the error the user sees is still the one line naming the list, the line and the file."""
    from torch.utils.data import DataLoader

    lst = tmp_path / "list.txt"
    lst.write_text("missing.mp4 8 0\n")
    ds = VideoDataset(str(lst), root=str(tmp_path), on_error="raise")
    with pytest.raises(DataError) as info:
        next(iter(DataLoader(ds, batch_size=1, num_workers=1)))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{lst}:1 ") and "missing.mp4" in msg and "Traceback" not in msg
