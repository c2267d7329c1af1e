"""Fitted growth, limits and log-log plots of the scale benchmark's points."""

from __future__ import annotations

import math
import os

import numpy as np

# (series, x key, y key, label) per plot panel; a series is (stage, kind).
GiB = 2**30


def series(points: list[dict], kind: str, real: bool = False) -> list[dict]:
    """Points of one kind (synthetic sizes, or real datasets with `real`), ok first by size."""
    out = [p for p in points if p["kind"] == kind and bool(p.get("real")) == real]
    return sorted(out, key=lambda p: p["size"])


def loglog_slope(xs, ys) -> float | None:
    """Least-squares slope of log y against log x (None with fewer than 2 positive points)."""
    pairs = [(x, y) for x, y in zip(xs, ys, strict=True) if x and y and x > 0 and y > 0]
    if len(pairs) < 2 or len({x for x, _ in pairs}) < 2:
        return None
    lx, ly = np.log10([x for x, _ in pairs]), np.log10([y for _, y in pairs])
    return round(float(np.polyfit(lx, ly, 1)[0]), 3)


def linear_fit(xs, ys) -> tuple[float, float] | None:
    """(intercept, slope) of y = a + b x by least squares."""
    if len(xs) < 2 or len(set(xs)) < 2:
        return None
    b, a = np.polyfit(np.asarray(xs, float), np.asarray(ys, float), 1)
    return float(a), float(b)


def fit_series(points: list[dict], kind: str, y: str, cap_bytes: int) -> dict:
    """Growth of `y` and of peak memory over the ok points of a kind, and the size at which
    the memory cap is reached (measured, or extrapolated linearly in the size)."""
    pts = series(points, kind)
    ok = [p for p in pts if p["status"] == "ok" and p.get(y) is not None]
    xs = [p["size"] for p in ok]
    out: dict = {"sizes": xs, f"slope_{y}": loglog_slope(xs, [p[y] for p in ok])}
    out["slope_peak_rss"] = loglog_slope(xs, [p["peak_rss_bytes"] for p in ok])
    lin = linear_fit(xs, [p["peak_rss_bytes"] for p in ok])
    if lin:
        a, b = lin
        out["rss_bytes_per_unit"] = round(b, 1)
        out["rss_intercept_bytes"] = round(a)
        if b > 0:
            out["predicted_size_at_cap"] = float(f"{(cap_bytes - a) / b:.3g}")
    failed = [p for p in pts if p["status"] != "ok"]
    if failed:
        first = failed[0]
        out["stops_at"] = {"size": first["size"], "status": first["status"],
                           "peak_rss_gib": round(first["peak_rss_bytes"] / GiB, 2),
                           "wall_seconds": first["wall_seconds"]}  # fmt: skip
    return out


def _fmt(x: float) -> str:
    exp = int(math.floor(math.log10(x))) if x > 0 else 0
    mant = x / 10**exp
    return f"10^{exp}" if abs(mant - 1) < 1e-9 else f"{mant:.3g}e{exp}"


def _panel(ax, points, kinds, y, ylabel, scale=1.0):
    markers = iter("osD^v<>")
    for kind, label in kinds:
        pts = [p for p in series(points, kind) if p["status"] == "ok" and p.get(y) is not None]
        if pts:
            xs = [p["size"] for p in pts]
            ys = [p[y] * scale for p in pts]
            slope = loglog_slope(xs, ys)
            tag = f"{label} (slope {slope:+.2f})" if slope is not None else label
            ax.plot(xs, ys, marker=next(markers), label=tag)
        real = [p for p in series(points, kind, real=True) if p["status"] == "ok"]
        for p in real:
            if p.get(y) is None:
                continue
            ax.scatter([p["size"]], [p[y] * scale], marker="*", s=120, zorder=5, color="black")
            ax.annotate(p["name"].split("_")[0], (p["size"], p[y] * scale), fontsize=7,
                        xytext=(4, 4), textcoords="offset points")  # fmt: skip
        for p in series(points, kind):
            if p["status"] != "ok":
                ax.axvline(p["size"], color="red", linestyle=":", linewidth=1)
                ax.annotate(f"{p['status']} at {_fmt(p['size'])}", (p["size"], 0.5),
                            xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                            color="red")  # fmt: skip
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


# (file stem, x label, [(kinds, y key, y label, scale)])
PLOTS = (
    ("data", "interactions", [
        ([("synth", "synth"), ("prepare", "data prepare")], "wall_seconds", "seconds", 1.0),
        ([("synth", "synth"), ("prepare", "data prepare")], "peak_rss_bytes", "peak RSS (GiB)",
         1 / GiB),
    ]),
    ("index", "items (768-d embeddings)", [
        ([("index", "RQ-VAE + Sinkhorn + resolution")], "wall_seconds", "seconds", 1.0),
        ([("index", "peak RSS")], "peak_rss_bytes", "peak RSS (GiB)", 1 / GiB),
        ([("index", "before resolution")], "collisions_before_resolution", "colliding items",
         1.0),
    ]),
    ("decode", "items in the catalogue", [
        ([("decode", "prefix table build")], "trie_build_seconds", "seconds", 1.0),
        ([("decode", "prefix table")], "trie_bytes", "bytes", 1.0),
        ([("decode", "constrained search"), ("decode_ref", "Beauty, same process")], "qps",
         "queries/s (batch 16, 20 beams)", 1.0),
    ]),
    ("train", "users", [
        ([("train", "semantic-id recipe, 4-token ids")], "targets_per_s", "targets/s", 1.0),
        ([("train", "peak RSS")], "peak_rss_bytes", "peak RSS (GiB)", 1 / GiB),
    ]),
    ("train_levels", "tokens per semantic id", [
        ([("train_levels", "10^4 users")], "targets_per_s", "targets/s", 1.0),
    ]),
    ("eval", "items in the catalogue", [
        ([("eval", "full-catalogue evaluation")], "users_per_s", "users/s", 1.0),
        ([("eval", "peak RSS")], "peak_rss_bytes", "peak RSS (GiB)", 1 / GiB),
    ]),
)  # fmt: skip


def write_plots(points: list[dict], out_dir: str) -> list[str]:
    """Log-log PNGs `scale_<stage>.png` in `out_dir`; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for stem, xlabel, panels in PLOTS:
        kinds = {k for p in panels for k, _ in p[0]}
        if not any(p["kind"] in kinds for p in points):
            continue
        fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8))
        axes = np.atleast_1d(axes)
        for ax, (ks, y, ylabel, scale) in zip(axes, panels, strict=True):
            _panel(ax, points, ks, y, ylabel, scale)
            ax.set_xlabel(xlabel)
        fig.suptitle(f"jaxrec scale: {stem.replace('_', ' ')} (log-log)", fontsize=10)
        fig.tight_layout()
        path = os.path.join(out_dir, f"scale_{stem}.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths
