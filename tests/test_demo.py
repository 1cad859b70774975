"""`adafocus demo --fast`: the whole pipeline end to end, every output written and sane."""

import json
import math

import pytest

from adafocus.cli import main

OUTPUTS = [
    "patches.png",
    "patches.gif",
    "patches_adafocus_plus.png",
    "patches_v2.png",
    "accuracy_vs_gflops.png",
    "online_accuracy.png",
    "metrics.json",
]
CHECKPOINTS = [
    "pretrained_demo_glance.pt",
    "pretrained_demo_local.pt",
    "stage0.ckpt",
    "stage1.ckpt",
    "stage2.ckpt",
    "stage3.ckpt",
    "stage2_plus.ckpt",
    "v2.ckpt",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--fast", "--out", str(out), "--no-progress"]) == 0
    return out


def test_demo_writes_every_output(demo):
    for name in OUTPUTS + [f"checkpoints/{c}" for c in CHECKPOINTS]:
        assert (demo / name).stat().st_size > 0, name
    plus = sorted(p.name for p in (demo / "checkpoints").glob("stage3_plus_keep*.ckpt"))
    assert plus == ["stage3_plus_keep50.ckpt", "stage3_plus_keep75.ckpt"]
    assert (demo / "patches.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (demo / "patches.gif").read_bytes()[:6] in (b"GIF89a", b"GIF87a")


def test_demo_table_is_finite_and_learned_not_worse_than_random(demo):
    m = json.loads((demo / "metrics.json").read_text())
    rows = m["rows"]
    assert {r["policy"] for r in rows} == {"learned", "random", "centre", "gaussian", "full frames"}
    for r in rows:
        assert all(math.isfinite(v) for v in [r["top1"], r["gflops"], r["keep_ratio"], *r["online"]]), r
        early_exit = "early exit" in r["method"]  # one accuracy at its exits, no per-frame curve
        assert 0 <= r["top1"] <= 100 and r["gflops"] > 0 and len(r["online"]) == (0 if early_exit else 8)
    by = {(r["method"].split()[0], r["policy"]): r for r in rows}
    assert by[("AdaFocus", "learned")]["top1"] >= by[("AdaFocus", "random")]["top1"]
    # AdaFocus+ really skips f_L: fewer FLOPs than AdaFocus at its measured keep ratio
    plus = [r for r in rows if r["method"].startswith("AdaFocus+")]
    assert len(plus) == 2 and all(r["gflops"] < by[("AdaFocus", "learned")]["gflops"] for r in plus)
    assert m["wall_time_s"] > 0 and m["peak_memory"]["main_mb"] > 0
    # AdaFocusV2 beside V1: its patches, early exit under budget, the sweep with latencies, its time
    v2 = {r["policy"]: r for r in rows if r["method"] == "AdaFocusV2 P=24"}
    assert set(v2) == {"learned", "random", "centre"}
    exits = [r for r in rows if "early exit" in r["method"]]
    assert len(exits) == 2 and all(r["gflops"] < v2["learned"]["gflops"] and r["latency_ms"] > 0 for r in exits)
    sweep = m["early_exit_sweep"]
    assert [p["budget_share"] for p in sweep] == sorted(p["budget_share"] for p in sweep)
    assert all(p["share_of_full"] <= p["budget_share"] + 0.15 and p["latency_ms"] > 0 for p in sweep)
    assert m["timings_s"]["v2"] > 0 and "v2_time_share_of_v1_stages" in m["checks"]
