"""The ResLog figure (Rosenthal & Henderson): 1/d² against ln N with the fitted line; B in the legend."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cryosift.figures import OTHER_COLOURS, new_figure, save_figure


def reslog_axes(ax, fits: dict, colours: dict | None = None) -> None:
    """Draw 1/d^2 against ln N with the fitted lines; legend gives B."""
    for i, (label, fit) in enumerate(fits.items()):
        colour = (colours or {}).get(label) or OTHER_COLOURS[i % len(OTHER_COLOURS)]
        n, d, used = fit.particles, fit.resolution_A, fit.used
        ok = np.isfinite(d) & (d > 0)
        x = np.log(n[ok].astype(float))
        ax.scatter(x, 1.0 / d[ok] ** 2, color=colour, edgecolor="black", linewidth=0.4, s=24, zorder=2,
                   alpha=[1.0 if u else 0.35 for u in used[ok]])
        b = f"B = {fit.b_factor_A2:.0f} Å²" if np.isfinite(fit.b_factor_A2) else "B n/a"
        if np.isfinite(fit.slope) and used.any():
            xs = np.log(n[used].astype(float))
            line = np.linspace(xs.min(), xs.max(), 20)
            ax.plot(line, fit.slope * line + fit.intercept, color=colour, linewidth=1.2, zorder=1)
        ax.plot([], [], color=colour, marker="o", label=f"{label}: {b}")
    ax.set_xlabel("ln(number of particles)")
    ax.set_ylabel("1 / resolution² (Å⁻²)")
    ax.legend(frameon=False, fontsize="x-small")


def plot_reslog(fits: dict, stem, title: str = "ResLog (Rosenthal & Henderson: B = 2 / slope)") -> list[Path]:
    """One ResLog panel: ``fits`` maps a label to a :class:`cryosift.validate.reslog.ResLogFit`."""
    fig = new_figure(4.6, 3.6)
    ax = fig.add_subplot()
    reslog_axes(ax, fits)
    ax.set_title(title, fontsize="medium")
    return save_figure(fig, stem)
