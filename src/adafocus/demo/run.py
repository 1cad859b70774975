"""``adafocus demo``: the whole method on a CPU in minutes, judged on held-out videos.

synthetic videos -> backbone pre-training (stand-in for ImageNet) -> stage 0 (full frames, also the
full-frame baseline) -> stage I -> stage II (PPO) -> stage III -> AdaFocus+ (stage II + III at two
keep ratios) -> AdaFocusV2 (one end-to-end stage from the same pre-trained backbones, early exit
fitted to budgets) -> table, pictures, plots and metrics JSON. Every stage runs through ``adafocus fit``
(LightningCLI) with the configs in ``lightning_configs/demo/`` (installed as ``adafocus:demo/``), as a user would.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import resource
import shutil
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..resources import configs_dir
from .report import _mmss, acceptance, print_report

STAGES = ("stage0", "stage1", "stage2", "stage3")


@dataclass(frozen=True)
class DemoPlan:
    """How much data and training the demo uses (``DEFAULT`` or the test suite's ``FAST``)."""

    num_train: int = 1000
    num_val: int = 100
    num_test: int = 300
    stills: int = 20000  # pre-training images per backbone
    pretrain_epochs: int = 5
    epochs: dict[str, int] = field(
        default_factory=lambda: dict(stage0=4, stage1=3, stage2=6, stage3=2, stage2_plus=2, stage3_plus=1, v2=3)
    )
    keep_ratios: tuple[float, ...] = (0.75, 0.5)  # AdaFocus+ operating points (share of frames through f_L)
    exit_budgets: tuple[float, ...] = (0.65, 0.5)  # AdaFocusV2 early exit: shares of its full GFLOPs
    sweep_budgets: tuple[float, ...] = (0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0)  # the early-exit curve
    latency_clips: int = 20  # test clips streamed one by one to time each early-exit point
    calibration_batches: int = 10  # training batches of 50 the exit thresholds are fitted on


DEFAULT = DemoPlan()
FAST = DemoPlan(
    num_train=500,
    num_val=40,
    num_test=100,
    stills=8000,
    pretrain_epochs=3,
    epochs=dict(stage0=2, stage1=2, stage2=4, stage3=1, stage2_plus=1, stage3_plus=1, v2=2),
    sweep_budgets=(0.3, 0.65, 1.0),
    latency_clips=5,
    calibration_batches=4,
)
# rough seconds per unit of work on a 2-core laptop, only for the ETA line
_COST = dict(
    data=0.01,
    pretrain=0.00025,
    stage0=0.025,
    stage1=0.011,
    stage2=0.012,
    stage3=0.009,
    stage2_plus=0.012,
    stage3_plus=0.009,
    v2=0.018,
    evaluate=0.07,
    v2_evaluate=0.0002,
)
SIZE, FRAMES, PATCH, DIGIT = 64, 8, 24, 14  # the configs' input_size, num_frames, patch_size; digit side


def config_dir() -> Path:
    """The demo's stage configs, as installed with the package (``adafocus:demo/``)."""
    return configs_dir() / "demo"


class _Clock:
    """Stage headers with elapsed time and an ETA from rough per-unit costs."""

    def __init__(self, plan: DemoPlan, quiet: bool) -> None:
        self.start = time.perf_counter()
        self.quiet = quiet
        e, n = plan.epochs, plan.num_train
        k = len(plan.keep_ratios)
        self.work = {
            "data": _COST["data"] * (n + plan.num_val + plan.num_test),
            "pretrain": _COST["pretrain"] * 2 * plan.stills * plan.pretrain_epochs,
            **{s: _COST[s] * n * e[s] for s in STAGES},
            "stage2_plus": _COST["stage2_plus"] * n * e["stage2_plus"],
            "stage3_plus": _COST["stage3_plus"] * n * e["stage3_plus"] * k,
            "v2": _COST["v2"] * n * e["v2"],
            "evaluate": _COST["evaluate"] * plan.num_test * (5 + k) / 10,
            "v2_evaluate": _COST["v2_evaluate"] * (50 * plan.calibration_batches + 4 * plan.num_test)
            + 0.01 * plan.latency_clips * len(plan.sweep_budgets),
        }
        self.done: dict[str, float] = {}
        self.times: dict[str, float] = {}
        self._t0 = self.start

    def begin(self, key: str, text: str) -> None:
        self._t0 = time.perf_counter()
        elapsed = self._t0 - self.start
        planned_done = sum(self.work[k] for k in self.done)
        left = sum(v for k, v in self.work.items() if k not in self.done)
        scale = elapsed / planned_done if planned_done > 0 else 1.0
        step = len(self.done) + 1
        if not self.quiet:
            print(
                f"\n[{step}/{len(self.work)}] {text}  (elapsed {_mmss(elapsed)}, ETA ~{_mmss(scale * left)})",
                flush=True,
            )

    def end(self, key: str) -> None:
        self.times[key] = time.perf_counter() - self._t0
        self.done[key] = self.times[key]

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.start


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process and of its largest finished child (DataLoader workers)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"main_mb": round(own, 1), "largest_worker_mb": round(kids, 1), "upper_bound_mb": round(own + kids, 1)}


def _quiet_lightning() -> None:
    for name in ("pytorch_lightning", "lightning_fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    for msg in (
        ".*eval mode at the start of training.*",
        ".*does not have many workers.*",
        ".*weights_only.*",
        ".*both args and command line.*",
        ".*LitLogger.*",
        ".*LeafSpec.*",
        ".*log_every_n_steps.*",
    ):
        warnings.filterwarnings("ignore", message=msg)


def run_demo(
    out: str | os.PathLike = "adafocus_demo",
    *,
    seed: int = 0,
    fast: bool = False,
    configs: str | os.PathLike | None = None,
    progress: bool = True,
    threads: int | None = None,
) -> dict[str, Any]:
    """Run the whole demo into ``out``; returns the metrics dictionary also written to ``metrics.json``."""
    before = torch.get_num_threads()
    try:
        return _run(out, seed=seed, fast=fast, configs=configs, progress=progress, threads=threads)
    finally:
        torch.set_num_threads(before)


def _run(
    out: str | os.PathLike,
    *,
    seed: int,
    fast: bool,
    configs: str | os.PathLike | None,
    progress: bool,
    threads: int | None,
) -> dict[str, Any]:
    demo = _Demo(out, seed=seed, plan=FAST if fast else DEFAULT, configs=configs, progress=progress, threads=threads)
    demo.make_data()
    demo.train_stages(demo.pretrain())
    rows = demo.evaluate()
    rows += demo.evaluate_v2()
    demo.draw(rows)
    return demo.write_metrics(rows, fast=fast)


class _Demo:
    """One run: where it writes, its plan, its clock and the checkpoints of every stage."""

    workers = 1  # one core decodes (DataLoader worker), the rest compute

    def __init__(self, out, *, seed: int, plan: DemoPlan, configs, progress: bool, threads: int | None) -> None:
        self.seed, self.plan, self.progress = seed, plan, progress
        self.out = Path(out).resolve()
        self.cfg = Path(configs) if configs else config_dir()
        self.ckpt_dir, self.data_dir = self.out / "checkpoints", self.out / "data"
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        self.ckpts: dict[str, str] = {}
        _quiet_lightning()
        # oversubscribed OpenMP threads spin against the decoding worker: training was ~20x slower
        # on a 2-core machine with as many threads as cores
        torch.set_num_threads(threads or max(1, (os.cpu_count() or 2) - self.workers))
        self.clock = _Clock(plan, quiet=False)
        print(f"adafocus demo: seed {seed}, {'--fast' if plan is FAST else 'default'} plan, output {self.out}, "
              f"{torch.get_num_threads()} compute thread(s) + {self.workers} decoding worker", flush=True)  # fmt: skip

    def make_data(self) -> None:
        from ..data import synth

        p = self.plan
        self.clock.begin("data", f"synthetic videos: {p.num_train}/{p.num_val}/{p.num_test} train/val/test")
        self.ds = synth.generate(self.data_dir, num_train=p.num_train, num_val=p.num_val, num_test=p.num_test,
                                 num_frames=FRAMES, size=SIZE, patch_hint=PATCH, seed=self.seed)  # fmt: skip
        self.clock.end("data")

    def pretrain(self) -> dict[str, str]:
        """ImageNet's stand-in: each backbone learns the training handwriting on still crops."""
        from ..data import synth
        from .pretrain import pretrain_backbone

        p = self.plan
        self.clock.begin("pretrain", f"backbone pre-training on {p.stills} still crops (stand-in for ImageNet)")
        images, labels = synth.still_crops(p.stills, crop=PATCH, size=SIZE, digit_size=DIGIT, seed=self.seed)
        weights = {}
        for role, name in (("global", "demo_glance"), ("local", "demo_local")):
            weights[role] = str(self.ckpt_dir / f"pretrained_{name}.pt")
            pretrain_backbone(name, images, labels, weights[role], epochs=p.pretrain_epochs, seed=self.seed,
                              progress=self.progress)  # fmt: skip
        self.clock.end("pretrain")
        return weights

    def fit(self, key: str, config: str, text: str, *extra: str, epochs_key: str | None = None) -> str:
        """``adafocus fit`` of one stage, as a user would run it; its best checkpoint is kept as ``key``."""
        from ..training.cli import run_cli

        self.clock.begin(key if key in self.clock.work else epochs_key, text)
        ds, out = self.ds, self.out
        cli = run_cli([
            "fit", f"--config={self.cfg / config}", f"--seed_everything={self.seed}",
            f"--trainer.max_epochs={self.plan.epochs[epochs_key or key]}", f"--trainer.default_root_dir={out / 'runs'}",
            f"--trainer.logger.init_args.save_dir={out / 'logs'}", f"--trainer.logger.init_args.name={key}",
            f"--trainer.enable_progress_bar={str(self.progress).lower()}", f"--model.init_args.seed={self.seed}",
            f"--data.init_args.root={ds['root']}", f"--data.init_args.train_list={ds['train']}",
            f"--data.init_args.val_list={ds['val']}", f"--data.init_args.num_workers={self.workers}", *extra,
        ])  # fmt: skip
        dst = self.ckpt_dir / f"{key}.ckpt"
        shutil.copyfile(cli.trainer.checkpoint_callback.best_model_path, dst)
        if key in self.clock.work:
            self.clock.end(key)
        self.ckpts[key] = str(dst)
        return str(dst)

    def train_stages(self, weights: dict[str, str]) -> None:
        """Stages 0, I, II, III, then AdaFocus+ (stage II with pi', stage III at each keep ratio)."""
        net, init = "--model.init_args.net.init_args.", "--model.init_args.init_from="
        self.fit("stage0", "stage0.yaml", "stage 0: f_G and f_L on full frames (and the full-frame baseline)",
                 f"{net}global_weights={weights['global']}", f"{net}local_weights={weights['local']}")  # fmt: skip
        self.fit("stage1", "stage1.yaml", "stage I: warm-up on random patches", init + self.ckpts["stage0"])
        self.fit("stage2", "stage2.yaml", "stage II: PPO on the policy", init + self.ckpts["stage1"])
        self.fit("stage3", "stage3.yaml", "stage III: f_C under the learned policy", init + self.ckpts["stage2"])
        self.fit("stage2_plus", "stage2.yaml", "AdaFocus+ stage II: PPO on pi and the skip policy pi'",
                 init + self.ckpts["stage2"], f"{net}skip_policy=true")  # fmt: skip
        self.clock.begin("stage3_plus", f"AdaFocus+ stage III at keep ratios {self.plan.keep_ratios}")
        t_plus = time.perf_counter()
        for r in self.plan.keep_ratios:
            key, text = f"stage3_plus_keep{int(round(100 * r))}", f"  f_C with f_L on {r:.0%} of the frames"
            self.fit(key, "stage3.yaml", text, init + self.ckpts["stage2_plus"], f"{net}skip_policy=true",
                     f"--model.init_args.keep_ratio={r}", epochs_key="stage3_plus")  # fmt: skip
        self.clock.times["stage3_plus"] = self.clock.done["stage3_plus"] = time.perf_counter() - t_plus
        self.fit("v2", "v2.yaml", "AdaFocusV2: f_G, pi, f_L and f_C in one stage, through the differentiable crop",
                 f"{net}global_weights={weights['global']}", f"{net}local_weights={weights['local']}")  # fmt: skip

    def eval_loader(self, list_file: str):
        """Evaluation-style clips (centre crop, no flip) of ``list_file``, 50 per batch."""
        from ..data.datamodule import VideoDataModule

        dm = VideoDataModule(test_list=list_file, root=self.ds["root"], num_classes=self.ds["num_classes"],
                             num_frames=FRAMES, input_size=SIZE, scale_size=SIZE, scales=[1.0], flip=False,
                             batch_size=50, num_workers=0)  # fmt: skip
        dm.setup("test")
        return dm.test_dataloader()

    def evaluate(self) -> list:
        """Every policy and model on the held-out videos, then the pictures and plots."""
        from ..accelerate.quantize import quantize_glance
        from ..checkpoint import load_model
        from ..serialization import read_checkpoint
        from .evaluate import evaluate_adafocus, evaluate_full_frames

        self.clock.begin("evaluate", f"held-out evaluation on {self.plan.num_test} test videos")
        loader = list(self.eval_loader(self.ds["test"]))  # decoded once (~120 MB), scored by every policy and model
        model, seed, show = load_model(self.ckpts["stage3"]), self.seed, self.progress
        rows = [evaluate_adafocus(model, loader, p, method=f"AdaFocus P={PATCH}", seed=seed, progress=show)
                for p in ("learned", "random", "centre", "gaussian")]  # fmt: skip
        # int8 f_G (adafocus.accelerate.quantize), activation ranges calibrated on 50 training videos
        int8 = quantize_glance(
            load_model(self.ckpts["stage3"]), [next(iter(self.eval_loader(self.ds["train"])))["frames"]]
        )
        rows.append(evaluate_adafocus(int8, loader, "learned", method=f"int8-f_G AdaFocus P={PATCH}", seed=seed,
                                      progress=show, flops_model=model))  # fmt: skip
        for r in self.plan.keep_ratios:
            plus = load_model(self.ckpts[f"stage3_plus_keep{int(round(100 * r))}"])
            rows.append(evaluate_adafocus(plus, loader, "learned", method=f"AdaFocus+ P={PATCH} (keep {r:.0%})",
                                          progress=show))  # fmt: skip
        full = load_model(self.ckpts["stage0"])
        sd0 = read_checkpoint(self.ckpts["stage0"])["state_dict"]
        head = torch.nn.Linear(full.local_cnn.num_features, self.ds["num_classes"])
        head.load_state_dict({k.removeprefix("local_head."): v for k, v in sd0.items() if k.startswith("local_head.")})
        method = "Full-frame baseline (f_L on whole frames)"
        rows.append(evaluate_full_frames(full.local_cnn, head, loader, method=method, progress=show))
        self.test_batches = loader
        self.clock.end("evaluate")
        return rows

    def evaluate_v2(self) -> list:
        """AdaFocusV2 with its learned, random and centre patches; early exit fitted on the training
        videos (as the official code does) at each budget, and the sweep with streamed latency."""
        from ..checkpoint import load_model
        from .evaluate import evaluate_adafocus, evaluate_early_exit

        self.clock.begin("v2_evaluate", "AdaFocusV2 on the test videos: patches, early exit, the budget sweep")
        model, loader, seed, show = load_model(self.ckpts["v2"]), self.test_batches, self.seed, self.progress
        method = f"AdaFocusV2 P={PATCH}"
        rows = [evaluate_adafocus(model, loader, p, method=method, seed=seed, progress=show)
                for p in ("learned", "random", "centre")]  # fmt: skip
        exit_rows, self.sweep = evaluate_early_exit(
            model, list(itertools.islice(self.eval_loader(self.ds["train"]), self.plan.calibration_batches)), loader,
            self.plan.exit_budgets,
            self.plan.sweep_budgets, latency_clips=self.plan.latency_clips, method=method, progress=show,
        )  # fmt: skip
        self.v2_model = model
        self.clock.end("v2_evaluate")
        return rows + exit_rows

    def draw(self, rows: list) -> None:
        from ..checkpoint import load_model
        from . import figures

        out, plan, batch = self.out, self.plan, self.test_batches[0]
        figures.patch_pictures(load_model(self.ckpts["stage3"]), batch, out / "patches.png", out / "patches.gif")
        plus = load_model(self.ckpts[f"stage3_plus_keep{int(round(100 * plan.keep_ratios[-1]))}"])
        figures.patch_pictures(plus, batch, out / "patches_adafocus_plus.png", None)
        figures.patch_pictures(self.v2_model, batch, out / "patches_v2.png", None)
        title = f"synthetic digits, {plan.num_test} held-out videos, T={FRAMES}, {SIZE}x{SIZE} frames, seed {self.seed}"
        plotted = [r for r in rows if not r.method.startswith("int8")]  # same FLOPs as the float row: one point
        figures.accuracy_vs_gflops(plotted, out / "accuracy_vs_gflops.png", title, sweep=self.sweep)
        figures.online_accuracy([r for r in plotted if r.online], out / "online_accuracy.png", title)

    def write_metrics(self, rows: list, *, fast: bool) -> dict[str, Any]:
        metrics = {
            "seed": self.seed,
            "fast": fast,
            "plan": asdict(self.plan),
            "rows": [r.as_dict() for r in rows],
            "checks": acceptance(rows, self.clock.times),
            "early_exit_sweep": self.sweep,
            "timings_s": {k: round(v, 1) for k, v in self.clock.times.items()},
            "wall_time_s": round(self.clock.elapsed, 1),
            "peak_memory": peak_memory_mb(),
            "threads": torch.get_num_threads(),
            "checkpoints": self.ckpts,
        }
        (self.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print_report(metrics, self.out)
        return metrics
