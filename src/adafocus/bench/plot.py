"""``adafocus benchmark --plot``: the share of the FLOPs saving that became real speed, per setting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

TARGET = 0.95  # the project's target for realised speed-up / FLOPs ratio
PAPER_CPU = 0.88  # AdaFocus-TSM-144 vs TSM+, CPU batch 1 (paper: 1.31x latency for 1.49x fewer FLOPs)
PAPER_GPU = 0.92  # the same pair, GPU batch 64 (paper: 1.37x throughput)


def realised_chart(rows: list[dict[str, Any]], path: str | Path, title: str = "", device: str = "cpu") -> Path:
    """Grouped bars: for every AdaFocus model, realised speed-up at batch 1 (solid) and batched
    (hatched) under each benchmarked setting, with the 0.95 target and the paper's figure for the
    kind of ``device`` (CPU latency, GPU throughput)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in rows if "realised_bs1" in r]
    if not rows:
        raise ValueError("no AdaFocus rows with a measured baseline to plot")
    models = list(dict.fromkeys(r["model"] for r in rows))
    settings = list(dict.fromkeys(r["setting"].label for r in rows))
    by = {(r["model"], r["setting"].label): r for r in rows}
    width = 0.8 / (2 * len(settings))
    colours = plt.get_cmap("viridis")([i / max(1, len(settings) - 1) * 0.85 for i in range(len(settings))])
    fig, ax = plt.subplots(figsize=(max(7.0, 1.5 * len(models) + 2), 4.2))
    for j, (setting, colour) in enumerate(zip(settings, colours)):
        for k, (key, hatch) in enumerate((("realised_bs1", None), ("realised_batch", "//"))):
            xs, ys = [], []
            for i, m in enumerate(models):
                r = by.get((m, setting))
                if r is not None:
                    xs.append(i - 0.4 + width * (2 * j + k + 0.5))
                    ys.append(r[key])
            label = setting if k == 0 else None
            ax.bar(xs, ys, width, color=colour, hatch=hatch, edgecolor="white" if hatch else colour, label=label)
    ax.axhline(TARGET, color="crimson", lw=1.2, ls="--", label=f"target {TARGET}")
    gpu = device.startswith("cuda")
    paper, where = (PAPER_GPU, "GPU, batch 64") if gpu else (PAPER_CPU, "CPU, batch 1")
    ax.axhline(paper, color="grey", lw=1.0, ls=":", label=f"paper, {where} ({paper})")
    ax.set_xticks(range(len(models)), [m.replace("adafocus_", "").replace("_", " ") for m in models])
    ax.set_ylabel("measured speed-up / FLOPs ratio")
    ax.set_ylim(0, max(1.25, max(r[k] for r in rows for k in ("realised_bs1", "realised_batch")) + 0.1))
    ax.set_title(title or "realised share of the FLOPs saving (solid: batch 1, hatched: batched)", fontsize=10)
    ax.legend(fontsize=8, ncol=2, loc="lower right")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
