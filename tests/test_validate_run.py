"""`cryosift validate`: a reconstruction of the wrong hand, off-centre and rotated, validated end to end."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cryosift.cli import main as cli_main
from cryosift.density import model_coordinates, read_model
from cryosift.io.mrc import write_map
from cryosift.validate import read_map_with_origin, validate_map
from cryosift.validate.modelmap import write_model
from tests.conftest import make_particle_set
from tests.test_validate_support import transformed_pair

BOX, APIX = 48, 2.5


@pytest.fixture(scope="module")
def reconstruction(tmp_path_factory):
    """A mirrored, moved, 8 Å, noisy map of a model, its half maps, and the model (in its own frame)."""
    d = tmp_path_factory.mktemp("rec")
    case = transformed_pair(40.0, BOX, APIX, seed=21, flipped=True, resolution=8.0)
    rng = np.random.default_rng(0)
    origin = np.array([100.0, -50.0, 20.0])  # the map's own header origin, as some programs write
    noise = 0.5 * case["moving"].std()
    halves = [case["moving"] + rng.normal(scale=noise * np.sqrt(2), size=case["moving"].shape) for _ in range(2)]
    write_map(d / "map.mrc", (halves[0] + halves[1]) / 2, APIX, origin_A=origin)
    write_map(d / "map_half1.mrc", halves[0], APIX, origin_A=origin)
    write_map(d / "map_half2.mrc", halves[1], APIX, origin_A=origin)
    write_model(d / "model.cif", case["structure"])
    return d, case, origin


def test_validate_fits_hand_and_model_and_writes_results(reconstruction, tmp_path):
    d, case, origin = reconstruction
    out = tmp_path / "val"
    res = validate_map(d / "map.mrc", d / "model.cif", out, half_maps=[d / "map_half1.mrc", d / "map_half2.mrc"],
                       particles=1200, total_particles=4800, dataset="toy", cutoff=3.5)
    assert json.loads((out / "validation.json").read_text()) == res
    assert res["dataset"] == "toy" and res["cutoff"] == 3.5 and res["fraction_kept"] == 0.25
    assert res["alignment"]["flipped"] is True and res["alignment"]["hand"] == "flipped"
    # The fitted model sits where the model really is in the hand-corrected map.
    fitted = model_coordinates(read_model(out / "model_fitted.cif"))
    truth = (model_coordinates(case["structure"]) - case["shift_A"]) @ case["rotation"] + origin + (BOX // 2) * APIX
    assert np.sqrt(((fitted - truth) ** 2).sum(axis=1).mean()) < 1.0
    corrected, apix, header_origin = read_map_with_origin(out / "map_hand_corrected.mrc")
    np.testing.assert_allclose(header_origin, origin)
    # An 8 Å (1/e) Gaussian-filtered map with mild noise: FSC 0.5 between 5 and 11 Å.
    assert 5.0 < res["fsc05_model_A"] < 11.0
    assert res["fsc05_model_masked_A"] <= res["fsc05_model_A"] + 0.5
    assert res["fsc0143_half_masked_A"] < res["fsc05_model_A"]
    curve = pd.read_csv(out / "fsc_model.csv")
    assert list(curve.columns[:4]) == ["shell", "frequency", "resolution_A", "fsc"] and len(curve) == BOX // 2 + 1
    assert curve["fsc"].iloc[2] > 0.9
    # Q-scores of an 8 Å map: low but clearly positive, near what EMDB maps at 8 Å give.
    assert 0.05 < res["qscore_mean"] < 0.6
    assert res["expected_qscore"] == pytest.approx(0.148, abs=0.12)
    residues = pd.read_csv(out / "qscore_residues.csv")
    assert len(residues) == sum(len(ch) for ch in case["structure"][0])
    assert res["atoms_scored"] == len(pd.read_csv(out / "qscore_atoms.csv"))
    model_map, _, model_origin = read_map_with_origin(out / "model_map.mrc")
    np.testing.assert_allclose(model_origin, origin)
    assert np.corrcoef(model_map.ravel(), corrected.ravel())[0, 1] > 0.8


def test_cli_without_model_reports_half_maps_and_reslog(reconstruction, tmp_path):
    d, _, _ = reconstruction
    pset_dir = tmp_path / "parts"
    pset_dir.mkdir()
    from cryosift.io import write_particles_star

    pset = make_particle_set(pset_dir, n=120, box=BOX, pixel_size=APIX)
    write_particles_star(pset_dir / "particles.star", pset)
    out = tmp_path / "val"
    code = cli_main(["validate", str(d / "map.mrc"), "--particles", str(pset_dir / "particles.star"),
                     "--total-particles", "480", "--reslog-sizes", "30", "60", "120", "--cutoff", "2.5",
                     "-o", str(out), "-j", "1"])
    assert code == 0
    res = json.loads((out / "validation.json").read_text())
    assert res["dataset"] == d.name and res["cutoff"] == 2.5
    assert res["particles_kept"] == 120 and res["fraction_kept"] == 0.25
    assert res["fsc0143_half_A"] is not None  # half maps found beside the map
    assert res["fsc05_model_A"] is None and res["qscore_mean"] is None and res["alignment"] is None
    assert [p["particles"] for p in res["reslog"]["points"]] == [30, 60, 120]
    assert (out / "reslog.png").stat().st_size > 1000 and (out / "reslog.svg").read_text().startswith("<?xml")
    assert len(pd.read_csv(out / "reslog.csv")) == 3


def test_bad_half_map_is_named(reconstruction, tmp_path, capsys):
    d, _, _ = reconstruction
    write_map(tmp_path / "small.mrc", np.zeros((32, 32, 32), np.float32), APIX)
    code = cli_main(["validate", str(d / "map.mrc"), "--half-maps", str(tmp_path / "small.mrc"),
                     str(d / "map_half2.mrc"), "--no-reslog", "-o", str(tmp_path / "v")])
    assert code == 2
    err = capsys.readouterr().err
    assert "small.mrc" in err and "32^3" in err
    assert not (tmp_path / "v" / "validation.json").exists()
