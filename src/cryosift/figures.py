"""Figures on matplotlib's Agg canvas (no display, no global backend change), written as PNG
and SVG atomically; cutoffs keep the paper's colours (2.5 coral, 3.5 blue, 4.5 tan).

Shared by validation (its ResLog panel) and the report, which draws on validation's results.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryosift.io.atomic import atomic_path

PAPER_COLOURS = {2.5: "#f08070", 3.5: "#3b75af", 4.5: "#d2b48c"}
OTHER_COLOURS = ["#6a3d9a", "#33a02c", "#ff7f00", "#1f78b4", "#b15928", "#e31a1c", "#a6cee3", "#999999"]


def cutoff_colours(cutoffs) -> dict:
    """A colour per cutoff: the paper's for 2.5/3.5/4.5, distinct ones for others."""
    out, extra = {}, iter(OTHER_COLOURS * 4)
    for c in sorted({float(c) for c in cutoffs if c is not None and np.isfinite(c)}):
        out[c] = PAPER_COLOURS.get(round(c, 3)) or next(extra)
    return out


def new_figure(width: float, height: float) -> Figure:
    """A figure of ``width`` x ``height`` inches at 150 dpi on its own Agg canvas."""
    fig = Figure(figsize=(width, height), dpi=150, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, stem: str | Path) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg`` atomically; returns the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".svg"):
        path = stem.with_name(stem.name + suffix)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=suffix[1:])
        paths.append(path)
    return paths
