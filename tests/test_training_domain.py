"""Opt-in training-domain options of the generator (issue 28): real structures, RELION-rendered
averages, many classes; and that their defaults leave the generator's output as it was."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from cryosift.errors import InputError
from cryosift.scoring.training.generate import (MIN_BOX_RATIO, GenerationSettings, draw_settings,
                                                 make_training_dataset)
from cryosift.scoring.training.render import RELION_MASK_EDGE_PX, relion_mask_weights, relion_render

GOLDEN = Path(__file__).parent / "data" / "training_golden"
# The tiny dataset of the golden files (tests/data/training_golden/README.md).
TINY = dict(particles=(160, 160), mass_kda=(60.0, 60.0), pixel_size=(3.0, 3.0), box=(40, 40), class_box=(32, 32),
            snr=(0.5, 0.5), junk_fraction=(0.3, 0.3), classes=(3, 3), iterations=3, graded_iterations=(2,))
TIMES = ("simulate_s", "classify_s")


def _tiny(folder: Path, index: int = 0, **options) -> tuple[pd.DataFrame, dict]:
    torch.set_num_threads(1)
    try:
        table = make_training_dataset(folder, index, 9, GenerationSettings(**{**TINY, **options}), device="cpu",
                                      threads=1)
    finally:
        torch.set_num_threads(2)
    return table, json.loads((folder / "settings.json").read_text())


# ---- defaults: the generator as it was -------------------------------------------------------

def test_default_draws_are_those_of_the_generator_before_the_options():
    golden = json.loads((GOLDEN / "draws.json").read_text())
    assert [draw_settings(i, 2025) for i in (0, 1, 2)] == golden
    assert "real_fraction" not in GenerationSettings().to_dict()  # settings.json keeps its keys


def test_default_tiny_dataset_is_that_of_the_generator_before_the_options(tmp_path):
    table, info = _tiny(tmp_path / "ds")
    golden_info = json.loads((GOLDEN / "settings.json").read_text())
    for k in TIMES:
        info.pop(k), golden_info.pop(k)
    assert info == golden_info
    assert json.dumps(info, indent=2) == json.dumps(golden_info, indent=2)
    golden = pd.read_csv(GOLDEN / "classes.csv")
    ours = pd.read_csv(tmp_path / "ds" / "classes.csv")
    assert list(ours.columns) == list(golden.columns)
    pd.testing.assert_frame_equal(ours, golden, check_exact=False, rtol=1e-5, atol=1e-7)


# ---- real structures -------------------------------------------------------------------------

def test_real_fraction_draws_entries_that_fit_and_leaves_pseudo_draws_alone():
    wide = dict(box=(64, 96), pixel_size=(0.8, 2.0), real_entries=("1S3X", "4V5D"), mass_kda=(40.0, 60.0))
    real = GenerationSettings(real_fraction=0.5, **wide)
    plain = GenerationSettings(**wide)
    kinds = []
    for i in range(12):
        d = draw_settings(i, 5, real)
        spec = d["spec"]
        if d["structure"].startswith("pdb:"):
            kinds.append("real")
            # the ribosome (~270 Å) cannot fit 96 px x 2 Å/px with 1.2 diameters across: never drawn
            assert d["structure"] == spec["structure"] == "pdb:1S3X"
            assert "mass_kda" not in spec and "shape" not in spec
            assert 64 <= spec["box"] <= 96 and spec["box"] % 2 == 0
            assert 0.8 <= spec["pixel_size"] <= 2.0
            assert spec["box"] * spec["pixel_size"] >= MIN_BOX_RATIO * d["diameter_A"] - 1e-6
            assert d["classify"]["particle_diameter"] <= spec["box"] * spec["pixel_size"]
        else:
            kinds.append("pseudo")
            assert d == draw_settings(i, 5, plain)  # its own random stream: pseudo draws unchanged
    assert 2 <= kinds.count("real") <= 10
    assert draw_settings(3, 5, real) == draw_settings(3, 5, real)


def test_no_entry_that_fits_is_one_clear_error():
    s = GenerationSettings(real_fraction=1.0, box=(64, 64), pixel_size=(1.0, 1.0), real_entries=("4V5D",))
    with pytest.raises(InputError, match="no real structure among 4V5D fits a 64 px box"):
        draw_settings(0, 1, s)


def test_a_real_structure_dataset_names_its_entry(tmp_path):
    table, info = _tiny(tmp_path / "real", real_fraction=1.0, real_entries=("1S3X",), pixel_size=(2.5, 4.0),
                        box=(32, 64))
    assert info["structure"] == info["spec"]["structure"] == "pdb:1S3X"
    assert info["generation"]["real_fraction"] == 1.0 and info["generation"]["real_entries"] == ["1S3X"]
    assert set(table["structure"]) == {"pdb:1S3X"}
    # the simulator's own diameter (its check that the particle fits) agrees with the drawn one
    assert info["particle_diameter_A"] == pytest.approx(info["diameter_A"], abs=0.5)
    assert info["spec"]["box"] * info["spec"]["pixel_size"] >= MIN_BOX_RATIO * info["particle_diameter_A"] - 0.5
    assert table.loc[table["final"], "members"].sum() == 160


# ---- RELION-rendered averages ----------------------------------------------------------------

def test_relion_render_keeps_the_inside_and_flattens_the_outside():
    rng = np.random.default_rng(0)
    box, apix, diameter = 48, 2.0, 60.0  # radius 15 px
    stack = rng.normal(0.3, 1.0, (4, box, box)).astype(np.float32)
    out = relion_render(stack, apix, diameter)
    c = np.arange(box) - box // 2
    r = np.hypot(c[:, None], c[None, :])
    inside, outside = r <= 15.0, r >= 15.0 + RELION_MASK_EDGE_PX
    assert np.array_equal(out[:, inside], stack[:, inside])
    w = relion_mask_weights(box, 15.0)
    for k in range(4):
        flat = out[k, outside]
        assert np.ptp(flat) < 1e-5
        expected = float((stack[k].astype(np.float64) * w).sum() / w.sum())
        assert flat[0] == pytest.approx(expected, abs=1e-5)
        assert abs(expected - 0.3) < 0.1  # the background's own mean, not zero
    ring = (r > 16.0) & (r < 19.0)  # in the cosine edge: between the image and the background
    assert 0.0 < w[ring].min() and w[ring].max() < 1.0
    assert w[r == 15.0 + 2.5].round(6).tolist() == [0.5] * int((r == 17.5).sum())


def test_relion_averages_and_many_classes_in_a_tiny_dataset(tmp_path):
    table, info = _tiny(tmp_path / "rel", averages="relion", classes=(12, 12))
    assert info["generation"]["averages"] == "relion" and info["classify"]["classes"] == 12
    stacks = np.load(tmp_path / "rel" / "averages.npz")
    final = stacks["it003"]
    box = final.shape[-1]
    radius = info["classify"]["particle_diameter"] / 2.0 / (3.0 * 40 / 32)  # classification px: 3 Å/px x 40/32
    c = np.arange(box) - box // 2
    r = np.hypot(c[:, None], c[None, :])
    outside = r >= radius + RELION_MASK_EDGE_PX
    assert outside.sum() > 0
    assert np.ptp(final[:, outside], axis=1).max() < 1e-5  # flat beyond the soft edge
    inside = r <= radius - 1
    assert (final[:, inside].std(axis=1) > 1e-4).sum() >= (table.loc[table["final"], "members"] > 0).sum()
    # 12 classes of 160 particles: few-member classes occur, as in real jobs with K 50-100
    fin = table[table["final"]]
    assert len(fin) == 12 and fin["members"].sum() == 160 and fin["members"].min() <= 8


def test_class_range_is_a_setting():
    s = GenerationSettings(classes=(50, 100), mass_kda=(40.0, 60.0))  # small pseudo-proteins: quick draws
    ks = [draw_settings(i, 4, s)["classify"]["classes"] for i in range(8)]
    assert all(50 <= k <= 100 for k in ks) and len(set(ks)) > 1


@pytest.mark.parametrize("bad, message", [({"real_fraction": 1.5}, "real_fraction must be within 0-1"),
                                          ({"averages": "cryosparc"}, "averages must be one of builtin, relion"),
                                          ({"real_entries": ["XXXX"]}, "no structure 'XXXX'"),
                                          ({"classes": [20, 10]}, "classes must be a range")])
def test_bad_options_are_refused(bad, message):
    with pytest.raises(InputError, match=message):
        GenerationSettings.from_dict(bad)


def test_round_trip_of_options():
    s = GenerationSettings(real_fraction=0.3, real_entries=("1S3X",), averages="relion")
    assert GenerationSettings.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    assert math.isclose(GenerationSettings.from_dict({}).real_fraction, 0.0)


def test_drawn_diameter_of_a_membrane_entry_is_the_simulators():
    from cryosift.scoring.training.generate import entry_diameter_A
    from cryosift.simulate.spec import SimulationSpec
    from cryosift.simulate.structure import load_true_structure

    truth = load_true_structure(SimulationSpec(structure="pdb:4PGR", box=64, pixel_size=2.0))
    assert truth.micelle is not None
    assert entry_diameter_A("4PGR") == pytest.approx(truth.diameter_A, rel=0.02)
