"""The comparison table across datasets and score cutoffs, from per-map validation files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError, require_file
from cryosift.io.atomic import atomic_path, write_text_atomic
from cryosift.records import read_validation as read_validation_record

VALIDATION_FILE = "validation.json"

#: Table columns and their Markdown headings.
COLUMNS = {
    "dataset": "Dataset",
    "cutoff": "Cutoff",
    "particles_kept": "Particles kept",
    "particles_total": "Particles total",
    "fraction_kept": "Fraction kept",
    "fsc05_model_A": "FSC0.5 vs model (Å)",
    "resolution_gain_A": "Resolution gain (Å)",
    "fsc0143_half_A": "Half-map FSC0.143 (Å)",
    "qscore_mean": "Mean Q-score",
    "qscore_gain": "Q-score gain",
    "expected_qscore": "Expected Q",
    "b_factor_A2": "ResLog B (Å²)",
    "stagg_slope": "ResLog 1/d slope (Å⁻¹)",
    "hand": "Hand",
}


def find_validation_files(paths) -> list[Path]:
    """Validation JSON files named directly or found (recursively) in folders, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(p.rglob(VALIDATION_FILE)))
        else:
            found.append(require_file(p))
    return found


def read_validation(path: str | Path) -> dict:
    """One validation result, with its own path under ``_path``."""
    record = read_validation_record(path)
    return {**record.data, "_path": str(record.path)}


def _row(v: dict) -> dict:
    reslog = v.get("reslog") or {}
    alignment = v.get("alignment") or {}
    def num(key, src=v):
        val = src.get(key)
        return np.nan if val is None else float(val)
    return {
        "dataset": str(v["dataset"]),
        "cutoff": num("cutoff"),
        "particles_kept": v.get("particles_kept"),
        "particles_total": v.get("particles_total"),
        "fraction_kept": num("fraction_kept"),
        "fsc05_model_A": num("fsc05_model_A"),
        "fsc0143_half_A": num("fsc0143_half_masked_A" if v.get("fsc0143_half_masked_A") is not None else "fsc0143_half_A"),
        "qscore_mean": num("qscore_mean"),
        "expected_qscore": num("expected_qscore"),
        "b_factor_A2": num("b_factor_A2", reslog),
        "stagg_slope": num("stagg_slope_inv_d_per_ln_n", reslog),
        "hand": alignment.get("hand", "as given") if alignment else "as given",
    }


def comparison_table(results: list[dict], baseline: float | None = None) -> pd.DataFrame:
    """One row per dataset and cutoff, with gains against a baseline cutoff.

    Parameters
    ----------
    results : list of dict
        Validation results (as :func:`read_validation`).
    baseline : float, optional
        Cutoff the gains are measured from (the paper: 4.5); default the loosest (highest)
        cutoff of each dataset.

    Returns
    -------
    pd.DataFrame
        Columns of :data:`COLUMNS`. ``resolution_gain_A`` = baseline FSC0.5 resolution -
        this row's (positive: better), ``qscore_gain`` = this row's mean Q - baseline's
        (positive: better); NaN when the baseline is missing. Sorted by dataset, then
        cutoff from loosest to strictest.
    """
    rows, seen = [], {}
    for v in results:
        row = _row(v)
        key = (row["dataset"], row["cutoff"])
        if key in seen:
            raise InputError(v.get("_path"), f"dataset {key[0]!r} cutoff {key[1]} also given by {seen[key]}")
        seen[key] = v.get("_path")
        rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("resolution_gain_A", "qscore_gain")])
    if table.empty:
        return pd.DataFrame(columns=list(COLUMNS))
    for col in ("particles_kept", "particles_total"):
        table[col] = pd.array(table[col], dtype="Int64")
    gains_d, gains_q = [], []
    for _, grp in table.groupby("dataset", sort=False):
        base_cut = baseline if baseline is not None else grp["cutoff"].max()
        base = grp[np.isclose(grp["cutoff"], base_cut)]
        d0 = base["fsc05_model_A"].iloc[0] if len(base) else np.nan
        q0 = base["qscore_mean"].iloc[0] if len(base) else np.nan
        gains_d.append(d0 - grp["fsc05_model_A"])
        gains_q.append(grp["qscore_mean"] - q0)
    table["resolution_gain_A"] = pd.concat(gains_d)
    table["qscore_gain"] = pd.concat(gains_q)
    table = table.sort_values(["dataset", "cutoff"], ascending=[True, False], kind="stable").reset_index(drop=True)
    return table[list(COLUMNS)]


def _fmt(value, col: str) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)) or value is pd.NA:
        return "–"
    if col in ("particles_kept", "particles_total"):
        return f"{int(value):,}"
    if col == "cutoff":
        return f"{value:g}"
    if col == "fraction_kept":
        return f"{100 * value:.1f} %"
    if col in ("fsc05_model_A", "fsc0143_half_A"):
        return f"{value:.2f}"
    if col == "resolution_gain_A":
        return f"{value:+.2f}"
    if col in ("qscore_mean", "expected_qscore"):
        return f"{value:.3f}"
    if col == "qscore_gain":
        return f"{value:+.3f}"
    if col == "b_factor_A2":
        return f"{value:.0f}"
    if col == "stagg_slope":
        return f"{value:.4f}"
    return str(value)


def to_markdown(table: pd.DataFrame, baseline: float | None = None, warnings=None) -> str:
    """The table as GitHub-flavoured Markdown, with a note on the gains' baseline.

    ``warnings``: (dataset, step, line) out-of-domain warnings, listed under the table.
    """
    head = "| " + " | ".join(COLUMNS[c] for c in table.columns) + " |"
    rule = "|" + "|".join("---" if c in ("dataset", "hand") else "---:" for c in table.columns) + "|"
    body = ["| " + " | ".join(_fmt(row[c], c) for c in table.columns) + " |" for _, row in table.iterrows()]
    base = f"cutoff {baseline:g}" if baseline is not None else "the loosest cutoff of each dataset"
    note = (f"\nGains are measured from {base}: resolution gain = baseline FSC0.5 - this FSC0.5 "
            "(positive is better), Q-score gain = this mean Q - baseline mean Q.\n")
    text = "\n".join([head, rule, *body]) + "\n" + note
    if warnings:
        text += "\n## Warnings\n\n" + "".join(f"- {d}, {step}: {line}\n" for d, step, line in warnings)
    return text


def write_table(table: pd.DataFrame, out_dir: str | Path, baseline: float | None = None,
                stem: str = "comparison", warnings=None) -> dict:
    """Write ``comparison.csv`` and ``comparison.md`` (with ``warnings``) atomically; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out / f"{stem}.csv", out / f"{stem}.md"
    with atomic_path(csv_path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    write_text_atomic(md_path, to_markdown(table, baseline, warnings))
    return {"csv": csv_path, "markdown": md_path}
