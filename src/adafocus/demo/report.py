"""The demo's verdict and printed report: the claims checked against the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def acceptance(rows) -> dict[str, Any]:
    """The demo's claims, computed from the table (thresholds of the project's issue 5)."""
    by = {(r.method.split(" ")[0], r.policy): r for r in rows}
    learned, rand, centre = by[("AdaFocus", "learned")], by[("AdaFocus", "random")], by[("AdaFocus", "centre")]
    full = next(r for r in rows if r.policy == "full frames")
    c = {
        "learned_minus_random": round(learned.top1 - rand.top1, 2),
        "learned_minus_centre": round(learned.top1 - centre.top1, 2),
        "flops_share_of_full_frame": round(learned.gflops / full.gflops, 4),
        "learned_minus_full_frame": round(learned.top1 - full.top1, 2),
    }
    c["pass"] = {
        "beats random by >= 5 points": c["learned_minus_random"] >= 5,
        "beats centre by >= 10 points": c["learned_minus_centre"] >= 10,
        "<= 50% of full-frame FLOPs": c["flops_share_of_full_frame"] <= 0.5,
        "within 5 points of full frames": c["learned_minus_full_frame"] >= -5,
    }
    return c


def print_report(metrics: dict[str, Any], out: Path) -> None:
    rows = metrics["rows"]
    print(f"\nHeld-out test videos (seed {metrics['seed']}):\n")
    head = f"{'method':<46}{'patches':<14}{'top-1 %':>8}{'MFLOPs/video':>14}{'f_L frames':>12}"
    print(head + "\n" + "-" * len(head))
    for r in rows:
        print(f"{r['method']:<46}{r['policy']:<14}{r['top1']:>8.1f}{1e3 * r['gflops']:>14.2f}{r['keep_ratio']:>11.0%}")
    c = metrics["checks"]
    print(
        f"\nlearned - random {c['learned_minus_random']:+.1f} pts, "
        f"learned - centre {c['learned_minus_centre']:+.1f} pts, "
        f"FLOPs {c['flops_share_of_full_frame']:.0%} of full frames, "
        f"accuracy {c['learned_minus_full_frame']:+.1f} pts vs full frames"
    )
    for claim, ok in c["pass"].items():
        print(f"  [{'ok' if ok else 'NOT MET'}] {claim}")
    m = metrics["peak_memory"]
    print(
        f"\nwall time {_mmss(metrics['wall_time_s'])} ({metrics['wall_time_s']:.0f} s); peak memory: main process "
        f"{m['main_mb']:.0f} MB, largest worker {m['largest_worker_mb']:.0f} MB (sum {m['upper_bound_mb']:.0f} MB)"
    )
    print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in metrics["timings_s"].items()))
    print(
        f"\nwritten to {out}: patches.png, patches.gif, patches_adafocus_plus.png, accuracy_vs_gflops.png, "
        "online_accuracy.png, metrics.json, checkpoints/ (every stage), logs/ (CSV metrics per stage)"
    )
