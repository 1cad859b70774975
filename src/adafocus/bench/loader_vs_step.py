"""Is the loader the bottleneck of stage I? ``python -m adafocus.bench.loader_vs_step``.

Prints decoded+augmented clips/s of one loader process (1 thread) on the synthetic set and
clips/s of a stage-I training step (random patches, CE over all steps) with small CPU models.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch
import torch.nn.functional as F

from adafocus.data import VideoDataModule, synth

from ..models import AdaFocus


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--local-backbone", default="timm/test_resnet")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ds = synth.generate(tmp, num_train=args.clips, num_val=2, num_test=2)
        dm = VideoDataModule(
            ds["train"],
            ds["val"],
            root=ds["root"],
            num_classes=ds["num_classes"],
            num_frames=8,
            input_size=112,
            scale_size=112,
            scales=[1.0],
            flip=False,
            batch_size=16,
            num_workers=0,
        )
        dm.setup("fit")
        torch.set_num_threads(1)
        start, batches = time.perf_counter(), list(dm.train_dataloader())
        load = sum(len(b["label"]) for b in batches) / (time.perf_counter() - start)
    torch.set_num_threads(2)
    model = AdaFocus(
        num_classes=10,
        global_backbone="tiny_cnn",
        local_backbone=args.local_backbone,
        input_size=112,
        patch_size=48,
        policy_hidden_dim=128,
        classifier_hidden_dim=128,
    ).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    n, start = 0, 0.0
    for i, b in enumerate(batches * 2):
        if i == 2:  # warm-up
            start, n = time.perf_counter(), 0
        out = model(b["frames"], policy="random")
        loss = F.cross_entropy(out.logits.flatten(0, 1), b["label"].repeat_interleave(out.logits.shape[1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += len(b["label"])
    step = n / (time.perf_counter() - start)
    print(f"loader, 1 process x 1 thread : {load:7.1f} clips/s (synthetic set, 112 px, T=8)")
    print(f"stage-I step, 2 threads      : {step:7.1f} clips/s (tiny_cnn + {args.local_backbone}, P=48)")
    print(f"loader / step                : {load / step:7.2f}x  (> 1: the loader is not the bottleneck)")


if __name__ == "__main__":
    main()
