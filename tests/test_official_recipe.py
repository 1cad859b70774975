"""The official V1 recipe (ActivityNet / FCVID / Mini-Kinetics code): schedule, optimiser, stage III
action, short-video padding and the paper configs that select them (docs/differences.md)."""

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from PIL import Image

from adafocus import AdaFocus
from adafocus.data import VideoDataModule, VideoDataset, tsn_indices
from adafocus.training import FinetuneStage, WarmupStage
from adafocus.training.cli import run_cli
from adafocus.training.toydata import ToyClipDataModule

ROOT = Path(__file__).resolve().parents[1]
PAPER = [ROOT / "lightning_configs" / d / "adafocus_mn2_rn50.yaml" for d in ("activitynet", "fcvid", "minikinetics")]
TINY = functools.partial(
    AdaFocus,
    global_backbone="tiny_cnn",
    local_backbone="tiny_cnn",
    input_size=64,
    patch_size=32,
    grid_size=5,
    policy_hidden_dim=32,
    classifier_hidden_dim=32,
    dropout=0.0,
)


class LrRecorder(pl.Callback):
    """Every param group's lr at the start of every training batch, per epoch."""

    def __init__(self) -> None:
        self.lrs: dict[int, list[list[float]]] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        groups = trainer.optimizers[0].param_groups
        self.lrs.setdefault(trainer.current_epoch, []).append([g["lr"] for g in groups])


def _fit(stage: pl.LightningModule, max_epochs: int) -> LrRecorder:
    rec = LrRecorder()
    trainer = pl.Trainer(
        max_epochs=max_epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[rec],
    )
    trainer.fit(stage, datamodule=ToyClipDataModule(num_classes=3, num_frames=4, size=64, num_train=12, batch_size=4))
    return rec


def test_epoch_cosine_equals_the_official_adjust_learning_rate():
    # official: for e in range(0, epochs + 1): lr = 0.5 * lr0 * (1 + cos(pi * e / epochs)); epochs = 3 -> 4 epochs
    # cos(pi/3) = 1/2, cos(2 pi/3) = -1/2, cos(pi) = -1: factors 1, 3/4, 1/4, 0
    stage = WarmupStage(3, net=TINY, lr_local=4e-3, lr_classifier=0.08)
    rec = _fit(stage, max_epochs=4)
    assert sorted(rec.lrs) == [0, 1, 2, 3]
    for epoch, factor in zip(range(4), [1.0, 0.75, 0.25, 0.0]):
        assert len(rec.lrs[epoch]) == 3  # 12 clips / 4: the lr is the same for every batch of an epoch
        for lrs in rec.lrs[epoch]:
            assert lrs == pytest.approx([4e-3 * factor, 0.08 * factor], abs=1e-12), epoch


def test_step_cosine_still_available():
    stage = FinetuneStage(3, net=TINY, lr_classifier=0.02, lr_interval="step")
    rec = _fit(stage, max_epochs=2)
    got = [lrs[0] for e in sorted(rec.lrs) for lrs in rec.lrs[e]]
    total = 6  # 2 epochs x 3 batches
    assert got == pytest.approx([0.01 * (1 + math.cos(math.pi * i / total)) for i in range(total)], abs=1e-12)


def _optimizer(stage: pl.LightningModule, max_epochs: int = 5):
    stage.trainer = pl.Trainer(max_epochs=max_epochs, logger=False, enable_progress_bar=False)
    return stage.configure_optimizers()


@pytest.mark.parametrize("cls", [WarmupStage, FinetuneStage])
@pytest.mark.parametrize("nesterov", [None, True, False])
def test_nesterov_flag_reaches_the_optimizer(cls, nesterov):
    kw = {} if nesterov is None else {"nesterov": nesterov}
    conf = _optimizer(cls(3, net=TINY, **kw))
    opt, sched = conf["optimizer"], conf["lr_scheduler"]
    assert isinstance(opt, torch.optim.SGD)
    assert all(g["nesterov"] is bool(nesterov) for g in opt.param_groups)  # default: no Nesterov (official)
    assert sched["interval"] == "epoch" and all(g["momentum"] == 0.9 for g in opt.param_groups)


def test_bad_lr_interval_is_refused_by_name():
    with pytest.raises(ValueError, match="lr_interval must be 'epoch' or 'step'"):
        WarmupStage(3, net=TINY, lr_interval="batch")


def _spy_forward(stage: FinetuneStage, monkeypatch) -> list:
    calls = []
    real = stage.model.forward

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append((kwargs, out))
        return out

    monkeypatch.setattr(stage.model, "forward", spy)
    return calls


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"frames": torch.randn(4, 4, 3, 64, 64, generator=g), "label": torch.tensor([0, 1, 2, 0])}


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_finetune_stage_is_greedy_by_default(monkeypatch):
    stage = FinetuneStage(3, net=TINY)
    assert stage.hparams.sample_policy is False
    calls = _spy_forward(stage, monkeypatch)
    batch = _batch()
    for seed in (0, 1):  # a greedy policy ignores the RNG stream
        stage.hparams.seed = seed
        stage.training_step(batch, 0)
    (kw0, out0), (kw1, out1) = calls
    assert kw0["sample"] is False and kw1["sample"] is False
    assert torch.equal(out0.offsets, out1.offsets)
    with torch.no_grad():  # and takes pi's argmax: the evaluation path's patches
        ref = stage.model(batch["frames"], policy="learned", sample=False)
    assert torch.equal(out0.offsets, ref.offsets)


@pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")
def test_finetune_stage_can_still_sample(monkeypatch):
    stage = FinetuneStage(3, net=TINY, sample_policy=True)
    calls = _spy_forward(stage, monkeypatch)
    batch = _batch()
    for seed in (0, 1):
        stage.hparams.seed = seed
        stage.training_step(batch, 0)
    (kw0, out0), (_, out1) = calls
    assert kw0["sample"] is True
    assert not torch.equal(out0.offsets, out1.offsets)  # 16 draws from a near-uniform policy over 25 cells


def _official_pad(n: int, t: int) -> list[int]:
    """ops/dataset.py (ActivityNet folder), N < T, train and val: range(N) + [N - 1] * (T - N), 1-based there."""
    return [i - 1 for i in list(range(1, n + 1)) + [n] * (t - n)]


@pytest.mark.parametrize("train", [True, False])
def test_short_videos_last_is_the_official_padding(train):
    assert tsn_indices(5, 8, train=train, short_videos="last") == [0, 1, 2, 3, 4, 4, 4, 4]
    assert tsn_indices(1, 4, train=train, short_videos="last") == [0, 0, 0, 0]
    assert tsn_indices(3, 16, train=train, short_videos="last") == [0, 1, 2] + [2] * 13
    for n, t in [(2, 3), (7, 16), (15, 16)]:
        assert tsn_indices(n, t, train=train, short_videos="last") == _official_pad(n, t)
    assert tsn_indices(5, 8, train=train, short_videos="first") == [0] * 8  # the Sth-Sth code
    assert tsn_indices(5, 8, train=train) == [0, 0, 1, 1, 2, 3, 3, 4]  # default: spread evenly


@pytest.mark.parametrize("mode", ["spread", "last", "first"])
def test_short_videos_leaves_long_videos_alone(mode):
    assert tsn_indices(30, 4, train=False, short_videos=mode) == [3, 11, 18, 26]
    assert tsn_indices(16, 16, train=False, short_videos=mode) == list(range(16))
    got = tsn_indices(37, 5, train=True, generator=torch.Generator().manual_seed(5), short_videos=mode)
    assert got == tsn_indices(37, 5, train=True, generator=torch.Generator().manual_seed(5))


def test_short_videos_bad_value_is_refused_by_name(tmp_path):
    with pytest.raises(ValueError, match="short_videos must be one of"):
        tsn_indices(3, 8, train=False, short_videos="loop")
    with pytest.raises(ValueError, match="short_videos must be one of"):
        VideoDataModule(num_classes=2, short_videos="loop")


@pytest.fixture
def short_folder(tmp_path):
    """A 3-frame JPEG folder whose frame i is flat grey 60*i+20, and a list naming it."""
    folder = tmp_path / "vid"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((40, 48, 3), 60 * i + 20, np.uint8)).save(folder / f"img_{i + 1:05d}.jpg", quality=95)
    lst = tmp_path / "list.txt"
    lst.write_text("vid 3 1\n")
    return tmp_path, lst


def _indices(frames: torch.Tensor) -> list[int]:
    return [round((float(f.float().mean()) - 20) / 60) for f in frames]


@pytest.mark.parametrize("mode,want", [("spread", [0, 0, 1, 1, 2, 2]), ("last", [0, 1, 2, 2, 2, 2])])
def test_dataset_and_datamodule_thread_short_videos(short_folder, mode, want):
    root, lst = short_folder
    ds = VideoDataset(str(lst), root=str(root), source="frames", num_frames=6, short_videos=mode)
    assert _indices(ds[0]["frames"]) == want
    dm = VideoDataModule(
        str(lst), str(lst), num_classes=2, root=str(root), source="frames", num_frames=6,
        input_size=32, scale_size=32, batch_size=1, num_workers=0, short_videos=mode,
    )  # fmt: skip
    dm.setup("fit")
    for split in ("train", "val"):
        frames = dm.datasets[split][0]["frames"]  # normalised; frames equal exactly where indices are equal
        same = [[torch.equal(frames[a], frames[b]) for b in range(6)] for a in range(6)]
        assert same == [[want[a] == want[b] for b in range(6)] for a in range(6)], split


@pytest.mark.parametrize("cfg", PAPER, ids=lambda p: p.parent.name)
def test_paper_configs_select_the_official_recipe(cfg, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_cli(["fit", "--config", str(cfg), "--print_config"])
    assert exit_info.value.code == 0
    c = yaml.safe_load(capsys.readouterr().out)
    assert c["trainer"]["precision"] == "16-mixed" and c["trainer"]["max_epochs"] == 51
    model = c["model"]["init_args"]
    assert model["nesterov"] is False and model["lr_interval"] == "epoch"
    assert model["net"]["init_args"]["dropout"] == 0.8
    assert c["data"]["init_args"]["short_videos"] == "last"


def test_paper_config_stage3_command_trains_the_classifier_alone(capsys):
    with pytest.raises(SystemExit):
        run_cli(["fit", "--config", str(PAPER[0]), "--model", "adafocus.training.FinetuneStage",
                 "--model.init_args.lr_classifier", "0.005", "--model.init_args.lr_local", "0",
                 "--trainer.max_epochs", "11", "--print_config"])  # fmt: skip
    c = yaml.safe_load(capsys.readouterr().out)
    model = c["model"]["init_args"]
    assert model["sample_policy"] is False and model["lr_local"] == 0 and model["lr_classifier"] == 0.005
    assert c["trainer"]["max_epochs"] == 11
