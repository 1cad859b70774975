"""Train AdaFocus on your own videos: stage 0 -> I -> II -> III through `adafocus fit`, chained.

Your data is a TSN-style list per split (`path num_frames label`, see the README's Data section);
check it first with `adafocus data check train.txt --root VIDEOS --num-classes K`.

    python examples/train_on_your_videos.py --train-list train.txt --val-list val.txt \
        --root /data/videos --num-classes 10 --out runs/mine

The stage configs default to the CPU demo's (`adafocus:demo/`, tiny CNNs on 64x64 frames,
8 frames per clip). For the paper's MobileNet-V2 + ResNet-50 at 224 px pass, e.g.,
`--set model.init_args.net.init_args.global_backbone=mobilenet_v2 ...` or point --configs at your
own copies of those four files; ImageNet weights come from local files (--global-weights, --local-weights).
Every stage writes its checkpoint to OUT/stageN.ckpt and hands it to the next via init_from.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from adafocus.resources import configs_dir
from adafocus.training.cli import run_cli


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-list", required=True)
    p.add_argument("--val-list", required=True)
    p.add_argument("--root", default="", help="prefix of the relative paths in the lists")
    p.add_argument("--num-classes", type=int, required=True)
    p.add_argument("--out", default="runs/my_videos")
    p.add_argument("--configs", default=str(configs_dir() / "demo"), help="folder with stage0..3.yaml")
    p.add_argument("--epochs", type=int, default=None, help="override every stage's max_epochs")
    p.add_argument("--global-weights", default=None, help="local file with f_G's ImageNet weights (stage 0)")
    p.add_argument("--local-weights", default=None, help="local file with f_L's ImageNet weights (stage 0)")
    p.add_argument("--skip-stage0", action="store_true", help="start at stage I (e.g. from ImageNet weights)")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more LightningCLI overrides")
    a = p.parse_args()

    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    common = [
        f"--data.init_args.train_list={a.train_list}",
        f"--data.init_args.val_list={a.val_list}",
        f"--data.init_args.root={a.root}",
        f"--data.init_args.num_classes={a.num_classes}",
        f"--trainer.logger.init_args.save_dir={out / 'logs'}",
        *(["--trainer.max_epochs", str(a.epochs)] if a.epochs else []),
        *(f"--{kv}" for kv in a.set),
    ]
    weights = [
        f"--model.init_args.net.init_args.{role}_weights={w}"
        for role, w in (("global", a.global_weights), ("local", a.local_weights))
        if w
    ]
    previous = None
    for stage in ("stage0", "stage1", "stage2", "stage3"):
        if stage == "stage0" and a.skip_stage0:
            continue
        start = [f"--model.init_args.init_from={previous}"] if previous else weights
        print(f"== {stage} ==", flush=True)
        cli = run_cli(["fit", f"--config={Path(a.configs) / f'{stage}.yaml'}", *common, *start])
        previous = str(out / f"{stage}.ckpt")
        shutil.copyfile(cli.trainer.checkpoint_callback.best_model_path, previous)
    print(f"done: {previous} (predict with: adafocus predict VIDEO --checkpoint {previous})")


if __name__ == "__main__":
    main()
