"""Bad data loses nothing: ``data check`` decodes what training reads, skip mode survives clusters of
bad files and gives up only above ``max_bad_fraction``, the skip report survives a stopped run and
its temporary folders do not, and the default logger follows ``--trainer.default_root_dir``."""

import glob
import logging
import signal
import tempfile
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from torchvision.io import write_jpeg

from adafocus.cli import main
from adafocus.data import DataError, VideoDataModule, VideoDataset
from adafocus.data.check import check_list
from adafocus.data.dataset import TooManyBadSamples
from adafocus.data.encode import write_video
from adafocus.data.sampling import tsn_indices

ROOT = Path(__file__).resolve().parents[1]
TOY = ROOT / "lightning_configs" / "toy"
T = 4


@pytest.fixture(scope="module")
def media(tmp_path_factory):
    """``good.mp4`` (10 frames) and ``corrupt.mp4``: 20 intra-coded frames, frame ``CORRUPT + 1``'s
    packet zeroed (only a decode of that frame fails)."""
    d = tmp_path_factory.mktemp("media")
    rng = np.random.default_rng(0)
    write_video(d / "good.mp4", [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(10)])
    src = d / "intra.mp4"
    write_video(src, [rng.integers(0, 255, (32, 32, 3), dtype=np.uint8) for _ in range(20)], gop=1)
    with av.open(str(src)) as c:
        packets = [(p.pos, p.size) for p in c.demux(c.streams.video[0]) if p.size]
    data = bytearray(src.read_bytes())
    pos, size = packets[CORRUPT]
    data[pos : pos + size] = bytes(size)
    (d / "corrupt.mp4").write_bytes(bytes(data))
    return d


CORRUPT = 10


def _folder(path: Path, numbers, *, corrupt=()) -> None:
    path.mkdir(parents=True)
    img = torch.zeros(3, 16, 16, dtype=torch.uint8)
    for i in numbers:
        f = path / f"img_{i:05d}.jpg"
        if i in corrupt:
            f.write_bytes(b"\xff\xd8 not a jpeg")
        else:
            write_jpeg(img, str(f))


def _list(path: Path, lines) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


# 1. data check reads what training reads


def test_check_decodes_every_frame_of_a_folder(tmp_path, capsys):
    n, missing, corrupt = 30, 4, 8
    sampled = set(tsn_indices(n, 8, train=False)) | {n - 1}
    assert missing - 1 not in sampled and corrupt - 1 not in sampled  # the old check never read them
    _folder(tmp_path / "ok", range(1, n + 1))
    _folder(tmp_path / "gap", [i for i in range(1, n + 2) if i != missing])  # n files, number 4 absent
    _folder(tmp_path / "bad", range(1, n + 1), corrupt={corrupt})
    lst = _list(tmp_path / "frames.txt", [f"ok {n} 0", f"gap {n} 1", f"bad {n} 0"])
    args = ["data", "check", lst, "--root", str(tmp_path), "--source", "frames", "--num-frames", "8"]
    assert main([*args, "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{lst}:2 " in err and f"frame {missing} missing" in err
    assert f"{lst}:3 " in err and f"frame {corrupt} unreadable" in err and f"{lst}:1 " not in err
    assert main([*args, "--no-decode"]) == 0  # only counted: the folders hold n files each

    # training draws a random frame per segment: sooner or later it meets the missing one
    ds = VideoDataset(_list(tmp_path / "gap.txt", [f"gap {n} 1"]), root=str(tmp_path), source="frames",
                      num_frames=8, train=True)  # fmt: skip
    failures = 0
    for _ in range(100):
        try:
            ds[0]
        except DataError as e:
            failures += 1
            assert f"frame {missing} missing" in str(e)
    assert failures


def test_deep_decodes_every_frame_of_a_video(media, tmp_path):
    n = 20
    assert CORRUPT not in set(tsn_indices(n, T, train=False)) | {n - 1}
    lst = _list(tmp_path / "v.txt", ["good.mp4 10 0", f"corrupt.mp4 {n} 1"])
    assert check_list(lst, root=str(media), num_frames=T).ok  # open + index + the sampled frames
    deep = check_list(lst, root=str(media), num_frames=T, deep=True)
    assert [e.line for e in deep.errors] == [2] and f"frame {CORRUPT + 1} of {n}" in deep.errors[0].reason
    assert deep.kind(deep.errors[0]) == "media"


def test_cli_deep_flag_and_help(media, tmp_path, capsys):
    lst = _list(tmp_path / "v.txt", ["corrupt.mp4 20 1"])
    assert main(["data", "check", lst, "--root", str(media), "--num-frames", str(T)]) == 0
    assert main(["data", "check", lst, "--root", str(media), "--num-frames", str(T), "--deep"]) == 1
    assert f"error: {lst}:1 " in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "check", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--deep" in text and "--no-progress" in text and "frames an evaluation clip uses" in text


# 2. a cluster of bad files is skipped; only a large share of bad samples ends the run


def test_consecutive_bad_samples_are_all_replaced(media, tmp_path):
    lines = [f"missing{i}.mp4 10 0" for i in range(12)] + [f"good.mp4 10 {i % 2}" for i in range(238)]
    ds = VideoDataset(_list(tmp_path / "l.txt", lines), root=str(media), num_classes=2, num_frames=T,
                      on_error="skip", max_bad_fraction=0.05, skip_log_dir=str(tmp_path / "skips"))  # fmt: skip
    assert ds[0]["index"].item() == 12 and ds[5]["index"].item() == 12  # 12 in a row: the old limit was 11
    assert ds.num_skipped == 12  # distinct samples: the second call meets the same ones


def test_share_of_distinct_bad_samples_above_the_fraction_fails_in_one_line(media, tmp_path):
    lines = ["good.mp4 10 0" for _ in range(250)]
    for i in list(range(12)) + [200]:
        lines[i] = f"missing{i}.mp4 10 0"
    lst = _list(tmp_path / "l.txt", lines)
    ds = VideoDataset(lst, root=str(media), num_classes=1, num_frames=T, on_error="skip", max_bad_fraction=0.05,
                      skip_log_dir=str(tmp_path / "skips"))  # fmt: skip
    ds[0]  # 12 of 250: 4.8 %
    with pytest.raises(TooManyBadSamples) as e:
        ds[200]  # 13 of 250: 5.2 %
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(lst) and "13 of 250" in msg and "max_bad_fraction=0.05" in msg


def test_bad_share_is_counted_across_processes_sharing_the_skip_folder(media, tmp_path):
    """DataLoader workers each meet part of the bad samples; their records in the shared folder add up
    (two datasets stand for two workers here, deterministically)."""
    lst = _list(tmp_path / "l.txt", ["missing0.mp4 10 0", "good.mp4 10 0", "missing2.mp4 10 0"] + ["good.mp4 10 0"] * 3)
    kw = dict(root=str(media), num_classes=1, num_frames=T, on_error="skip", max_bad_fraction=0.2,
              skip_log_dir=str(tmp_path / "skips"))  # fmt: skip
    a, b = VideoDataset(lst, **kw), VideoDataset(lst, **kw)
    a[0]  # 1 of 6
    with pytest.raises(TooManyBadSamples, match="2 of 6"):
        b[2]  # b met one, a the other
    assert b.num_skipped == 1


def test_every_sample_bad_fails_even_with_fraction_one(tmp_path):
    lst = _list(tmp_path / "l.txt", ["a.mp4 10 0", "b.mp4 10 0"])
    ds = VideoDataset(lst, num_classes=1, num_frames=T, on_error="skip")
    with pytest.raises(TooManyBadSamples, match="every one of the 2 samples"):
        ds[1]


def test_one_bad_file_in_a_small_list_is_skipped(media, tmp_path):
    lst = _list(tmp_path / "l.txt", ["good.mp4 10 0", "missing.mp4 10 0", "good.mp4 10 0"])
    ds = VideoDataset(lst, root=str(media), num_classes=1, num_frames=T, on_error="skip", max_bad_fraction=0.05)
    assert ds[1]["index"].item() == 2


def test_malformed_lines_count_towards_the_share(tmp_path):
    lst = _list(tmp_path / "l.txt", ["a.mp4 10 0", "broken", "b.mp4 10 7", "c.mp4 10 0"])
    with pytest.raises(TooManyBadSamples, match="2 of 4"):
        VideoDataset(lst, num_classes=2, num_frames=T, on_error="skip", max_bad_fraction=0.3)


def test_max_retries_is_deprecated_but_accepted(tmp_path):
    from jsonargparse import ArgumentParser

    lst = _list(tmp_path / "l.txt", ["a.mp4 10 0"])
    with pytest.warns(FutureWarning, match="max_retries"):
        VideoDataset(lst, num_classes=1, num_frames=T, max_retries=3)
    with pytest.warns(DeprecationWarning, match="max_retries"):
        VideoDataModule(lst, num_classes=1, max_retries=3)
    p = ArgumentParser()
    p.add_class_arguments(VideoDataModule, "data")
    cfg = p.parse_object({"data": {"train_list": lst, "num_classes": 1, "max_retries": 10}})  # an old config
    assert cfg.data.max_retries == 10 and cfg.data.max_bad_fraction == 0.05
    with pytest.raises(ValueError, match="max_bad_fraction"):
        VideoDataModule(lst, num_classes=1, max_bad_fraction=1.5)


# 3. the skip report: written however the run ends; its temporary folders removed


class Tiny(pl.LightningModule):
    def __init__(self, fail_at: int | None = None, error: type[BaseException] = RuntimeError) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 2)
        self.fail_at, self.error = fail_at, error

    def training_step(self, batch, batch_idx):
        if batch_idx == self.fail_at:
            raise self.error("stopped mid-epoch")
        return torch.nn.functional.cross_entropy(self.lin(batch["frames"].mean(dim=(1, 3, 4))), batch["label"])

    def validation_step(self, batch, batch_idx):
        pass

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class StopAfterFirstBatch(pl.Callback):
    def on_train_batch_end(self, trainer, *args) -> None:
        trainer.should_stop = True


@pytest.fixture
def tmpdir_root(tmp_path, monkeypatch):
    """A private temporary folder, to see what the run leaves behind there."""
    d = tmp_path / "tmp"
    d.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(d))
    return d


def _fit(tmp_path, media, model, *, train_lines, val_lines=None, callbacks=(), **dm_kw):
    train = _list(tmp_path / "train.txt", train_lines)
    val = _list(tmp_path / "val.txt", val_lines) if val_lines else None
    kw = dict(root=str(media), num_classes=2, num_frames=T, input_size=32, scale_size=36, batch_size=2, num_workers=0)
    dm = VideoDataModule(train, val, **{**kw, **dm_kw})
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks),
                         default_root_dir=str(tmp_path / "run"))  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return dm


def _report(tmp_path) -> list[list[str]]:
    text = (tmp_path / "run" / "skipped_samples.tsv").read_text().splitlines()
    assert text[0] == "list_file\tline\tindex\tpath\treason"
    return [row.split("\t") for row in text[1:]]


TRAIN = ["good.mp4 10 0", "missing.mp4 10 1", "good.mp4 10 1", "good.mp4 10 0"]  # 2 batches of 2: all read


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_report_written_when_the_run_raises_mid_epoch(media, tmp_path, tmpdir_root, error):
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit if error is KeyboardInterrupt else error):
            _fit(tmp_path, media, Tiny(fail_at=1, error=error), train_lines=TRAIN,
                 val_lines=["good.mp4 10 0", "gone.mp4 10 1"], max_bad_fraction=1.0)  # fmt: skip
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores Ctrl+C while it shuts down
    rows = _report(tmp_path)
    assert sorted((Path(r[0]).name, r[1], Path(r[3]).name) for r in rows) == [
        ("train.txt", "2", "missing.mp4"),
        ("val.txt", "2", "gone.mp4"),
    ]
    assert not list(tmpdir_root.glob("adafocus-skips-*"))


def test_report_written_when_max_bad_fraction_stops_the_run_in_a_worker(media, tmp_path, tmpdir_root):
    lines = ["missing1.mp4 10 0", "missing2.mp4 10 1", "good.mp4 10 1", "good.mp4 10 0"]
    with pytest.raises(TooManyBadSamples) as e:
        _fit(tmp_path, media, Tiny(), train_lines=lines, val_lines=["good.mp4 10 0"], num_workers=1)
    msg = str(e.value)
    assert "\n" not in msg and "train.txt" in msg and "2 of 4" in msg  # one line, through the worker too
    assert sorted(r[1] for r in _report(tmp_path)) == ["1", "2"]
    assert not list(tmpdir_root.glob("adafocus-skips-*"))


def test_report_written_when_should_stop_ends_the_run(media, tmp_path, tmpdir_root):
    _fit(tmp_path, media, Tiny(), train_lines=TRAIN, val_lines=["good.mp4 10 0"], callbacks=[StopAfterFirstBatch()],
         batch_size=4,
         max_bad_fraction=1.0)  # fmt: skip
    assert [r[1] for r in _report(tmp_path)] == ["2"]
    assert not list(tmpdir_root.glob("adafocus-skips-*"))


def test_report_counts_samples_not_records(media, tmp_path, tmpdir_root, caplog):
    dm = VideoDataModule(_list(tmp_path / "t.txt", TRAIN), root=str(media), num_classes=2, num_frames=T,
                         max_bad_fraction=1.0)  # fmt: skip
    dm.setup("fit")
    ds = dm.datasets["train"]
    # two workers meeting one frame folder's two missing frames: two records, one sample
    ds._record(1, DataError("frame 4 missing", path="f", list_file=ds.list_file, line=2))
    ds._record(1, DataError("frame 9 missing", path="f", list_file=ds.list_file, line=2))
    with caplog.at_level(logging.WARNING, logger="adafocus.data.datamodule"):
        path = dm.write_skip_report(str(tmp_path / "run"))
    rows = [line.split("\t") for line in Path(path).read_text().splitlines()[1:]]
    assert len(rows) == 1 and rows[0][4] == "frame 4 missing; frame 9 missing"
    assert "1 bad samples were skipped" in caplog.text
    dm.teardown("fit")  # without a trainer: only the clean-up
    assert not list(tmpdir_root.glob("adafocus-skips-*"))


# 4. the default logger follows --trainer.default_root_dir


def _toy_fit(*extra: str) -> None:
    from adafocus.training.cli import run_cli

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run_cli(["fit", "--config", str(TOY / "stage1.yaml"), "--trainer.max_steps=1", "--trainer.log_every_n_steps=1",
                 "--trainer.enable_progress_bar=false", *extra])  # fmt: skip


def test_default_logger_and_checkpoints_follow_default_root_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _toy_fit("--trainer.default_root_dir=tmp/x")
    assert glob.glob("tmp/x/lightning_logs/version_*/metrics.csv")
    assert glob.glob("tmp/x/**/*.ckpt", recursive=True)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "lightning_logs").exists()


def test_explicit_save_dir_still_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _toy_fit("--trainer.default_root_dir=tmp/x", "--trainer.logger.init_args.save_dir=logs")
    assert glob.glob("logs/lightning_logs/version_*/metrics.csv") and glob.glob("logs/**/*.ckpt", recursive=True)
    assert not glob.glob("tmp/x/**/*.csv", recursive=True)


def test_fit_without_a_val_list_trains_and_skips_validation(tmp_path):
    """No ``val_list``: ``fit`` trains (Lightning skips the validation loop) instead of failing in val_dataloader."""
    import pytorch_lightning as pl

    from adafocus import create_model
    from adafocus.data.synth import generate
    from adafocus.training import WarmupStage

    d = generate(tmp_path / "set", num_train=4, num_val=1, num_test=1, size=64, num_classes=3, num_frames=4)
    dm = VideoDataModule(d["train"], num_classes=3, root=d["root"], num_frames=4, input_size=64, scale_size=64,
                         batch_size=2, num_workers=0)  # fmt: skip
    stage = WarmupStage(3, net=lambda k: create_model("test_adafocus", num_classes=k))
    trainer = pl.Trainer(max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)  # fmt: skip
    trainer.fit(stage, datamodule=dm)
    assert trainer.global_step == 2 and "val/top1" not in trainer.logged_metrics
