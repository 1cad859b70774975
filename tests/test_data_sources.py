"""Sources, TSN sampling and clip transforms on MP4s and frame folders written here."""

import numpy as np
import pytest
import torch
from PIL import Image

from adafocus.data import VideoDataset, make_source, tsn_indices
from adafocus.data.encode import write_video
from adafocus.data.transforms import build_transform

N = 30  # frames per test video; frame i is flat grey 8*i+4, so decoded pixels give the frame index


def _frames(n=N, h=48, w=64):
    return [np.full((h, w, 3), 8 * i + 4, np.uint8) for i in range(n)]


def _index_of(clip: torch.Tensor) -> list[int]:
    """Frame index of every frame of a decoded (T, 3, H, W) clip."""
    v = clip[:, :, 8:-8, 8:-8].float().mean(dim=(1, 2, 3))
    return [round((float(x) - 4) / 8) for x in v]


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    d = tmp_path_factory.mktemp("media")
    write_video(d / "long.mp4", _frames(), gop=250, crf=5)
    write_video(d / "short_gop.mp4", _frames(), gop=4, crf=5)
    folder = d / "folder"
    folder.mkdir()
    for i, f in enumerate(_frames(), start=1):
        Image.fromarray(f).save(folder / f"img_{i:05d}.jpg", quality=95)
    return d


def test_tsn_eval_indices_exact():
    assert tsn_indices(100, 8, train=False) == [6, 18, 31, 43, 56, 68, 81, 93]
    assert tsn_indices(16, 16, train=False) == list(range(16))
    assert tsn_indices(30, 4, train=False) == [3, 11, 18, 26]


def test_tsn_train_indices_exact_with_seeded_generator():
    got = tsn_indices(100, 8, train=True, generator=torch.Generator().manual_seed(3))
    offsets = torch.randint(12, (8,), generator=torch.Generator().manual_seed(3))  # d = 100 // 8
    assert got == [12 * k + int(o) for k, o in enumerate(offsets)]
    for _ in range(50):  # every draw stays inside its segment
        idx = tsn_indices(37, 5, train=True)
        assert all(7 * k <= i < 7 * (k + 1) for k, i in enumerate(idx))


@pytest.mark.parametrize("train", [True, False])
def test_tsn_short_video_repeats_evenly(train):
    assert tsn_indices(5, 8, train=train) == [0, 0, 1, 1, 2, 3, 3, 4]
    assert tsn_indices(1, 4, train=train) == [0, 0, 0, 0]


@pytest.mark.parametrize("name", ["long.mp4", "short_gop.mp4"])
def test_video_source_reads_exact_frames(media, name):
    clip = make_source("video").open(str(media / name))
    assert clip.num_frames == N
    wanted = [0, 5, 6, 17, 17, 29, 2]  # unsorted and repeated on purpose
    out = clip.read(wanted)
    clip.close()
    assert out.dtype == torch.uint8 and out.shape == (len(wanted), 3, 48, 64)
    assert _index_of(out) == wanted


def test_frame_folder_source_is_one_indexed(media):
    clip = make_source("frames", frame_template="img_{:05d}.jpg").open(str(media / "folder"))
    assert clip.num_frames == N  # counted from the folder when the list gives none
    assert _index_of(clip.read([0, 13, 29])) == [0, 13, 29]


@pytest.mark.parametrize("source,path", [("video", "long.mp4"), ("frames", "folder")])
def test_dataset_eval_takes_segment_centres(media, tmp_path, source, path):
    lst = tmp_path / "l.txt"
    lst.write_text(f"{path} {N} 1\n")
    ds = VideoDataset(str(lst), root=str(media), source=source, num_frames=4)
    item = ds[0]
    assert _index_of(item["frames"]) == tsn_indices(N, 4, train=False) == [3, 11, 18, 26]
    assert item["label"].item() == 1 and item["index"].item() == 0


def test_dataset_train_uses_torch_rng(media, tmp_path):
    lst = tmp_path / "l.txt"
    lst.write_text(f"short_gop.mp4 {N} 1\n")
    ds = VideoDataset(str(lst), root=str(media), num_frames=6, train=True)
    torch.manual_seed(11)
    got = _index_of(ds[0]["frames"])
    torch.manual_seed(11)
    assert got == tsn_indices(N, 6, train=True)


def test_same_augmentation_for_every_frame():
    torch.manual_seed(0)
    frame = torch.randint(0, 256, (3, 60, 80), dtype=torch.uint8)
    clip = frame.expand(8, 3, 60, 80).contiguous()
    t = build_transform(train=True, input_size=32, scale_size=40)
    outs = []
    for _ in range(6):
        from adafocus.data.transforms import apply_clip_transform

        y = apply_clip_transform(t, clip)
        assert y.shape == (8, 3, 32, 32) and y.dtype == torch.float32
        assert torch.equal(y, y[:1].expand_as(y))  # identical frames stay identical: one draw per clip
        outs.append(y[0])
    assert any(not torch.allclose(outs[0], o) for o in outs[1:])  # but draws differ between clips


def test_eval_transform_resizes_then_centre_crops():
    x = torch.zeros(2, 3, 64, 128, dtype=torch.uint8)
    x[..., 60:68] = 255  # a bright band at the centre columns survives a centre crop
    y = build_transform(train=False, input_size=24, scale_size=32)(x)
    assert y.shape == (2, 3, 24, 24)
    assert y[..., 12].mean() > y[..., 0].mean()


def test_grayscale_video_gives_three_equal_channels(tmp_path):
    gray = [np.full((32, 48), 16 * i, np.uint8) for i in range(6)]
    write_video(tmp_path / "g.mkv", gray, codec="ffv1", gray=True)
    clip = make_source("video").open(str(tmp_path / "g.mkv"))
    out = clip.read([0, 3, 5])
    assert out.shape == (3, 3, 32, 48)
    assert torch.equal(out[:, 0], out[:, 1]) and torch.equal(out[:, 1], out[:, 2])
    assert out[1, 0, 0, 0].item() == 48
