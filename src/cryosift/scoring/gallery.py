"""A PNG gallery of class averages sorted by score, each labelled with its class and score.

The panels are composed into one montage image (one axes, one image), so a gallery of
thousands of classes renders in seconds.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cryosift.io.atomic import atomic_path

#: Score bands and their label colours: <= 2.5, <= 3.5, <= 4.5, worse.
BANDS = ((2.5, "#1a9641"), (3.5, "#2b83ba"), (4.5, "#e66101"), (np.inf, "#d7191c"))
#: Height of the label strip above each panel and width of the gap beside it, inches.
LABEL_INCHES = 0.25
GAP_INCHES = 0.06


def band_colour(score: float) -> str:
    """Label colour of a score (green, blue, orange, red from best to worst band)."""
    for limit, colour in BANDS:
        if score <= limit:
            return colour
    return BANDS[-1][1]


def gallery_order(table: pd.DataFrame, sort: bool = True) -> np.ndarray:
    """Row order of the gallery: best (lowest) score first, ties by class number; or as given."""
    if not sort:
        return np.arange(len(table))
    return np.lexsort((table["class"].to_numpy(), table["score"].to_numpy()))


def contrast_stretch(img: np.ndarray) -> np.ndarray:
    """Scale one image to [0, 1] between its 0.5th and 99.5th percentiles."""
    lo, hi = np.percentile(img, [0.5, 99.5])
    return np.clip((img - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(img)


def write_gallery(path: str | Path, images: np.ndarray, table: pd.DataFrame, columns: int = 10,
                  sort: bool = True, panel_inches: float = 1.2, dpi: int = 100) -> Path:
    """Write a gallery of class averages annotated with their scores, atomically.

    Parameters
    ----------
    path : str or Path
        Output ``.png``.
    images : np.ndarray
        Class averages, shape (k, box, box), in the row order of ``table``.
    table : pd.DataFrame
        ``class`` and ``score`` per class (from :func:`cryosift.scoring.score_classes`).
    columns : int
        Panels per row.
    sort : bool
        Best score first (ties by class number); otherwise in class order.
    panel_inches, dpi : float, int
        Size of one panel and resolution; the figure is ``columns x (panel_inches + 0.06)``
        wide and ``rows x (panel_inches + 0.25)`` tall.
    """
    k = len(table)
    order = gallery_order(table, sort)
    columns = max(1, min(columns, k))
    rows = max(1, -(-k // columns))
    box = int(np.asarray(images).shape[-1])
    strip = max(1, round(box * LABEL_INCHES / panel_inches))
    gap = max(1, round(box * GAP_INCHES / panel_inches))
    cell_h, cell_w = box + strip, box + gap
    montage = np.full((rows * cell_h, columns * cell_w), np.nan)
    fig = Figure(figsize=(columns * (panel_inches + GAP_INCHES), rows * (panel_inches + LABEL_INCHES)), dpi=dpi)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0, 0, 1, 1))
    for slot, i in enumerate(order):
        r, c = divmod(slot, columns)
        y0, x0 = r * cell_h + strip, c * cell_w + gap // 2
        montage[y0:y0 + box, x0:x0 + box] = contrast_stretch(np.asarray(images[i], dtype=np.float64))
        score = float(table["score"].iloc[i])
        ax.text(x0 + box / 2, y0 - strip / 2, f"{int(table['class'].iloc[i])}: {score:.2f}", ha="center",
                va="center", fontsize=8, color=band_colour(score))
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")  # gaps and label strips white
    ax.imshow(montage, cmap=cmap, vmin=0, vmax=1, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    out = Path(path)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png")
    return out
