"""The demo's verdict and printed report: the claims checked against the table."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _mmss(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


def acceptance(rows, timings: dict[str, float]) -> dict[str, Any]:
    """The demo's claims, computed from the table and the stage times (thresholds of the project's
    issues 5 and 19)."""
    by = {(r.method.split(" ")[0], r.policy): r for r in rows}
    learned, rand, centre = by[("AdaFocus", "learned")], by[("AdaFocus", "random")], by[("AdaFocus", "centre")]
    full = next(r for r in rows if r.policy == "full frames")
    c = {
        "learned_minus_random": round(learned.top1 - rand.top1, 2),
        "learned_minus_centre": round(learned.top1 - centre.top1, 2),
        "flops_share_of_full_frame": round(learned.gflops / full.gflops, 4),
        "learned_minus_full_frame": round(learned.top1 - full.top1, 2),
    }
    v2 = {r.policy if "early exit" not in r.method else r.method: r for r in rows if r.method.startswith("AdaFocusV2")}
    exits = [r for k, r in v2.items() if "early exit" in k]
    v1_time = sum(timings.get(k, 0.0) for k in ("stage1", "stage2", "stage3"))
    c.update(
        v2_learned_minus_random=round(v2["learned"].top1 - v2["random"].top1, 2),
        v2_learned_minus_v1_learned=round(v2["learned"].top1 - learned.top1, 2),
        v2_time_share_of_v1_stages=round(timings.get("v2", 0.0) / v1_time, 3) if v1_time else None,
        early_exit={r.method: dict(share_of_full=round(r.gflops / v2["learned"].gflops, 3),
                                   minus_no_exit=round(r.top1 - v2["learned"].top1, 2)) for r in exits},
    )  # fmt: skip
    within = [e for e in c["early_exit"].values() if e["share_of_full"] <= 0.70]
    c["pass"] = {
        "beats random by >= 5 points": c["learned_minus_random"] >= 5,
        "beats centre by >= 10 points": c["learned_minus_centre"] >= 10,
        "<= 50% of full-frame FLOPs": c["flops_share_of_full_frame"] <= 0.5,
        "within 5 points of full frames": c["learned_minus_full_frame"] >= -5,
        "V2 learned beats V2 random by >= 5 points": c["v2_learned_minus_random"] >= 5,
        "V2 learned >= V1 learned - 1 point": c["v2_learned_minus_v1_learned"] >= -1,
        "V2 trains in <= 0.6 x V1 stages I-III": (c["v2_time_share_of_v1_stages"] or 99) <= 0.6,
        "early exit at <= 70% GFLOPs within 2 points": any(e["minus_no_exit"] >= -2 for e in within),
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
    print(
        f"AdaFocusV2: learned - random {c['v2_learned_minus_random']:+.1f} pts, learned - V1 learned "
        f"{c['v2_learned_minus_v1_learned']:+.1f} pts, training time {c['v2_time_share_of_v1_stages']:.2f} x V1's "
        "stages I-III"
    )
    for p in metrics.get("early_exit_sweep", []):
        print(f"  early exit at {p['budget_share']:.0%} budget: {1e3 * p['gflops']:.2f} MFLOPs "
              f"({p['share_of_full']:.0%}), top-1 {p['top1']:.1f} %, {p['mean_frames']:.1f} frames, "
              f"{p['latency_ms']:.2f} ms/video streamed")  # fmt: skip
    for claim, ok in c["pass"].items():
        print(f"  [{'ok' if ok else 'NOT MET'}] {claim}")
    m = metrics["peak_memory"]
    print(
        f"\nwall time {_mmss(metrics['wall_time_s'])} ({metrics['wall_time_s']:.0f} s); peak memory: main process "
        f"{m['main_mb']:.0f} MB, largest worker {m['largest_worker_mb']:.0f} MB (sum {m['upper_bound_mb']:.0f} MB)"
    )
    print("stage times (s): " + ", ".join(f"{k} {v:.0f}" for k, v in metrics["timings_s"].items()))
    print(
        f"\nwritten to {out}: patches.png, patches.gif, patches_adafocus_plus.png, patches_v2.png, "
        "accuracy_vs_gflops.png, online_accuracy.png, metrics.json, checkpoints/ (every stage), "
        "logs/ (CSV metrics per stage)"
    )
