"""Run reports: `metrics.json`, `report.md` and PNG plots from per-system metrics.

systems = {"jaxrec": {"recall@10": ...}, "popularity": {...}, "sasrec": {...},
           "oracle": {...}}
write_report(out_dir, systems, loss_history=[(step, loss), ...], notes={...})
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence

KS = (1, 5, 10, 20)
SYSTEM_ORDER = ("jaxrec", "jaxrec_generative", "jaxrec_dense", "popularity", "sasrec", "oracle")


def _ordered(systems: Mapping[str, Mapping[str, float]]) -> list[str]:
    known = [s for s in SYSTEM_ORDER if s in systems]
    return known + sorted(s for s in systems if s not in known)


def plot_loss(path: str, history: Sequence[tuple[int, float]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [s for s, _ in history]
    losses = [v for _, v in history]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(steps, losses, color="#1f77b4", linewidth=1.6)
    ax.set_xlabel("training step")
    ax.set_ylabel("cross-entropy per target token")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_metrics(path: str, systems: Mapping[str, Mapping[str, float]], title: str) -> None:
    """Grouped bars: Recall@K and NDCG@K for each system, K in KS."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    names = _ordered(systems)
    colors = {"jaxrec": "#d62728", "jaxrec_generative": "#ff9896", "jaxrec_dense": "#9467bd",
              "popularity": "#7f7f7f", "sasrec": "#1f77b4", "oracle": "#2ca02c"}  # fmt: skip
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110, sharey=True)
    width = 0.8 / len(names)
    x = np.arange(len(KS))
    for ax, metric in zip(axes, ("recall", "ndcg"), strict=True):
        for j, name in enumerate(names):
            values = [systems[name].get(f"{metric}@{k}", float("nan")) for k in KS]
            bars = ax.bar(x + (j - (len(names) - 1) / 2) * width, values, width,
                          label=name, color=colors.get(name))  # fmt: skip
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1)
        ax.set_xticks(x, [f"@{k}" for k in KS])
        ax.set_title(f"{'Recall' if metric == 'recall' else 'NDCG'}@K (test, full ranking)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("metric value")
    axes[1].legend(loc="upper left", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def metrics_table(systems: Mapping[str, Mapping[str, float]]) -> str:
    cols = [f"recall@{k}" for k in KS] + [f"ndcg@{k}" for k in KS]
    lines = ["| system | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name in _ordered(systems):
        row = [f"{systems[name][c]:.4f}" if c in systems[name] else "–" for c in cols]
        lines.append(f"| {name} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def write_report(
    out_dir: str,
    systems: Mapping[str, Mapping[str, float]],
    loss_history: Sequence[tuple[int, float]],
    title: str,
    sections: Sequence[tuple[str, str]] = (),
) -> dict[str, str]:
    """Write metrics.json, report.md, loss.png and metrics.png; returns their paths."""
    os.makedirs(out_dir, exist_ok=True)
    paths = {
        "metrics": os.path.join(out_dir, "metrics.json"),
        "report": os.path.join(out_dir, "report.md"),
        "loss_plot": os.path.join(out_dir, "loss.png"),
        "metrics_plot": os.path.join(out_dir, "metrics.png"),
    }
    with open(paths["metrics"], "w", encoding="utf-8") as f:
        json.dump({k: dict(v) for k, v in systems.items()}, f, indent=2, sort_keys=True)
        f.write("\n")
    if loss_history:
        plot_loss(paths["loss_plot"], loss_history, f"{title}: training loss")
    else:
        paths.pop("loss_plot")
    plot_metrics(paths["metrics_plot"], systems, title)
    body = [f"# {title}", "", metrics_table(systems), ""]
    for heading, text in sections:
        body += [f"## {heading}", "", text.strip(), ""]
    body += ["## Plots", ""]
    if "loss_plot" in paths:
        body.append("![training loss](loss.png)")
    body += ["![Recall@K and NDCG@K](metrics.png)", ""]
    with open(paths["report"], "w", encoding="utf-8") as f:
        f.write("\n".join(body))
    return paths
