"""scores.star / scores.csv / gallery, read back by starfile, by our reader and by RELION's tools."""

import os
import re
import shutil
import subprocess

import matplotlib.image
import numpy as np
import pandas as pd
import pytest
import starfile

from cryosift.cli import main as cli_main
from cryosift.errors import InputError
from cryosift.io import read_class_averages
from cryosift.scoring import (
    ModelConfig,
    build_network,
    read_scores,
    save_checkpoint,
    score_job,
)
from cryosift.scoring.gallery import gallery_order, write_gallery
from tests.test_scoring_data import disc_images, make_cryosparc_job, make_relion_job

RELION = shutil.which("relion_image_handler")
_skip_without_relion = pytest.mark.skipif(RELION is None, reason="RELION (relion_image_handler) is not installed")


def needs_relion(test):
    return pytest.mark.relion(_skip_without_relion(test))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A RELION project folder with a Class2D job, a cryoSPARC job and a model of ours."""
    root = tmp_path_factory.mktemp("project")
    make_relion_job(root, k=6, box=48, empty=(4,))
    make_cryosparc_job(root, k=5, box=40)
    save_checkpoint(root / "model.pt", build_network(seed=7), ModelConfig(), data="seeded random weights", seed=7)
    return root


@pytest.fixture(scope="module")
def scored(project):
    cwd = os.getcwd()
    os.chdir(project)  # RELION names files relative to the project folder
    try:
        return score_job("Class2D/job003", "model.pt", "Score/job004/scores.star")
    finally:
        os.chdir(cwd)


def test_scores_star_read_back_by_starfile_at_full_precision(project, scored):
    blocks = starfile.read(project / "Score/job004/scores.star", always_dict=True)
    assert list(blocks)[0] == "model_classes"
    t = blocks["model_classes"]
    table = scored.table
    assert t["rlnClassNumber"].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_array_equal(t["rlnParticleFigureOfMerit"].to_numpy(), table["score"].to_numpy())
    np.testing.assert_array_equal(t["rlnClassScore"].to_numpy(), table["class_score"].to_numpy())
    assert ((t["rlnClassScore"] >= 0) & (t["rlnClassScore"] <= 1)).all()
    np.testing.assert_allclose(t["rlnClassScore"], np.clip((5 - table["score"]) / 4, 0, 1))
    assert np.isinf(t["rlnEstimatedResolution"][3]) and t["rlnClassDistribution"][3] == 0
    assert t["rlnImageName"].tolist() == [f"{i:06d}@Class2D/job003/run_it025_classes.mrcs" for i in range(1, 7)]
    assert (t["rlnReferenceImage"] == t["rlnImageName"]).all()
    assert "grade decode" in blocks["cryosift"]["cryosiftModel"]
    again = read_scores(project / "Score/job004/scores.star")
    np.testing.assert_array_equal(again["score"], table["score"])


def test_scores_csv_holds_scores_masses_and_features(project, scored):
    csv = pd.read_csv(project / "Score/job004/scores.csv")
    assert list(csv.columns[:4]) == ["class", "score", "class_score", "mass_kDa"]
    for col in ("resolution_A", "distribution", "pixel_size_A", "mass_dmean_kDa", "mass_dmedian_kDa",
                "mass_dmode_kDa", "particles"):
        assert col in csv
    np.testing.assert_allclose(csv["score"], scored.table["score"], rtol=1e-9)
    np.testing.assert_allclose(csv["mass_kDa"], scored.table["mass_kDa"], rtol=1e-9)
    assert (csv["pixel_size_A"] == 2.0).all() and csv["particles"].sum() == 120


def test_read_scores_treats_scores_as_numbers(tmp_path):
    (tmp_path / "s.csv").write_text("class,score\n1,-0.25\n2,5.75\n3,2.5\n4,1e-1\n")
    s = read_scores(tmp_path / "s.csv")
    assert s["score"].tolist() == [-0.25, 5.75, 2.5, 0.1] and s["class"].tolist() == [1, 2, 3, 4]
    (tmp_path / "nan.csv").write_text("class,score\n1,2.0\n7,nan\n")
    with pytest.raises(InputError, match="nan.csv: class 7: score is NaN"):
        read_scores(tmp_path / "nan.csv")
    (tmp_path / "text.csv").write_text("class,score\n1,2.0\n3,good\n")
    with pytest.raises(InputError, match="class 3: score is 'good', not a number"):
        read_scores(tmp_path / "text.csv")
    (tmp_path / "dup.csv").write_text("class,score\n1,2.0\n1,3.0\n")
    with pytest.raises(InputError, match="class 1 is listed more than once"):
        read_scores(tmp_path / "dup.csv")


def test_gallery_is_sorted_best_first_with_one_panel_per_class(tmp_path):
    images, _, _ = disc_images(7, 32)
    table = pd.DataFrame({"class": [1, 2, 3, 4, 5, 6, 7], "score": [3.0, -0.5, 5.2, 3.0, 2.0, 4.5, 1.0]})
    assert gallery_order(table).tolist() == [1, 6, 4, 0, 3, 5, 2]  # ties (3.0) by class number
    write_gallery(tmp_path / "g.png", images, table, columns=3, panel_inches=1.0, dpi=40)
    png = matplotlib.image.imread(tmp_path / "g.png")
    assert png.shape[:2] == (round(3 * 1.25 * 40), round(3 * 1.06 * 40))  # 3 rows x 3 columns


def test_gallery_written_by_score_job(project, scored):
    png = matplotlib.image.imread(project / "Score/job004/scores.png")
    assert png.shape[:2] == (round(1 * 1.45 * 100), round(6 * 1.26 * 100))  # one row of six panels


def test_cli_scores_a_cryosparc_job_with_the_shipped_model_by_default(project, capsys):
    cwd = os.getcwd()
    os.chdir(project)
    try:
        assert cli_main(["score", "J12", "--model", "model.pt", "-o", "cs_scores", "--batch-size", "2",
                         "--no-gallery"]) == 0
        assert cli_main(["score", "J12", "-o", "shipped", "--no-gallery"]) == 0
        assert cli_main(["score", "J12", "--model", "default", "-o", "shipped2", "--no-gallery"]) == 0
        assert cli_main(["score", "J12", "--model", "missing.pt", "-o", "none"]) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "cryosift score: error: missing.pt: file not found" in err
    assert not (project / "none").exists()
    shipped = pd.read_csv(project / "shipped/scores.csv")
    assert shipped["class"].tolist() == [1, 2, 3, 4, 5] and np.isfinite(shipped["score"]).all()
    pd.testing.assert_frame_equal(shipped, pd.read_csv(project / "shipped2/scores.csv"))
    t = starfile.read(project / "cs_scores/scores.star", always_dict=True)["model_classes"]
    assert t["rlnImageName"].tolist() == [f"{i:06d}@J12/J12_020_class_averages.mrc:mrcs" for i in range(1, 6)]
    assert not (project / "cs_scores/scores.png").exists()
    csv = pd.read_csv(project / "cs_scores/scores.csv")
    assert csv["class"].tolist() == [1, 2, 3, 4, 5] and csv["distribution"].sum() == pytest.approx(1.0)


@needs_relion
def test_relion_reads_the_class_images_named_in_scores_star(project, scored):
    classes = read_class_averages(project / "Class2D/job003")
    out = subprocess.run([RELION, "--i", "Score/job004/scores.star", "--stats"], cwd=project,
                         capture_output=True, text=True, check=True).stdout
    means = [float(m) for m in re.findall(r"avg=\s*(\S+)", out)]
    np.testing.assert_allclose(means, classes.images.mean(axis=(1, 2)), rtol=1e-4)
    cs = subprocess.run([RELION, "--i", "000003@J12/J12_020_class_averages.mrc:mrcs", "--stats"], cwd=project,
                        capture_output=True, text=True, check=True).stdout
    assert "48 x 48" not in cs and "40 x 40 x 1 x 1" in cs


@needs_relion
def test_scores_star_survives_a_relion_read_write_round_trip(project, scored):
    # relion_image_handler reads the table with RELION's own STAR parser and writes it back
    subprocess.run([RELION, "--i", "Score/job004/scores.star", "--o", "rt", "--multiply_constant", "1"],
                   cwd=project, capture_output=True, text=True, check=True)
    back = project / "Score/job004/scores_rt.star"
    text = back.read_text()
    assert "_rlnParticleFigureOfMerit" in text and "_rlnClassScore" in text
    relion = read_scores(back)  # our reader on RELION's output
    assert relion["class"].tolist() == [1, 2, 3, 4, 5, 6]
    np.testing.assert_allclose(relion["score"], scored.table["score"], atol=1e-6)  # RELION prints 6 decimals
    t = starfile.read(back, always_dict=True)["model_classes"]
    np.testing.assert_allclose(t["rlnClassScore"], scored.table["class_score"], atol=1e-6)


def test_image_names_resolve_from_any_working_folder(project, tmp_path, monkeypatch):
    from cryosift.scoring import class_image_names

    monkeypatch.chdir(tmp_path)  # not the project folder: names become absolute paths that exist
    names = class_image_names(read_class_averages(project / "Class2D/job003"))
    stack = project / "Class2D/job003/run_it025_classes.mrcs"
    assert names == [f"{i:06d}@{stack.resolve()}" for i in range(1, 7)]
    monkeypatch.chdir(project)
    names = class_image_names(read_class_averages("Class2D/job003"))
    assert names[0] == "000001@Class2D/job003/run_it025_classes.mrcs"
