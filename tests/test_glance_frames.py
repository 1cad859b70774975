"""f_G's own frames (``glance_frames``): sampled apart from the clip's, as the official Something-Something
loader does for AdaFocus-TSM's 8 glance + 12 focus frames, and used by every stage."""

import numpy as np
import pytest
import torch
from PIL import Image

from adafocus import AdaFocusTSM
from adafocus.data import VideoDataModule
from adafocus.data.dataset import VideoDataset
from adafocus.training import FinetuneStage, FullFrameStage, PolicyStage, WarmupStage

N = 24  # frames of the video


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A JPEG folder whose frame i is flat grey 10*i+5, and a one-line list naming it."""
    root = tmp_path_factory.mktemp("glance")
    (root / "vid").mkdir()
    for i in range(N):
        Image.fromarray(np.full((40, 40, 3), 10 * i + 5, np.uint8)).save(root / "vid" / f"img_{i + 1:05d}.jpg",
                                                                          quality=95)  # fmt: skip
    (root / "list.txt").write_text(f"vid {N} 1\n")
    return root


def _indices(frames: torch.Tensor) -> list[int]:
    return [round((float(f.float().mean()) - 5) / 10) for f in frames]


def test_eval_takes_each_samplings_segment_centres(folder):
    ds = VideoDataset(str(folder / "list.txt"), root=str(folder), source="frames", num_frames=12, glance_frames=8)
    item = ds[0]
    assert _indices(item["frames"]) == [int(N / 12 * (k + 0.5)) for k in range(12)]
    assert _indices(item["glance_frames"]) == [int(N / 8 * (k + 0.5)) for k in range(8)]  # not a subset of the 12


def test_training_draws_each_sampling_in_its_own_segments(folder):
    ds = VideoDataset(str(folder / "list.txt"), root=str(folder), source="frames", num_frames=12, glance_frames=8,
                      train=True)  # fmt: skip
    seen = set()
    for _ in range(20):
        item = ds[0]
        g = _indices(item["glance_frames"])
        assert all(3 * k <= i < 3 * k + 3 for k, i in enumerate(g)) and all(
            2 * k <= i < 2 * k + 2 for k, i in enumerate(_indices(item["frames"]))
        )
        seen.add(tuple(g))
    assert len(seen) > 1  # drawn afresh


def test_datamodule_batches_carry_them_with_one_transform(folder):
    dm = VideoDataModule(str(folder / "list.txt"), str(folder / "list.txt"), num_classes=2, root=str(folder),
                         source="frames", num_frames=12, glance_frames=8, input_size=32, scale_size=32,
                         batch_size=1, num_workers=0)  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["frames"].shape == (1, 12, 3, 32, 32) and batch["glance_frames"].shape == (1, 8, 3, 32, 32)
    val = next(iter(dm.val_dataloader()))
    assert val["frames"].shape == (1, 12, 3, 32, 32) and val["glance_frames"].shape == (1, 8, 3, 32, 32)


def test_several_views_each_have_their_own_glance_frames(folder):
    from adafocus.data.sampling import tsn_test_indices

    ds = VideoDataset(str(folder / "list.txt"), root=str(folder), source="frames", num_frames=12, glance_frames=8,
                      num_clips=2)  # fmt: skip
    item = ds[0]
    assert item["frames"].shape[:2] == (2, 12) and item["glance_frames"].shape[:2] == (2, 8)
    for j, (clip, glance) in enumerate(zip(tsn_test_indices(N, 12, 2), tsn_test_indices(N, 8, 2))):
        assert _indices(item["frames"][j]) == clip and _indices(item["glance_frames"][j]) == glance
    dm = VideoDataModule(str(folder / "list.txt"), str(folder / "list.txt"), num_classes=2, root=str(folder),
                         source="frames", num_frames=12, glance_frames=8, input_size=32, scale_size=40,
                         test_crops=3, test_clips=2, batch_size=1, num_workers=0)  # fmt: skip
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    assert batch["frames"].shape == (1, 6, 12, 3, 32, 32) and batch["glance_frames"].shape == (1, 6, 8, 3, 32, 32)


TINY = dict(global_backbone="tsm_tiny_mobilenet", local_backbone="tsm_tiny_resnet", input_size=64, patch_size=32,
            policy_hidden_dim=16, policy_channels=4, dropout=0.0, global_frames=2, local_frames=4)  # fmt: skip


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # no Trainer: the logs go nowhere
@pytest.mark.parametrize("stage_cls", [FullFrameStage, WarmupStage, PolicyStage, FinetuneStage])
def test_every_stage_glances_at_the_batchs_glance_frames(stage_cls, monkeypatch):
    stage = stage_cls(num_classes=3, net=lambda k: AdaFocusTSM(k, **TINY))
    seen = []
    glance = stage.model.glance
    monkeypatch.setattr(stage.model, "glance", lambda x: seen.append(x) or glance(x))
    batch = {"frames": torch.randn(2, 4, 3, 64, 64), "glance_frames": torch.randn(2, 2, 3, 64, 64),
             "label": torch.tensor([0, 1]), "index": torch.arange(2)}  # fmt: skip
    if stage_cls is PolicyStage:
        monkeypatch.setattr(stage, "optimizers", lambda: torch.optim.Adam(stage.model.policy.parameters()))
        monkeypatch.setattr(stage, "manual_backward", lambda loss: loss.backward())
        stage.training_step(batch, 0)
    else:
        stage.training_step(batch, 0)
    stage.eval()
    with torch.no_grad():
        stage.validation_step(batch, 0)
        views = {k: torch.stack([v, v.flip(0)], 1) if k.endswith("frames") else v for k, v in batch.items()}
        stage.validation_step(views, 0)  # two views per video, each with its glance frames
    assert len(seen) == 3 and all(torch.equal(x, batch["glance_frames"]) for x in seen[:2])
    assert torch.equal(seen[2], views["glance_frames"].flatten(0, 1))
