"""Annotation lists, bad inputs (raise and skip), multi-label targets and the VideoDataModule."""

import os

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, DistributedSampler

from adafocus.data import DataError, VideoDataModule, VideoDataset, read_list
from adafocus.data.check import check_list
from adafocus.data.encode import write_video

T = 4


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        write_video(d / f"{name}.mp4", [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(10)])
    write_video(d / "short.mp4", [np.zeros((40, 56, 3), np.uint8)] * 2)
    write_video(d / "gray.mp4", [np.full((40, 56), 100, np.uint8)] * 6, gray=True)
    (d / "empty.mp4").write_bytes(b"")
    (d / "random.mp4").write_bytes(rng.integers(0, 256, 5000, dtype=np.uint8).tobytes())
    data = (d / "a.mp4").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    write_video(d / "fs.mp4", [rng.integers(0, 255, (40, 56, 3), dtype=np.uint8) for _ in range(10)], faststart=True)
    data = (d / "fs.mp4").read_bytes()
    (d / "truncated_faststart.mp4").write_bytes(data[: len(data) // 2])
    return d


def _list(tmp_path, text, name="list.txt"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_formats_delimiter_and_padding(tmp_path):
    lst = _list(tmp_path, "# comment\nx/a.mp4,120,3,-1,-1\n\nx/b.mp4,4\ny,7,1,4,-1\n")
    s = read_list(lst, delimiter=",", num_classes=5)
    assert [(x.path, x.num_frames, x.labels, x.line) for x in s] == [
        ("x/a.mp4", 120, (3,), 2),
        ("x/b.mp4", None, (4,), 4),
        ("y", 7, (1, 4), 5),
    ]
    assert s[2].label == 1


def test_plain_format(tmp_path):
    s = read_list(_list(tmp_path, "a.mp4 2\nb.mp4 0\n"), num_classes=3)
    assert [(x.path, x.num_frames, x.labels) for x in s] == [("a.mp4", None, (2,)), ("b.mp4", None, (0,))]


@pytest.mark.parametrize(
    "text,needle",
    [
        ("a.mp4 10 1\nb.mp4 10 7\n", ":2: label 7 out of range [0, 5)"),
        ("a.mp4 10 1\nb.mp4\n", ":2: expected 'path label'"),
        ("a.mp4 ten 1\n", ":1: num_frames and labels must be integers"),
        ("a.mp4 10 -1 -1\n", ":1: no label"),
        ("", "annotation list is empty"),
        ("\n# only a comment\n", "annotation list is empty"),
    ],
)
def test_bad_list_lines_name_file_and_line(tmp_path, text, needle):
    lst = _list(tmp_path, text)
    with pytest.raises(DataError) as e:
        VideoDataset(lst, num_classes=5, num_frames=T)
    assert needle in str(e.value) and str(lst) in str(e.value)


@pytest.mark.parametrize(
    "name,needle",
    [
        ("missing.mp4", "file not found"),
        ("empty.mp4", "empty file (0 bytes)"),
        ("random.mp4", "not a readable video"),
        ("truncated.mp4", "not a readable video"),
        ("truncated_faststart.mp4", "truncated: header declares 10 frames"),
    ],
)
def test_bad_videos_raise_with_file_and_line(tmp_path, root, name, needle):
    lst = _list(tmp_path, f"a.mp4 10 0\n{name} 10 1\n")
    ds = VideoDataset(lst, root=str(root), num_classes=2, num_frames=T, on_error="raise")
    ds[0]
    with pytest.raises(DataError) as e:
        ds[1]
    msg = str(e.value)
    assert f"{lst}:2" in msg and os.path.join(str(root), name) in msg and needle in msg


def test_short_and_grayscale_videos_load(tmp_path, root):
    lst = _list(tmp_path, "short.mp4 2 0\ngray.mp4 6 1\n")
    ds = VideoDataset(lst, root=str(root), num_classes=2, num_frames=T)
    assert ds[0]["frames"].shape == (T, 3, 40, 56)  # 2 frames repeated to T
    g = ds[1]["frames"]
    assert g.shape == (T, 3, 40, 56) and torch.equal(g[:, 0], g[:, 2])


def test_skip_replaces_deterministically_and_counts(tmp_path, root):
    lst = _list(tmp_path, "a.mp4 10 0\nmissing.mp4 10 1\nempty.mp4 10 1\nb.mp4 10 2\nbad line\nc.mp4 10 9\n")
    ds = VideoDataset(
        lst, root=str(root), num_classes=3, num_frames=T, on_error="skip", skip_log_dir=str(tmp_path / "skips")
    )
    assert len(ds) == 4 and ds.num_skipped == 2  # malformed line and label 9 dropped at load
    item = ds[1]  # missing -> empty -> b.mp4
    assert item["index"].item() == 3 and item["label"].item() == 2
    assert ds.num_skipped == 4
    assert ds[1]["index"].item() == 3  # the same replacement every time
    from adafocus.data.dataset import collect_skips

    rows = collect_skips(str(tmp_path / "skips"))
    assert [r[1] for r in rows] == ["2", "3", "5", "6"]  # each bad line listed once
    assert "file not found" in rows[0][4]


def test_multi_label_targets(tmp_path, root):
    lst = _list(tmp_path, "a.mp4,10,2,0,-1\nb.mp4,10,4,-1,-1\n")
    ds = VideoDataset(lst, root=str(root), delimiter=",", num_classes=5, num_frames=T, multi_label=True)
    batch = next(iter(DataLoader(ds, batch_size=2)))
    assert batch["label"].tolist() == [2, 4]
    assert batch["target"].tolist() == [[1, 0, 1, 0, 0], [0, 0, 0, 0, 1]]
    assert batch["target"].dtype == torch.float32


def _dm(tmp_path, root, **kw):
    train = _list(tmp_path, "".join(f"{n}.mp4 10 {i % 3}\n" for i, n in enumerate("abcabc")), "train.txt")
    val = _list(tmp_path, "a.mp4 10 0\nb.mp4 10 1\nmissing.mp4 10 1\n", "val.txt")
    args = dict(root=str(root), num_classes=3, num_frames=T, input_size=32, scale_size=36, batch_size=2, num_workers=0)
    args.update(kw)
    return VideoDataModule(train, val, **args)


def test_datamodule_batches(tmp_path, root):
    dm = _dm(tmp_path, root)
    assert dm.num_classes == 3
    dm.setup("fit")
    b = next(iter(dm.train_dataloader()))
    assert b["frames"].shape == (2, T, 3, 32, 32) and b["frames"].dtype == torch.float32
    assert b["label"].dtype == torch.long and b["index"].dtype == torch.long
    assert abs(b["frames"].mean().item()) < 3  # normalised, not 0..255
    v = list(dm.val_dataloader())
    assert sum(len(x["index"]) for x in v) == 3 and len(dm.skipped) == 1


def test_datamodule_under_world_size_2(tmp_path, root):
    dm = _dm(tmp_path, root)
    dm.setup("fit")
    ds = dm.datasets["train"]
    seen = []
    for rank in range(2):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(ds, batch_size=2, sampler=sampler)
        idx = [i for b in loader for i in b["index"].tolist()]
        assert len(idx) == 3
        seen.append(set(idx))
    assert seen[0].isdisjoint(seen[1]) and seen[0] | seen[1] == set(range(6))


def test_datamodule_workers_and_skip_report_in_run_dir(tmp_path, root):
    class Tiny(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 3)

        def training_step(self, batch, _):
            return torch.nn.functional.cross_entropy(self.lin(batch["frames"].mean(dim=(1, 3, 4))), batch["label"])

        def validation_step(self, batch, _):
            pass

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    dm = _dm(tmp_path, root, num_workers=1)
    trainer = pl.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path / "run"),
    )
    trainer.fit(Tiny(), datamodule=dm)
    report = tmp_path / "run" / "skipped_samples.tsv"
    lines = report.read_text().splitlines()
    assert len(lines) == 2 and "val.txt\t3\t2\t" in lines[1] and "missing.mp4" in lines[1]


def test_datamodule_config_via_jsonargparse(tmp_path):
    from jsonargparse import ArgumentParser

    p = ArgumentParser()
    p.add_class_arguments(VideoDataModule, "data")
    cfg = p.parse_object(
        {"data": {"train_list": "t.txt", "val_list": "v.txt", "num_classes": 7, "source": "frames", "flip": False}}
    )
    dm = VideoDataModule(**cfg.data.as_dict())
    assert dm.num_classes == 7 and dm.hparams.source == "frames"


def test_check_reports_every_problem(tmp_path, root):
    lst = _list(
        tmp_path,
        "a.mp4 10 0\nmissing.mp4 10 1\nrandom.mp4 10 1\nshort.mp4 2 1\na.mp4 10 8\nbroken\n"
        "truncated.mp4 10 0\nb.mp4 99 1\n",
    )
    r = check_list(lst, root=str(root), num_classes=3, num_frames=T)
    errs = {e.line: e.reason for e in r.errors}
    assert sorted(errs) == [2, 3, 5, 6, 7]
    assert "file not found" in errs[2] and "out of range" in errs[5]
    warns = {w.line: w.reason for w in r.warnings}
    assert "fewer than T=4" in warns[4] and "list says 99 frames, found 10" in warns[8]
    assert not r.ok and any(f"{lst}:7" in line for line in r.lines())
