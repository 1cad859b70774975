"""``VideoDataModule``: the Lightning data module, configurable from YAML through LightningCLI."""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from collections.abc import Sequence
from typing import Literal

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from .dataset import OnError, VideoDataset, collect_skips
from .sampling import SHORT_VIDEOS, ShortVideos
from .transforms import DEFAULT_SCALES, build_transform

log = logging.getLogger(__name__)
SKIP_REPORT = "skipped_samples.tsv"


def worker_init(worker_id: int) -> None:
    """Pin each DataLoader worker to one intra-op thread: workers already run in parallel, and
    torch/OpenMP pools sized for the whole machine in every worker oversubscribe the cores (FFmpeg
    threads are set per clip by ``decoder_threads``)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    if os.environ.get("PL_SEED_WORKERS") == "1":  # seed_everything(workers=True) was asked for
        from lightning_fabric.utilities.seed import pl_worker_init_function

        pl_worker_init_function(worker_id)


class VideoDataModule(pl.LightningDataModule):
    """Videos (or JPEG frame folders) listed in TSN/AR-Net or plain annotation lists.

    Batches are dicts: ``frames`` float32 ``(B, T, 3, H, W)`` ImageNet-normalised, ``label`` long
    ``(B,)`` (the first label), ``index`` long ``(B,)``, plus ``target`` float ``(B, K)`` multi-hot
    when ``multi_label``. With several evaluation views (``test_crops * test_clips = V > 1``)
    validation/test/predict ``frames`` are ``(B, V, T, 3, H, W)``, clip-major (view ``j * test_crops
    + c``: clip ``j``, crop ``c``; view 0 is the single-view clip); training batches never change.

    Args:
        train_list: annotation list for training.
        val_list: annotation list for validation.
        test_list: annotation list for testing (optional).
        num_classes: number of classes K (linked to the model by LightningCLI).
        root: prefix for the relative paths in the lists.
        source: "video" (files decoded with PyAV) or "frames" (folders of JPEG frames).
        frame_template: frame file names inside a folder, formatted with the 1-based frame number.
        delimiter: field separator of the lists ("," ActivityNet/FCVID, ";" Kinetics in AR-Net).
        num_frames: T, frames per clip (TSN segments).
        input_size: side of the square crop fed to the model.
        scale_size: evaluation resizes the shorter side to this before the crop(s); ``scale_size =
            input_size`` is full-resolution testing (TSM's ``--full_res``: the crops span the shorter side).
        scales: training random-scaling factors of the shorter side (TSN multi-scale crop).
        multi_label: also return multi-hot targets (ActivityNet, FCVID).
        flip: random horizontal flip in training (set False for Something-Something).
        batch_size: clips per batch and per process.
        eval_batch_size: clips per validation/test batch (default: batch_size).
        num_workers: DataLoader worker processes per process.
        pin_memory: pin batches in page-locked memory (GPU training).
        decoder_threads: FFmpeg decoding threads per clip.
        on_error: "skip" replaces bad samples by the next good one (logged, counted, listed in
            skipped_samples.tsv in the run directory at the end); "raise" stops at the first one.
        max_retries: consecutive bad samples tolerated in skip mode before failing.
        test_crops: evaluation crops per clip: 1 (centre) or 3 (centre, left, right along the longer
            side: TSM's ``--test_crops 3``); validation, test and predict only.
        test_clips: evaluation clips per video (TSM's ``--twice_sample`` for 2, MMAction2's
            ``num_clips``), shifted within the TSN segments (:func:`~adafocus.data.sampling.tsn_test_indices`);
            validation, test and predict only. Each view is one forward pass: evaluation costs
            ``test_crops * test_clips`` times as much (lower ``eval_batch_size`` to bound memory).
        short_videos: frames of videos shorter than num_frames: "spread" (default) repeats them evenly,
            "last" repeats the last one (official ActivityNet / FCVID / Mini-Kinetics code, set in those
            paper configs), "first" takes frame 0 T times (official Something-Something code); see
            :func:`~adafocus.data.sampling.tsn_indices` and docs/differences.md.
        glance_frames: also give f_G its own frames, sampled apart from the clip's (batches get
            ``glance_frames`` ``(B, T_G, 3, H, W)``; the stages pass them to the model's ``glance_input``),
            as the official Something-Something loader does for AdaFocus-TSM (8 glance + 12 clip frames).
            ``None``: f_G takes its frames from the clip. With several test views each view has its own
            (``(B, V, T_G, 3, H, W)``), sampled and cropped as its clip.
    """

    def __init__(
        self,
        train_list: str | None = None,
        val_list: str | None = None,
        test_list: str | None = None,
        *,
        num_classes: int,
        root: str = "",
        source: Literal["video", "frames"] = "video",
        frame_template: str = "img_{:05d}.jpg",
        delimiter: str = " ",
        num_frames: int = 16,
        input_size: int = 224,
        scale_size: int = 256,
        scales: Sequence[float] = DEFAULT_SCALES,
        multi_label: bool = False,
        flip: bool = True,
        batch_size: int = 8,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = False,
        decoder_threads: int = 1,
        on_error: OnError = "skip",
        max_retries: int = 10,
        test_crops: int = 1,
        test_clips: int = 1,
        short_videos: ShortVideos = "spread",
        glance_frames: int | None = None,
    ) -> None:
        super().__init__()
        if num_classes <= 0:
            raise ValueError(f"num_classes must be positive, got {num_classes}")
        if source not in ("video", "frames"):
            raise ValueError(f"source must be 'video' or 'frames', got {source!r}")
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if scale_size < input_size:
            raise ValueError(f"scale_size={scale_size} must be >= input_size={input_size} (centre crop)")
        if isinstance(test_crops, bool) or test_crops not in (1, 3):
            raise ValueError(f"test_crops must be 1 or 3, got {test_crops!r}")
        if isinstance(test_clips, bool) or not isinstance(test_clips, int) or test_clips < 1:
            raise ValueError(f"test_clips must be an integer >= 1, got {test_clips!r}")
        if short_videos not in SHORT_VIDEOS:
            raise ValueError(f"short_videos must be one of {SHORT_VIDEOS}, got {short_videos!r}")
        self.save_hyperparameters()
        self.num_classes = num_classes
        self.datasets: dict[str, VideoDataset] = {}
        self._skip_dir: str | None = None

    def _dataset(self, list_file: str, *, train: bool) -> VideoDataset:
        h = self.hparams
        if self._skip_dir is None:
            # created only when something is skipped; decided here so that forked workers share it
            self._skip_dir = os.path.join(tempfile.gettempdir(), f"adafocus-skips-{uuid.uuid4().hex}")
        transform = build_transform(
            train=train,
            input_size=h.input_size,
            scale_size=h.scale_size,
            flip=h.flip,
            scales=h.scales,
            crops=1 if train else h.test_crops,
        )
        return VideoDataset(
            list_file,
            root=h.root,
            source=h.source,
            frame_template=h.frame_template,
            delimiter=h.delimiter,
            num_frames=h.num_frames,
            train=train,
            transform=transform,
            num_classes=h.num_classes,
            multi_label=h.multi_label,
            on_error=h.on_error,
            skip_log_dir=self._skip_dir,
            decoder_threads=h.decoder_threads,
            max_retries=h.max_retries,
            num_clips=1 if train else h.test_clips,
            short_videos=h.short_videos,
            glance_frames=h.glance_frames,
        )

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        lists = {"train": h.train_list, "val": h.val_list, "test": h.test_list}
        needed = {"fit": ["train"], "validate": ["val"], "test": ["test"], "predict": ["test"]}.get(stage or "", [])
        optional = ["val"] if stage == "fit" else ([] if stage else list(lists))
        for split in needed:
            if lists[split] is None:
                raise ValueError(f"VideoDataModule: stage {stage!r} needs {split}_list, which is not set")
        for split in needed + optional:
            if lists[split] is not None and split not in self.datasets:
                self.datasets[split] = self._dataset(lists[split], train=split == "train")

    def _loader(self, split: str, *, train: bool) -> DataLoader:
        if split not in self.datasets:
            raise RuntimeError(f"VideoDataModule: no {split} dataset (set {split}_list and call setup first)")
        ds, h = self.datasets[split], self.hparams
        bs = h.batch_size if train else (h.eval_batch_size or h.batch_size)
        return DataLoader(
            ds,
            batch_size=bs,
            shuffle=train,
            num_workers=h.num_workers,
            pin_memory=h.pin_memory,
            worker_init_fn=worker_init,
            persistent_workers=h.num_workers > 0,
            # a last batch of one clip breaks BatchNorm in training; keep it when it is all there is
            drop_last=train and len(ds) > bs,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    @property
    def skipped(self) -> list[tuple[str, ...]]:
        """Every sample skipped so far (all workers): ``(list_file, line, index, path, reason)``."""
        return collect_skips(self._skip_dir) if self._skip_dir else []

    def write_skip_report(self, directory: str) -> str | None:
        """Write the skipped samples to ``directory/skipped_samples.tsv`` (rank-suffixed under DDP)."""
        rows = self.skipped
        if not rows:
            return None
        rank = self.trainer.global_rank if self.trainer is not None else 0
        world = self.trainer.world_size if self.trainer is not None else 1
        name = SKIP_REPORT if world == 1 else SKIP_REPORT.replace(".tsv", f".rank{rank}.tsv")
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write("list_file\tline\tindex\tpath\treason\n")
            f.writelines("\t".join(r) + "\n" for r in rows)
        log.warning("%d bad samples were skipped; listed in %s", len(rows), path)
        return path

    def teardown(self, stage: str) -> None:
        if self.trainer is not None:
            run_dir = self.trainer.log_dir or self.trainer.default_root_dir
            self.write_skip_report(run_dir)
