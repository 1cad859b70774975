"""``VideoDataModule``: the Lightning data module, configurable from YAML through LightningCLI."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Sequence
from typing import Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities.rank_zero import rank_zero_deprecation
from torch.utils.data import DataLoader

from .annotations import check_encoding
from .dataset import OnError, VideoDataset, collect_skips
from .sampling import SAMPLINGS, SHORT_VIDEOS, Sampling, ShortVideos
from .sources import ROTATIONS, Rotation
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
        on_error: "skip" replaces bad samples by the next good one, however many follow each other
            (logged, counted, listed in skipped_samples.tsv in the run directory at the end, also when
            the run stops on an error or an interrupt); "raise" stops at the first one.
        max_bad_fraction: skip mode stops (one line naming the list and the count) once more than this
            share of a list's lines - and more than one - are distinct bad samples, or all of them.
            0.05 because real sets lose well under that (a few unreadable downloads, 0.1-2 %), while a
            wrong root, source or frame template makes ~100 % bad and a half-finished extraction tens
            of percent; and replacing more than 5 % of a list by neighbours changes what is trained and
            evaluated by more than the ~1 point top-1 gaps the papers compare. 1.0: only stop when
            nothing is readable.
        max_retries: deprecated and ignored (the old limit on consecutive bad samples); kept so old
            configs still load; see max_bad_fraction.
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
        sampling: "index" (default) TSN segments of frame indices; "time" segments of the duration, each
            taking the frame whose timestamp is nearest its time, for variable-frame-rate videos (frame
            folders are sampled by index either way; :func:`~adafocus.data.sampling.tsn_time_indices`).
        rotation: "auto" (default) turns rotated (phone) videos upright by their display matrix; "ignore"
            keeps the stored pixels.
        encoding: text encoding of the lists (default UTF-8; a byte-order mark is dropped), e.g. "latin-1".
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
        max_bad_fraction: float = 0.05,
        max_retries: int | None = None,
        test_crops: int = 1,
        test_clips: int = 1,
        short_videos: ShortVideos = "spread",
        glance_frames: int | None = None,
        sampling: Sampling = "index",
        rotation: Rotation = "auto",
        encoding: str = "utf-8",
    ) -> None:
        super().__init__()
        if sampling not in SAMPLINGS:
            raise ValueError(f"sampling must be one of {SAMPLINGS}, got {sampling!r}")
        if rotation not in ROTATIONS:
            raise ValueError(f"rotation must be one of {ROTATIONS}, got {rotation!r}")
        check_encoding(encoding)
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
        if (
            isinstance(max_bad_fraction, bool)
            or not isinstance(max_bad_fraction, (int, float))
            or not (0 <= max_bad_fraction <= 1)
        ):
            raise ValueError(f"max_bad_fraction must be a number in [0, 1], got {max_bad_fraction!r}")
        if max_retries is not None:
            rank_zero_deprecation(
                "VideoDataModule(max_retries=...) is deprecated and ignored: skip mode now replaces bad samples "
                f"however many are consecutive and stops only above max_bad_fraction (now {max_bad_fraction:g})"
            )
        self.save_hyperparameters()
        self.num_classes = num_classes
        self.datasets: dict[str, VideoDataset] = {}
        self._skip_dir: str | None = None  # this process's skip records (temporary; see _finish_skips)
        self._skip_records: set[tuple[str, ...]] = set()  # records kept from earlier stages' folders

    def _dataset(self, list_file: str, *, train: bool) -> VideoDataset:
        h = self.hparams
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
            max_bad_fraction=h.max_bad_fraction,
            skip_log_dir=self._skip_dir,
            decoder_threads=h.decoder_threads,
            num_clips=1 if train else h.test_clips,
            short_videos=h.short_videos,
            glance_frames=h.glance_frames,
            sampling=h.sampling,
            rotation=h.rotation,
            encoding=h.encoding,
        )

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        lists = {"train": h.train_list, "val": h.val_list, "test": h.test_list}
        needed = {"fit": ["train"], "validate": ["val"], "test": ["test"], "predict": ["test"]}.get(stage or "", [])
        optional = ["val"] if stage == "fit" else ([] if stage else list(lists))
        for split in needed:
            if lists[split] is None:
                raise ValueError(f"VideoDataModule: stage {stage!r} needs {split}_list, which is not set")
        self._open_skip_dir()
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

    def val_dataloader(self) -> DataLoader | list:
        """The validation loader; none (``[]``: Lightning then skips validation) without a ``val_list``."""
        if self.hparams.val_list is None:
            return []
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def _open_skip_dir(self) -> None:
        """The folder the datasets (and their DataLoader workers) append skip records to: made in
        setup, before the workers fork, and again after an earlier stage's teardown removed it."""
        if self._skip_dir is None:
            self._skip_dir = tempfile.mkdtemp(prefix="adafocus-skips-")
            # without a Trainer no teardown hook runs: remove it when the module goes (this process only)
            weakref.finalize(self, _remove_if_owner, self._skip_dir, os.getpid())
        else:
            os.makedirs(self._skip_dir, exist_ok=True)

    @property
    def skipped(self) -> list[tuple[str, ...]]:
        """Every sample skipped so far (all workers, earlier stages too), one row per sample (list
        line): ``(list_file, line, index, path, reasons)``, distinct reasons joined by ``"; "``."""
        records = set(self._skip_records)
        if self._skip_dir:
            records.update(collect_skips(self._skip_dir))
        return per_sample(records)

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
        """The run ended (finished, or stopped by ``trainer.should_stop``): report the skips."""
        self._finish_skips()

    def on_exception(self, exception: BaseException) -> None:
        """The run stopped on an error or interrupt (Lightning calls no ``teardown`` then): report the
        skips met so far, the max_bad_fraction failure's included."""
        self._finish_skips()

    def _finish_skips(self) -> None:
        """Write skipped_samples.tsv into the run directory, then remove the temporary record folder
        (its records are kept in memory, so a later stage's report still lists them)."""
        if self._skip_dir is None:
            return
        try:
            self._skip_records.update(collect_skips(self._skip_dir))
            if self.trainer is not None:
                self.write_skip_report(self.trainer.log_dir or self.trainer.default_root_dir)
        finally:
            shutil.rmtree(self._skip_dir, ignore_errors=True)


def per_sample(records: Iterable[tuple[str, ...]]) -> list[tuple[str, ...]]:
    """Skip records ``(list_file, line, index, path, reason)`` merged into one row per list line (a
    sample met in several epochs or workers, with different reasons, is one bad sample)."""
    rows: dict[tuple[str, str], list] = {}
    for r in sorted(records, key=lambda r: (r[0], int(r[1]) if r[1].isdigit() else -1, r[2:])):
        list_file, line, index, path, reason = (tuple(r) + ("",) * 5)[:5]
        row = rows.setdefault((list_file, line), [list_file, line, index, path, []])
        if reason not in row[4]:
            row[4].append(reason)
    return [(f, ln, i, p, "; ".join(reasons)) for f, ln, i, p, reasons in rows.values()]


def _remove_if_owner(path: str, pid: int) -> None:
    """Remove ``path`` unless called in another process (a forked DataLoader worker shares the object)."""
    if os.getpid() == pid:
        shutil.rmtree(path, ignore_errors=True)
