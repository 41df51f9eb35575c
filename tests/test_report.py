"""`cryosift report`: comparison table across datasets and cutoffs, and the paper-style figures."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from cryosift.cli import main as cli_main
from cryosift.report import comparison_table, read_validation, to_markdown
from cryosift.validate import fit_reslog

# (dataset, cutoff): (kept, FSC0.5 Å, mean Q, ResLog B Å²)
NUMBERS = {
    ("aldolase", 4.5): (80000, 6.0, 0.30, 180.0),
    ("aldolase", 3.5): (50000, 4.5, 0.42, 120.0),
    ("aldolase", 2.5): (20000, 5.0, 0.40, 110.0),
    ("apof", 4.5): (90000, 3.0, 0.62, 80.0),
    ("apof", 3.5): (88000, 3.1, 0.60, 82.0),
}
TOTAL = {"aldolase": 100000, "apof": 95000}


def write_validation(folder, dataset, cutoff, kept, d, q, b, with_curve=True):
    folder.mkdir(parents=True, exist_ok=True)
    n = np.array([1000, 2000, 4000, 8000])
    res = 1.0 / np.sqrt(0.02 + 2.0 / b * np.log(n / 1000.0))
    fit = fit_reslog(n, res)
    files = {}
    if with_curve:
        shells = np.arange(33)
        freq = shells / (64 * 1.5)
        pd.DataFrame({"shell": shells, "frequency": freq, "resolution_A": 1 / np.maximum(freq, 1e-9),
                      "fsc": np.exp(-(freq * d) ** 2 * 0.7)}).to_csv(folder / "fsc_model.csv", index=False)
        files["fsc_model_csv"] = "fsc_model.csv"
    data = {"dataset": dataset, "cutoff": cutoff, "particles_kept": kept, "particles_total": TOTAL[dataset],
            "fraction_kept": kept / TOTAL[dataset], "fsc05_model_A": d, "fsc0143_half_A": d * 0.8,
            "qscore_mean": q, "expected_qscore": 0.3, "reslog": fit.to_dict(),
            "alignment": {"flipped": dataset == "apof", "hand": "flipped" if dataset == "apof" else "as reconstructed"},
            "files": files}
    (folder / "validation.json").write_text(json.dumps(data))
    return folder / "validation.json"


@pytest.fixture
def validations(tmp_path):
    root = tmp_path / "validate"
    for (ds, cut), (kept, d, q, b) in NUMBERS.items():
        write_validation(root / ds / f"cutoff{cut}", ds, cut, kept, d, q, b)
    return root


def test_table_gains_from_loosest_cutoff(validations):
    results = [read_validation(p) for p in sorted(validations.rglob("validation.json"))]
    table = comparison_table(results)
    assert table["dataset"].tolist() == ["aldolase"] * 3 + ["apof"] * 2
    assert table["cutoff"].tolist() == [4.5, 3.5, 2.5, 4.5, 3.5]
    ald = table[table.dataset == "aldolase"].set_index("cutoff")
    assert ald.loc[3.5, "resolution_gain_A"] == pytest.approx(1.5)  # 6.0 -> 4.5 Å
    assert ald.loc[2.5, "resolution_gain_A"] == pytest.approx(1.0)
    assert ald.loc[4.5, "resolution_gain_A"] == 0.0
    assert ald.loc[3.5, "qscore_gain"] == pytest.approx(0.12)
    assert ald.loc[3.5, "fraction_kept"] == pytest.approx(0.5)
    assert ald.loc[3.5, "b_factor_A2"] == pytest.approx(120.0)
    apof = table[table.dataset == "apof"].set_index("cutoff")
    assert apof.loc[3.5, "resolution_gain_A"] == pytest.approx(-0.1)
    assert apof.loc[3.5, "hand"] == "flipped"
    # A fixed baseline that a dataset lacks leaves its gains empty.
    fixed = comparison_table(results, baseline=2.5)
    assert np.isnan(fixed[fixed.dataset == "apof"]["resolution_gain_A"]).all()
    ald_fixed = fixed[(fixed.dataset == "aldolase") & (fixed.cutoff == 3.5)]
    assert ald_fixed["resolution_gain_A"].iloc[0] == pytest.approx(0.5)
    md = to_markdown(table)
    assert "| aldolase | 3.5 | 50,000 | 100,000 | 50.0 % | 4.50 | +1.50 |" in md
    assert "+0.120" in md and "loosest cutoff" in md


def test_report_command_writes_table_and_figures(validations, tmp_path):
    out = tmp_path / "report"
    assert cli_main(["report", str(validations), "-o", str(out)]) == 0
    table = pd.read_csv(out / "comparison.csv")
    assert len(table) == 5 and table["resolution_gain_A"].notna().all()
    lines = (out / "comparison.md").read_text().splitlines()
    assert sum(line.startswith("| ") for line in lines) == 6  # header + five rows
    for name in ("fraction_kept", "resolution", "resolution_gain", "qscore", "qscore_gain", "reslog", "fsc_curves"):
        png, svg = out / "plots" / f"{name}.png", out / "plots" / f"{name}.svg"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name
        ET.parse(svg)  # well-formed SVG
    # The ResLog figure carries every B in its legend.
    svg = (out / "plots" / "reslog.svg").read_text()
    for b in (180, 120, 110, 80, 82):
        assert f"B = {b} Å" in svg


def test_summaries_fill_missing_counts_and_duplicates_are_refused(tmp_path):
    root = tmp_path / "v"
    p = write_validation(root / "a", "apof", 3.5, 88000, 3.1, 0.6, 80.0, with_curve=False)
    data = json.loads(p.read_text())
    data.update(particles_kept=None, particles_total=None, fraction_kept=None)
    p.write_text(json.dumps(data))
    summary = tmp_path / "apof.json"
    summary.write_text(json.dumps({"dataset": "apof", "particles": 95000, "cutoffs": {"3.5": {"particles": 88000}}}))
    out = tmp_path / "r"
    assert cli_main(["report", str(p), "--summaries", str(summary), "-o", str(out)]) == 0
    row = pd.read_csv(out / "comparison.csv").iloc[0]
    assert row["particles_kept"] == 88000 and row["fraction_kept"] == pytest.approx(88000 / 95000)
    write_validation(root / "b", "apof", 3.5, 88000, 3.1, 0.6, 80.0, with_curve=False)
    assert cli_main(["report", str(root), "-o", str(tmp_path / "r2")]) == 2
    assert cli_main(["report", str(tmp_path / "empty"), "-o", str(tmp_path / "r3")]) == 2
