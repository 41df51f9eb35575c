"""Build the whole cross-dataset report: table (CSV, Markdown) and figures (PNG, SVG)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cryosift.errors import InputError
from cryosift.records import read_summary
from cryosift.report.plots import (
    plot_fraction_kept,
    plot_fsc_curves,
    plot_qscore,
    plot_qscore_gain,
    plot_resolution,
    plot_resolution_gain,
    plot_reslog_grid,
)
from cryosift.report.table import comparison_table, find_validation_files, read_validation, write_table

log = logging.getLogger(__name__)


def apply_summaries(results: list[dict], summaries) -> None:
    """Fill particle counts that validations lack from per-dataset summary files (in place).

    A summary (``cryosift summarize``) names its ``dataset``, its total ``particles`` and,
    under ``cutoffs``, the particles kept per cutoff.
    """
    for path in summaries or []:
        summary = read_summary(path)
        name, total = str(summary.get("dataset")), summary.get("particles")
        for key, entry in (summary.get("cutoffs") or {}).items():
            for v in results:
                same = str(v["dataset"]) == name and v.get("cutoff") is not None
                if not same or not np.isclose(float(v["cutoff"]), float(key)):
                    continue
                if v.get("particles_kept") is None and entry.get("particles") is not None:
                    v["particles_kept"] = int(entry["particles"])
                if v.get("particles_total") is None and total is not None:
                    v["particles_total"] = int(total)
                if v.get("fraction_kept") is None and v.get("particles_kept") is not None and v.get("particles_total"):
                    v["fraction_kept"] = v["particles_kept"] / v["particles_total"]


def summary_warnings(summaries) -> list[tuple[str, str, str]]:
    """Out-of-domain warnings of per-dataset summary files: (dataset, step, line) each."""
    out = []
    for path in summaries or []:
        summary = read_summary(path)
        for w in summary.get("warnings") or []:
            out.append((str(summary.get("dataset")), str(w.get("step", "")), str(w.get("warning", ""))))
    return out


def write_report(paths, out_dir: str | Path, baseline: float | None = None, compare: float = 3.5,
                 summaries=None) -> dict:
    """Collect validation results and write the comparison table and figures.

    Parameters
    ----------
    paths : sequence of str or Path
        ``validation.json`` files, or folders searched for them.
    out_dir : str or Path
        Output folder.
    baseline : float, optional
        Cutoff gains are measured from (default the loosest cutoff of each dataset; the
        paper uses 4.5).
    compare : float
        Cutoff whose gains are plotted (the paper's 3.5).
    summaries : sequence of str or Path, optional
        Per-dataset summary files that fill missing particle counts; their out-of-domain
        warnings are listed under the Markdown table and logged.

    Returns
    -------
    dict
        Output name -> list of paths written: ``table`` (OUT/comparison.csv and .md); in
        OUT/plots: ``fraction_kept``
        (Fig. 3b), ``resolution`` (4a), ``resolution_gain`` (4b), ``qscore`` (4c),
        ``qscore_gain`` (4d), ``reslog`` (5) and ``fsc_curves`` where there is data.
    """
    files = find_validation_files(paths)
    if not files:
        raise InputError(None, f"no validation.json found in {', '.join(map(str, paths))}")
    results = [read_validation(f) for f in files]
    apply_summaries(results, summaries)
    table = comparison_table(results, baseline)
    out = Path(out_dir)
    plots = out / "plots"
    warnings = summary_warnings(summaries)
    for dataset, step, line in warnings:
        log.warning("%s, %s: %s", dataset, step, line)
    written = {"table": list(write_table(table, out, baseline, warnings=warnings).values())}
    written["fraction_kept"] = plot_fraction_kept(table, plots / "fraction_kept")
    written["resolution"] = plot_resolution(table, plots / "resolution")
    written["qscore"] = plot_qscore(table, plots / "qscore")
    if np.isclose(table["cutoff"], compare).any():
        loosest = table.groupby("dataset")["cutoff"].max().unique()
        shown = baseline if baseline is not None else (float(loosest[0]) if len(loosest) == 1 else None)
        written["resolution_gain"] = plot_resolution_gain(table, plots / "resolution_gain", compare, shown)
        written["qscore_gain"] = plot_qscore_gain(table, plots / "qscore_gain", compare, shown)
    else:
        log.warning("no map at cutoff %g: gain plots skipped", compare)
    for name, fn in (("reslog", plot_reslog_grid), ("fsc_curves", plot_fsc_curves)):
        paths_out = fn(results, plots / name)
        if paths_out:
            written[name] = paths_out
    log.info("report of %d maps from %d datasets in %s", len(table), table["dataset"].nunique(), out)
    return written
