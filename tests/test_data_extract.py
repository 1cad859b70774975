"""``adafocus data extract`` on real videos written here with PyAV: frames and re-encodes with the counted
frames in their lists, ``data check`` clean, resumable, failures reported, shards merged, training on the frames."""

import json
import os
import shutil
import subprocess
import sys
from fractions import Fraction

import av
import numpy as np
import pytest
from conftest import tiny_model
from PIL import Image

from adafocus.cli import main
from adafocus.data import extract as ex
from adafocus.data.annotations import read_list
from adafocus.errors import UsageError

BLOCK = 12  # a white square in the top-left corner of every stored frame: shows where rotation took it


def _levels(n: int) -> list[int]:
    return [20 + 17 * i for i in range(n)]  # frame i is uniformly this grey: its brightness names it


def _frames(n: int, w: int, h: int) -> list[np.ndarray]:
    out = []
    for v in _levels(n):
        img = np.full((h, w, 3), v, np.uint8)
        img[:BLOCK, :BLOCK] = 255
        out.append(img)
    return out


def _encode(path, codec, frames, *, fps=25, times_ms=None, rotation=None):
    """Write ``frames`` with PyAV; ``times_ms``: presentation times (variable frame rate)."""
    options = {"libx265": {"x265-params": "log-level=error"}, "libvpx-vp9": {"deadline": "realtime", "cpu-used": "8"}}
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height = frames[0].shape[1], frames[0].shape[0]
        s.pix_fmt = "yuv420p"
        s.options = options.get(codec, {})
        if times_ms is not None:
            s.codec_context.time_base = Fraction(1, 1000)
        if rotation is not None:
            s.set_display_rotation(rotation)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(img, format="rgb24")
            if times_ms is not None:
                f.pts, f.time_base = times_ms[i], Fraction(1, 1000)
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _decoded(path) -> list[av.VideoFrame]:
    with av.open(str(path)) as c:
        return [f for f in c.decode(video=0)]


VFR_MS = [0, 100, 140, 240, 280, 380, 420, 520, 560, 660]  # 100 ms / 40 ms alternating


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    """Six small videos in class folders (h264, odd-sized mpeg4, vp9, hevc, VFR h264, rotated h264) and
    their list; codecs this FFmpeg cannot encode are left out."""
    root = tmp_path_factory.mktemp("videos")
    specs = [
        ("c0/h264.mp4", "libx264", 12, 64, 48, {}),
        ("c1/odd.avi", "mpeg4", 10, 63, 47, {}),
        ("c0/vp9.webm", "libvpx-vp9", 9, 64, 48, {}),
        ("c2/hevc.mkv", "libx265", 8, 64, 48, {}),
        ("c1/vfr.mp4", "libx264", len(VFR_MS), 64, 48, {"times_ms": VFR_MS}),
        ("c2/rot.mp4", "libx264", 6, 64, 48, {"rotation": 90}),
    ]
    lines = []
    for rel, codec, n, w, h, kw in specs:
        if codec not in av.codecs_available:
            continue
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        _encode(root / rel, codec, _frames(n, w, h), **kw)
        lines.append(f"{rel} {n} {rel[1]}")  # label = the class folder's digit
    (root / "list.txt").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="module")
def both(videos, tmp_path_factory):
    """The list extracted once to frames and re-encodes, with two workers."""
    out = tmp_path_factory.mktemp("both")
    rc = main(["data", "extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out)]
              + ["--format", "both", "--workers", "2", "--no-progress"])  # fmt: skip
    assert rc == 0
    return out


def _brightness(img: np.ndarray) -> float:
    """Mean grey away from the white block (in any corner)."""
    h, w = img.shape[:2]
    return float(img[h // 3 : 2 * h // 3, w // 3 : 2 * w // 3].mean())


def _which(img: np.ndarray, n: int) -> int:
    return int(np.argmin([abs(_brightness(img) - v) for v in _levels(n)]))


def test_frames_and_videos_have_the_counted_frames_and_pass_data_check(videos, both):
    samples = {s.path: s for s in read_list(str(videos / "list.txt"))}
    frames = read_list(str(both / "frames.txt"))
    assert [s.path for s in frames] == [os.path.splitext(p)[0] for p in samples]
    for s in frames:
        src = next(v for p, v in samples.items() if p.startswith(s.path + "."))
        decoded = _decoded(videos / src.path)
        assert s.labels == src.labels and s.num_frames == len(decoded)
        files = sorted(os.listdir(both / s.path))
        assert files == [".done"] + [f"img_{k:05d}.jpg" for k in range(1, len(decoded) + 1)]
        images = [np.asarray(Image.open(both / s.path / f)) for f in files[1:]]
        assert [_which(img, len(decoded)) for img in images] == list(range(len(decoded)))  # every frame, in order
        rot = decoded[0].rotation
        h, w = images[0].shape[:2]
        assert (w, h) == ((decoded[0].width, decoded[0].height) if rot == 0 else (decoded[0].height, decoded[0].width))
    for s in read_list(str(both / "videos.txt")):
        out = _decoded(both / s.path)
        assert len(out) == s.num_frames and out[0].rotation == 0  # upright: no display matrix left
        assert out[0].width % 2 == 0 and out[0].height % 2 == 0
        with av.open(str(both / s.path)) as c:
            assert c.streams.video[0].codec_context.name in ("h264", "mpeg4")
            keys = [k for k, p in enumerate(c.demux(video=0)) if p.size and p.is_keyframe]
        assert keys[0] == 0 and max(np.diff(keys + [s.num_frames])) <= 8  # --gop 8: random access stays cheap
    for name, source in (("frames.txt", "frames"), ("videos.txt", "video")):
        assert main(["data", "check", str(both / name), "--root", str(both), "--source", source,
                     "--num-classes", "3", "--num-frames", "4"]) == 0  # fmt: skip


def test_frames_match_what_the_video_decoder_reads(videos, both):
    """source="frames" on the extracted list sees what source="video" sees on the originals (rotation too)."""
    from adafocus.data.sources import FrameFolderSource, VideoSource

    for s in read_list(str(videos / "list.txt")):
        clip = VideoSource().open(str(videos / s.path))
        folder = FrameFolderSource().open(str(both / os.path.splitext(s.path)[0]))
        assert folder.num_frames == clip.num_frames
        every = list(range(clip.num_frames))
        a, b = clip.read(every).float(), folder.read(every).float()
        assert a.shape == b.shape and (a - b).abs().mean() < 4  # JPEG q90 error only


def test_rotation_is_applied_and_odd_sizes_kept_for_frames_made_even_for_videos(videos, both):
    if not (videos / "c2/rot.mp4").exists():
        pytest.skip("no libx264")
    img = np.asarray(Image.open(both / "c2/rot/img_00001.jpg"))
    assert img.shape[:2] == (64, 48)  # stored 64x48 with a 90 degree counter-clockwise display matrix
    assert img[-BLOCK // 2 :, : BLOCK // 2].mean() > 240 and img[: BLOCK // 2, : BLOCK // 2].mean() < 100
    first = _decoded(both / "c2/rot.mp4")[0].to_ndarray(format="rgb24")
    assert first.shape[:2] == (64, 48) and first[-BLOCK // 2 :, : BLOCK // 2].mean() > 200
    odd = np.asarray(Image.open(both / "c1/odd/img_00001.jpg"))
    assert odd.shape[:2] == (47, 63)
    video = _decoded(both / "c1/odd.mp4")[0]
    assert (video.width, video.height) == (64, 48)  # the nearest even sizes (H.264 / 4:2:0)


def test_vfr_reencode_keeps_the_presentation_times(videos, both):
    if not (videos / "c1/vfr.mp4").exists():
        pytest.skip("no libx264")
    times = [float(f.time) for f in _decoded(both / "c1/vfr.mp4")]
    assert np.allclose(np.array(times) - times[0], np.array(VFR_MS) / 1000, atol=2e-3)


def test_resample_gives_each_instant_the_frame_on_screen():
    times = [Fraction(t, 1000) for t in VFR_MS]
    rate = Fraction(1000, 70)  # the last frame lasts 70 ms
    for fps in (Fraction(5), Fraction(10), Fraction(25), Fraction(30000, 1001)):
        slots = list(ex.resample(iter(times), fps, rate))
        assert len(slots) == len(times)
        got = {k: j for j, ks in enumerate(slots) for k in ks}
        end = times[-1] + 1 / rate
        instants = [k for k in range(1000) if k / fps < end]
        assert sorted(got) == instants  # every instant once, none after the end
        for k, j in got.items():  # the last frame that started at or before the instant
            assert j == max(i for i, t in enumerate(times) if t <= k / fps)
    assert list(ex.resample(iter(times), None, rate)) == [[k] for k in range(len(times))]


def test_short_side_and_fps(videos, tmp_path):
    out = tmp_path / "out"
    assert main(["data", "extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out),
                 "--short-side", "32", "--fps", "10", "--workers", "1", "--no-progress"]) == 0  # fmt: skip
    lines = {s.path: s for s in read_list(str(out / "frames.txt"))}
    h264 = lines["c0/h264"]
    n, rate = 12, 25
    expected = [k for k in range(100) if Fraction(k, 10) < Fraction(n, rate)]
    assert h264.num_frames == len(expected)
    for k in expected:
        img = np.asarray(Image.open(out / "c0/h264" / f"img_{k + 1:05d}.jpg"))
        assert min(img.shape[:2]) == 32 and abs(img.shape[1] / img.shape[0] - 64 / 48) < 0.05
        assert _which(img, n) == max(j for j in range(n) if Fraction(j, rate) <= Fraction(k, 10))


def _mtimes(out) -> dict[str, int]:
    return {
        str(p.relative_to(out)): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and ".txt" not in p.name
    }


def test_rerun_skips_finished_outputs_and_redoes_half_written_ones(videos, tmp_path, capsys):
    out = tmp_path / "out"
    inp = ex.read_input(str(videos / "list.txt"), root=str(videos))
    settings = ex.Settings(formats=("frames", "video"))
    first = ex.extract(inp, str(out), settings, progress=False)
    n = len(inp.items)
    assert (first.extracted, first.skipped, first.failures) == (n, 0, [])
    lists = {k: open(p).read() for k, p in first.lists.items()}
    before = _mtimes(out)

    argv = ["data", "extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--format", "both",
            "--workers", "1", "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert f"{n} already extracted (skipped), 0 to extract" in capsys.readouterr().err
    assert _mtimes(out) == before  # nothing rewritten

    os.remove(out / "c0/h264/.done")  # a folder without its marker is not complete
    os.remove(out / "c1/odd/img_00003.jpg")
    os.remove(out / "c1/odd.mp4")  # killed before the rename: only a temporary file is there
    (out / "c1/.odd.mp4.tmp-999.mp4").write_bytes(b"half a video")
    (out / "c1/.odd.tmp-999").mkdir()  # and a half-written frame folder of an earlier run
    third = ex.extract(inp, str(out), settings, progress=False)
    assert (third.extracted, third.skipped, third.failures) == (2, n - 2, [])
    assert not list(out.rglob("*.tmp-*"))
    assert {k: open(p).read() for k, p in third.lists.items()} == lists
    assert len(os.listdir(out / "c1/odd")) == 1 + read_list(str(out / "frames.txt"))[1].num_frames

    changed = ex.extract(inp, str(out), ex.Settings(formats=("frames",), quality=50), progress=False)
    assert changed.extracted == n  # other settings: the outputs are stale, all redone


def test_bad_videos_are_reported_and_the_others_finish(videos, tmp_path, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "noise.mp4").write_bytes(np.random.default_rng(0).integers(0, 255, 5000, dtype=np.uint8).tobytes())
    whole = (videos / "c0/h264.mp4").read_bytes()
    (bad / "cut.mp4").write_bytes(whole[: len(whole) // 2])  # the index (moov) is at the end: gone
    good = (videos / "list.txt").read_text()
    lst = tmp_path / "list.txt"
    lst.write_text(f"{bad}/noise.mp4 5 0\n" + good + f"{bad}/cut.mp4 12 1\n{bad}/missing.mp4 3 1\nnot-a-line\n")
    out = tmp_path / "out"
    rc = main(["data", "extract", str(lst), "--root", str(videos), "--out", str(out), "--workers", "2",
               "--no-progress"])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "4 failed" in err
    rows = [r.split("\t") for r in (out / "failures.tsv").read_text().splitlines()]
    assert rows[0] == ["path", "reason"] and len(rows) == 5 and all(len(r) == 2 and r[1] for r in rows[1:])
    assert [r[0] for r in rows[1:]] == [f"{lst}:{len(good.splitlines()) + 4}", f"{bad}/noise.mp4",
                                        f"{bad}/cut.mp4", f"{bad}/missing.mp4"]  # fmt: skip
    assert "not found" in rows[-1][1] and "not a readable video" in rows[2][1]
    assert len(read_list(str(out / "frames.txt"))) == len(good.splitlines())  # every good video extracted
    assert main(["data", "check", str(out / "frames.txt"), "--root", str(out), "--source", "frames"]) == 0


def test_two_shards_cover_every_item_once_and_merge_to_the_unsharded_list(videos, both, tmp_path, monkeypatch,
                                                                          capsys):  # fmt: skip
    out = tmp_path / "sharded"
    base = ["data", "extract", str(videos / "list.txt"), "--root", str(videos), "--out", str(out), "--format", "both",
            "--workers", "1", "--no-progress"]  # fmt: skip
    assert main([*base, "--shard", "0/2"]) == 0
    capsys.readouterr()
    assert main(["data", "extract", "--merge", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "shard 1 of 2 missing" in err and "--shard 1/2" in err
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(base) == 0  # the shard from the launcher's variables
    assert "shard 1/2 from RANK/WORLD_SIZE" in capsys.readouterr().err
    for kind in ("frames", "videos"):
        parts = [(out / f"{kind}.shard-{i}-of-2.txt").read_text().splitlines() for i in (0, 1)]
        whole = (both / f"{kind}.txt").read_text().splitlines()
        assert not set(parts[0]) & set(parts[1]) and sorted(parts[0] + parts[1]) == sorted(whole)
    assert not (out / "frames.txt").exists()
    assert main(["data", "extract", "--merge", str(out)]) == 0
    for name in ("frames.txt", "videos.txt"):
        assert (out / name).read_text() == (both / name).read_text()
    manifest = json.loads((out / "shard-0-of-2.json").read_text())
    manifest["fingerprint"] = "other"
    (out / "shard-0-of-2.json").write_text(json.dumps(manifest))
    assert main(["data", "extract", "--merge", str(out)]) == 2  # shards of different inputs are never merged


def test_shard_from_the_environment():
    assert ex.shard_from_env({}) == (0, 1, None)
    assert ex.shard_from_env({"RANK": "2", "WORLD_SIZE": "3", "SLURM_PROCID": "0", "SLURM_NTASKS": "9"})[:2] == (2, 3)
    assert ex.shard_from_env({"SLURM_PROCID": "4", "SLURM_NTASKS": "9"})[:2] == (4, 9)
    assert ex.shard_from_env({"NODE_RANK": "1", "NUM_NODES": "2"})[:2] == (1, 2)
    env = {"NODE_RANK": "1", "NUM_NODES": "2", "LOCAL_RANK": "3", "LOCAL_WORLD_SIZE": "4"}
    assert ex.shard_from_env(env)[:2] == (7, 8)
    for env in ({"RANK": "1"}, {"SLURM_NTASKS": "4"}, {"NODE_RANK": "0"}, {"RANK": "x", "WORLD_SIZE": "2"},
                {"RANK": "2", "WORLD_SIZE": "2"}):  # fmt: skip
        with pytest.raises(UsageError):
            ex.shard_from_env(env)
    assert ex.parse_shard("3/4") == (3, 4)
    for bad in ("4/4", "-1/2", "1", "a/b"):
        with pytest.raises(UsageError, match="--shard"):
            ex.parse_shard(bad)


def test_folder_input_labels_from_class_folders(videos, both, tmp_path):
    out = videos / "extracted"  # inside the input folder: its outputs must not become inputs
    try:
        for _ in range(2):
            assert main(["data", "extract", str(videos), "--out", str(out), "--workers", "1", "--no-progress"]) == 0
        assert (out / "classes.txt").read_text().split() == ["c0", "c1", "c2"]
        got = sorted((s.path, s.num_frames, s.labels) for s in read_list(str(out / "frames.txt")))
        assert got == sorted((s.path, s.num_frames, s.labels) for s in read_list(str(both / "frames.txt")))
    finally:
        shutil.rmtree(out)


def test_bad_arguments_are_one_line(videos, tmp_path, capsys):
    base = ["data", "extract", str(videos / "list.txt"), "--out", str(tmp_path / "o"), "--no-progress"]
    for extra, name in ((["--shard", "2/2"], "--shard"), (["--fps", "abc"], "--fps"), (["--quality", "0"], "--quality"),
                        (["--workers", "0"], "--workers")):  # fmt: skip
        assert main([*base, *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err and name in err
    assert main(["data", "extract", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.txt" in capsys.readouterr().err
    assert main(["data", "extract", "--merge", str(tmp_path)]) == 2
    assert "no shard manifests" in capsys.readouterr().err
    assert main(["data", "extract", str(videos), "--root", str(videos), "--out", str(tmp_path / "o")]) == 2
    assert "--root" in capsys.readouterr().err


def test_mpeg4_fallback_keeps_the_short_gop(videos, tmp_path):
    inp = ex.read_input(str(videos / "list.txt"), root=str(videos))
    inp.items[:] = inp.items[:1]
    report = ex.extract(inp, str(tmp_path), ex.Settings(formats=("video",), codec="mpeg4", gop=4), progress=False)
    (line,) = read_list(report.lists["video"])
    with av.open(str(tmp_path / line.path)) as c:
        assert c.streams.video[0].codec_context.name == "mpeg4"
        keys = [k for k, p in enumerate(c.demux(video=0)) if p.size and p.is_keyframe]
    assert keys == list(range(0, line.num_frames, 4))


def test_a_short_fit_runs_on_the_extracted_frames(both):
    import pytorch_lightning as pl
    import torch

    from adafocus.data import VideoDataModule
    from adafocus.training import WarmupStage

    dm = VideoDataModule(str(both / "frames.txt"), str(both / "frames.txt"), num_classes=3, root=str(both),
                         source="frames", num_frames=4, input_size=64, scale_size=64, batch_size=2, num_workers=0,
                         on_error="raise")  # fmt: skip
    stage = WarmupStage(3, net=lambda k: tiny_model(num_classes=k), lr_interval="step")
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=1,
                         num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(stage, datamodule=dm)
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["train/loss"])


def test_help_answers_without_importing_pyav_or_torch():
    code = """
import contextlib, io, sys
from adafocus.cli import main
out = io.StringIO()
with contextlib.redirect_stdout(out):
    try:
        main(["data", "extract", "--help"])
    except SystemExit as e:
        assert e.code == 0
assert "--shard" in out.getvalue() and "--merge" in out.getvalue()
print(sorted(m for m in ("torch", "numpy", "av", "PIL", "pytorch_lightning") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_a_latin1_list_extracts_with_its_encoding(tmp_path):
    """``--encoding`` reaches the list reader: a Latin-1 list (a name with 'é') extracts, UTF-8 lists come out."""
    from adafocus.data.extract import read_input

    (tmp_path / "café.mp4").write_bytes(b"")
    lst = tmp_path / "latin1.txt"
    lst.write_bytes("plain.mp4 5 1\ncafé.mp4 5 2\n".encode("latin-1"))
    inp = read_input(str(lst), root=str(tmp_path), encoding="latin-1")
    assert [i.src for i in inp.items][1] == str(tmp_path / "café.mp4") and not inp.problems
    bad = read_input(str(lst), root=str(tmp_path))  # read as UTF-8: line 2 is a named problem, not a crash
    assert len(bad.items) == 1 and len(bad.problems) == 1 and bad.problems[0][0].endswith("latin1.txt:2")
    assert "not UTF-8" in bad.problems[0][1]
