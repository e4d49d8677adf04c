"""The report's charts: matplotlib styling and one function per chart.

Each chart function draws one PNG, writes it atomically to the path it is given and returns
its bytes, so the HTML report can embed the very same image. Used by analyze_predictions.py;
imports nothing of the project but the shared file writer and monitoring's histogram bins.
A "day" is anything with analyze_predictions.DayStats' fields (date, rows, buckets,
mean_score, high_share, min_score/max_score, histogram).
"""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import fileio
import monitoring

HIST_BINS = monitoring.SCORE_HISTOGRAM_BINS
# Charts are drawn FIG_WIDTH inches wide at DPI: twice the pixels they are shown at in the report.
FIG_WIDTH = 10.4
DPI = 200
COLORS = {"low": "#3a9d6b", "medium": "#f2a541", "high": "#d64550", "ink": "#1f2a37",
          "muted": "#6b7785", "grid": "#e6e9ee", "accent": "#2f6fb0", "reference": "#9aa5b1"}
LEVEL_COLORS = {"ok": "#3a9d6b", "warn": "#f2a541", "alert": "#d64550"}


def _pyplot():
    """matplotlib's pyplot on the Agg backend, with the report's styling."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "font.family": "DejaVu Sans", "font.size": 10, "axes.titlesize": 12, "axes.titleweight": "bold",
        "axes.titlelocation": "left", "axes.edgecolor": COLORS["grid"], "axes.labelcolor": COLORS["muted"],
        "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True, "grid.color": COLORS["grid"],
        "grid.linewidth": 0.8, "xtick.color": COLORS["muted"], "ytick.color": COLORS["muted"],
        "text.color": COLORS["ink"], "legend.frameon": False, "figure.dpi": 100,
    })
    return plt


def _save(fig, path: Path) -> bytes:
    """The figure as PNG bytes, also written atomically to `path`."""
    buffer = io.BytesIO()
    # No metadata: the PNG carries no software name or URL.
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight", facecolor="white", metadata={"Software": None})
    data = buffer.getvalue()
    fileio.write_atomic(path, data)
    return data


def _date_labels(days: Sequence[Any]) -> list[str]:
    return [d.date.strftime("%b %d").replace(" 0", " ") for d in days]


def chart_buckets(days: Sequence[Any], path: Path, medium: float, high: float) -> bytes:
    """Stacked bars of the low / medium / high row counts per day."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 3.8))
    x = np.arange(len(days))
    bottom = np.zeros(len(days))
    labels = {"low": f"low (< {medium:g})", "medium": f"medium ({medium:g} to < {high:g})", "high": f"high (>= {high:g})"}
    for key in labels:  # bottom to top: low, medium, high
        values = np.array([d.buckets[key] for d in days], dtype=float)
        bars = ax.bar(x, values, bottom=bottom, color=COLORS[key], width=0.62, label=labels[key], zorder=3)
        for rect, value, base in zip(bars, values, bottom):
            if value and len(days) <= 20 and value / max(1, max(d.rows for d in days)) > 0.06:
                ax.text(rect.get_x() + rect.get_width() / 2, base + value / 2, f"{int(value)}",
                        ha="center", va="center", color="white", fontsize=8.5, fontweight="bold", zorder=4)
        bottom += values
    ax.set_xticks(x, _date_labels(days), rotation=0 if len(days) <= 10 else 45)
    ax.set_ylabel("rows")
    ax.grid(axis="x", visible=False)
    ax.set_title("Risk buckets per day")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    data = _save(fig, path)
    plt.close(fig)
    return data


def chart_trend(days: Sequence[Any], trend: Sequence[dict[str, Any]], path: Path) -> bytes:
    """Mean score and share of high-risk rows per day, drift days shaded."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 3.8))
    x = np.arange(len(days))
    mean = [d.mean_score for d in days]
    share = [d.high_share for d in days]
    ax.plot(x, mean, color=COLORS["accent"], marker="o", linewidth=2.2, label="mean score (0 to 1)", zorder=3)
    ax.plot(x, share, color=COLORS["high"], marker="s", linewidth=2.2, label="share high-risk", zorder=3)
    if len(days) <= 14:
        for xi, m, h in zip(x, mean, share):
            above_mean = math.isnan(h) or m >= h
            ax.annotate(f"{m:.2f}", (xi, m), xytext=(0, 9 if above_mean else -15), textcoords="offset points",
                        ha="center", fontsize=8.5, color=COLORS["accent"], fontweight="bold")
            if not math.isnan(h):
                ax.annotate(f"{h:.0%}", (xi, h), xytext=(0, -15 if above_mean else 9), textcoords="offset points",
                            ha="center", fontsize=8.5, color=COLORS["high"], fontweight="bold")
    for xi, row in zip(x, trend):
        if row["drift"] in ("alert", "warn"):
            ax.axvspan(xi - 0.4, xi + 0.4, color=LEVEL_COLORS[row["drift"]], alpha=0.12, zorder=1, linewidth=0)
            ax.text(xi, 1.02, f"drift {row['drift']}", ha="center", va="bottom", fontsize=8,
                    color=LEVEL_COLORS[row["drift"]], fontweight="bold")
    ax.set_ylim(0, 1.08)
    ax.set_xlim(-0.6, len(days) - 0.4)
    ax.set_xticks(x, _date_labels(days), rotation=0 if len(days) <= 10 else 45)
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.1f}" if v <= 1 else ""))
    ax.set_title("Score trend")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    data = _save(fig, path)
    plt.close(fig)
    return data


def chart_psi(table: Sequence[dict[str, Any]], thresholds: dict[str, float], title: str, path: Path) -> bytes:
    """PSI per feature of one run on a log axis, with the warn and alert lines."""
    plt = _pyplot()
    rows = [r for r in table if r["signal"] == "data_drift" and not math.isnan(r["population_stability_index"])]
    rows.sort(key=lambda r: r["population_stability_index"])
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, max(3.2, 0.24 * len(rows) + 1.1)))
    y = np.arange(len(rows))
    floor = 1e-3  # a log axis: tiny and huge PSIs on one chart, the thresholds in between
    values = [max(r["population_stability_index"], floor) for r in rows]
    noisy = COLORS["reference"]  # above a threshold, but within sampling noise (KS test)
    colors = [noisy if r["level"] == "ok" and r["population_stability_index"] >= thresholds["warn"]
              else LEVEL_COLORS.get(r["level"], noisy) for r in rows]
    ax.barh(y, values, left=0, color=colors, height=0.72, zorder=3)
    from matplotlib.patches import Patch

    legend = [Patch(color=LEVEL_COLORS["ok"], label="ok"), Patch(color=noisy, label="over warn, within noise"),
              Patch(color=LEVEL_COLORS["warn"], label="warn"), Patch(color=LEVEL_COLORS["alert"], label="alert")]
    ax.legend(handles=legend, loc="lower right", fontsize=8.5, frameon=True, facecolor="white", edgecolor=COLORS["grid"])
    ax.set_xscale("log")
    top = max(values + [thresholds["alert"] * 4])
    ax.set_xlim(floor, top * 3)
    for yi, row, value in zip(y, rows, values):
        if row["level"] in ("warn", "alert") or value >= thresholds["warn"]:
            ax.text(value * 1.08, yi, f"{row['population_stability_index']:.2f}", va="center", fontsize=8,
                    color=COLORS["ink"])
    ax.set_yticks(y, [r["feature"] + (" (category)" if r.get("type") == "category" else "") for r in rows],
                  fontsize=8.5)
    for key in ("warn", "alert"):
        ax.axvline(thresholds[key], color=LEVEL_COLORS[key], linestyle="--", linewidth=1.3, zorder=4)
        ax.text(thresholds[key], len(rows) - 0.2, f" {key} {thresholds[key]:g}", color=LEVEL_COLORS[key],
                fontsize=8.5, va="bottom", fontweight="bold")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:g}"))
    ax.set_ylim(-0.7, len(rows) + 0.6)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("population stability index (log scale)")
    ax.set_title(title)
    data = _save(fig, path)
    plt.close(fig)
    return data


def chart_distribution(latest: Any, reference: dict[str, Any] | None, path: Path) -> bytes:
    """The latest run's score histogram against the training reference, when there is one."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, 3.8))
    edges = np.linspace(0, 1, HIST_BINS + 1)
    width = edges[1] - edges[0]
    share = latest.histogram / max(latest.rows, 1)
    ax.bar(edges[:-1], share, width=width, align="edge", color=COLORS["accent"], alpha=0.75,
           label=f"{latest.date:%b %d} ({latest.rows} rows)", zorder=3, edgecolor="white", linewidth=0.6)
    if reference and reference.get("histogram"):
        counts = np.asarray(reference["histogram"]["counts"], dtype=float)
        ref_share = counts / max(counts.sum(), 1)
        ax.step(np.append(edges[:-1], 1.0), np.append(ref_share, ref_share[-1]), where="post",
                color=COLORS["ink"], linewidth=1.8, label="training reference", zorder=4)
    ax.set_xlim(0, 1)
    ax.set_xlabel("score (probability of class 1)")
    ax.set_ylabel("share of rows")
    ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.set_title("Score distribution: latest run vs training")
    ax.legend(loc="upper center")
    data = _save(fig, path)
    plt.close(fig)
    return data



def chart_category_shares(feature: str, categories: Sequence[str], reference: Sequence[float],
                          run_counts: dict[str, int], label: str, path: Path) -> bytes:
    """One category feature's shares: training against the run, a pair of bars per category."""
    plt = _pyplot()
    total = max(sum(run_counts.values()), 1)
    run = [run_counts.get(c, 0) / total for c in categories]
    order = np.argsort(np.maximum(np.asarray(reference, dtype=float), run))[::-1]
    names = [categories[i] for i in order]
    fig, ax = plt.subplots(figsize=(FIG_WIDTH, max(3.2, 0.42 * len(names) + 1.2)))
    y = np.arange(len(names))
    ax.barh(y - 0.19, [reference[i] for i in order], height=0.38, color=COLORS["reference"], label="training", zorder=3)
    ax.barh(y + 0.19, [run[i] for i in order], height=0.38, color=COLORS["accent"], label=label, zorder=3)
    ax.set_yticks(y, [n if len(n) <= 48 else n[:45] + "..." for n in names], fontsize=8.5)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    ax.grid(axis="y", visible=False)
    ax.set_xlabel("share of rows")
    ax.set_title(f"Category shares of {feature}: training vs run")
    ax.legend(loc="lower right")
    data = _save(fig, path)
    plt.close(fig)
    return data
