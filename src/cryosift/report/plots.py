"""Comparison plots across datasets and cutoffs, after the paper's Fig. 3b, 4a-d and 5.

Figures are drawn with :mod:`cryosift.figures` (Agg canvas, PNG and SVG written atomically,
the paper's cutoff colours: 2.5 coral, 3.5 blue, 4.5 tan); the ResLog panels with
:mod:`cryosift.validate.reslog_plot`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.figures import cutoff_colours, new_figure, save_figure
from cryosift.validate.reslog import ResLogFit
from cryosift.validate.reslog_plot import reslog_axes


def _dataset_order(table: pd.DataFrame, column: str, ascending: bool = True) -> list[str]:
    """Datasets ordered by ``column`` at their loosest cutoff."""
    loosest = table.sort_values("cutoff", ascending=False).groupby("dataset", sort=False).head(1)
    return loosest.sort_values(column, ascending=ascending, na_position="last")["dataset"].tolist()


def _grouped_bars(table: pd.DataFrame, column: str, order: list[str], ylabel: str, title: str, stem, scale=1.0):
    colours = cutoff_colours(table["cutoff"])
    fig = new_figure(max(4.0, 0.9 * len(order) + 1.5), 3.6)
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(colours))
    x = np.arange(len(order))
    for j, (cut, colour) in enumerate(sorted(colours.items(), reverse=True)):
        sub = table[np.isclose(table["cutoff"], cut)].set_index("dataset")
        vals = [scale * sub[column].get(d, np.nan) for d in order]
        ax.bar(x + (j - (len(colours) - 1) / 2) * width, vals, width, color=colour, label=f"≤ {cut:g}",
               edgecolor="black", linewidth=0.4)
    ax.set_xticks(x, order, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(title="score cutoff", frameon=False, fontsize="small")
    return save_figure(fig, stem)


def plot_fraction_kept(table: pd.DataFrame, stem) -> list[Path]:
    """Fraction of particles selected per cutoff (Fig. 3b), datasets by fraction kept."""
    order = _dataset_order(table, "fraction_kept")
    return _grouped_bars(table, "fraction_kept", order, "particles selected (%)", "Fraction of selected particles",
                         stem, scale=100.0)


def _dots(table: pd.DataFrame, column: str, order: list[str], ylabel: str, title: str, stem, invert: bool = False):
    colours = cutoff_colours(table["cutoff"])
    fig = new_figure(max(4.0, 0.7 * len(order) + 1.5), 3.6)
    ax = fig.add_subplot()
    x = np.arange(len(order))
    ranks = {c: j for j, c in enumerate(sorted(colours, reverse=True))}
    for i, d in enumerate(order):
        sub = table[table["dataset"] == d].sort_values("cutoff", ascending=False)
        xs = [x[i] + (ranks[float(c)] - (len(ranks) - 1) / 2) * 0.12 for c in sub["cutoff"]]
        ax.plot(xs, sub[column], color="0.7", linewidth=1.0, zorder=1)
    ranked = sorted(colours.items(), reverse=True)
    for j, (cut, colour) in enumerate(ranked):
        sub = table[np.isclose(table["cutoff"], cut)].set_index("dataset")
        offset = (j - (len(ranked) - 1) / 2) * 0.12  # side by side, loosest cutoff left
        ax.scatter(x + offset, [sub[column].get(d, np.nan) for d in order], s=36, color=colour, edgecolor="black",
                   linewidth=0.4, label=f"≤ {cut:g}", zorder=2)
    ax.set_xticks(x, order, rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if invert:
        ax.invert_yaxis()  # better resolution (smaller Å) up
    ax.legend(title="score cutoff", frameon=False, fontsize="small")
    return save_figure(fig, stem)


def plot_resolution(table: pd.DataFrame, stem) -> list[Path]:
    """FSC 0.5 resolution against the model per dataset and cutoff (Fig. 4a)."""
    order = _dataset_order(table, "fsc05_model_A", ascending=False)
    return _dots(table, "fsc05_model_A", order, "FSC 0.5 resolution (Å)", "Resolution against the model", stem,
                 invert=True)


def plot_qscore(table: pd.DataFrame, stem) -> list[Path]:
    """Mean all-atom Q-score per dataset and cutoff (Fig. 4c)."""
    order = _dataset_order(table, "qscore_mean")
    return _dots(table, "qscore_mean", order, "mean Q-score", "Atom inclusion (Q-score)", stem)


def _gain_bars(table: pd.DataFrame, column: str, cutoff: float, ylabel: str, title: str, stem):
    sub = table[np.isclose(table["cutoff"], cutoff)].sort_values(column, na_position="first")
    fig = new_figure(max(4.0, 0.6 * len(sub) + 1.5), 3.4)
    ax = fig.add_subplot()
    vals = sub[column].to_numpy(dtype=float)
    colours = ["#2e8b57" if v >= 0 else "#c0392b" for v in np.nan_to_num(vals)]
    ax.bar(np.arange(len(sub)), vals, color=colours, edgecolor="black", linewidth=0.4)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(np.arange(len(sub)), sub["dataset"], rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    return save_figure(fig, stem)


def plot_resolution_gain(table: pd.DataFrame, stem, cutoff: float = 3.5, baseline: float | None = 4.5) -> list[Path]:
    """Resolution gained going from the baseline cutoff to ``cutoff`` (Fig. 4b)."""
    base = f"{baseline:g}" if baseline is not None else "loosest"
    return _gain_bars(table, "resolution_gain_A", cutoff, "resolution gain (Å)",
                      f"Resolution change, cutoff {base} → {cutoff:g}", stem)


def plot_qscore_gain(table: pd.DataFrame, stem, cutoff: float = 3.5, baseline: float | None = 4.5) -> list[Path]:
    """Q-score gained going from the baseline cutoff to ``cutoff`` (Fig. 4d)."""
    base = f"{baseline:g}" if baseline is not None else "loosest"
    return _gain_bars(table, "qscore_gain", cutoff, "Q-score gain", f"Q-score change, cutoff {base} → {cutoff:g}", stem)


def _panels(n: int, width: float = 3.6, height: float = 3.0):
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig = new_figure(width * cols, height * rows)
    return fig, [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def plot_reslog_grid(results: list[dict], stem) -> list[Path] | None:
    """ResLog per dataset, one line per cutoff, B in the legend (Fig. 5); None without ResLog data."""
    with_reslog = [v for v in results if v.get("reslog")]
    if not with_reslog:
        return None
    datasets = sorted({str(v["dataset"]) for v in with_reslog})
    colours = cutoff_colours([v.get("cutoff") for v in with_reslog])
    fig, axes = _panels(len(datasets))
    for ax, name in zip(axes, datasets):
        runs = sorted((v for v in with_reslog if str(v["dataset"]) == name), key=lambda v: -(v.get("cutoff") or 0))
        fits, col = {}, {}
        for v in runs:
            label = f"≤ {v['cutoff']:g}" if v.get("cutoff") is not None else "all"
            fits[label] = ResLogFit.from_dict(v["reslog"])
            col[label] = colours.get(float(v["cutoff"])) if v.get("cutoff") is not None else None
        reslog_axes(ax, fits, col)
        ax.set_title(name, fontsize="medium")
    return save_figure(fig, stem)


def plot_fsc_curves(results: list[dict], stem) -> list[Path] | None:
    """FSC against the model per dataset, one curve per cutoff; None when no curves are found."""
    curves = []
    for v in results:
        rel = (v.get("files") or {}).get("fsc_model_csv")
        path = Path(v.get("_path", ".")).parent / rel if rel else None
        if path is not None and path.exists():
            curves.append((str(v["dataset"]), v.get("cutoff"), pd.read_csv(path)))
    if not curves:
        return None
    datasets = sorted({c[0] for c in curves})
    colours = cutoff_colours([c[1] for c in curves])
    fig, axes = _panels(len(datasets))
    for ax, name in zip(axes, datasets):
        for _, cut, curve in sorted((c for c in curves if c[0] == name), key=lambda c: -(c[1] or 0)):
            colour = colours.get(float(cut)) if cut is not None else "black"
            label = f"≤ {cut:g}" if cut is not None else "map"
            ax.plot(curve["frequency"][1:], curve["fsc"][1:], color=colour, label=label)
        ax.axhline(0.5, color="0.5", linewidth=0.6, linestyle="--")
        ax.set_ylim(-0.1, 1.02)
        ax.set_xlabel("spatial frequency (1/Å)")
        ax.set_ylabel("FSC against model")
        ax.set_title(name, fontsize="medium")
        ax.legend(frameon=False, fontsize="x-small")
    return save_figure(fig, stem)
