"""Training the scoring model: grade mapping, training data, training with resume, fine-tuning, errors."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch

from cryosift.cli import main as cli_main
from cryosift.errors import InputError
from cryosift.io import write_star
from cryosift.scoring import ModelConfig, Preprocessing, load_checkpoint
from cryosift.scoring.job import SHIPPED_MODEL, resolve_model
from cryosift.scoring.training.data import augment, load_generated, split_by_structure
from cryosift.scoring.training.evaluate import background_texture, dataset_textures, quality, roc_auc, texture_bands
from cryosift.scoring.training.generate import GenerationSettings, draw_settings, make_training_dataset
from cryosift.scoring.training.grades import (
    alignment_grade,
    class_grade,
    grade_letter,
    letter_grade,
    purity_grade,
    resolution_grade,
)
from cryosift.scoring.training.labels import read_grade_csv, read_labels, read_selection
from cryosift.scoring.training import train as train_module
from cryosift.scoring.training.train import TrainSettings, learning_rate, predict_examples, state_path, train
from cryosift.scoring.training.truth import (alignment_consistency, class_measures, frc, frc_resolution,
                                             inplane_residuals)
from tests.test_scoring_data import make_relion_job

TINY = GenerationSettings(particles=(160, 160), mass_kda=(60.0, 60.0), pixel_size=(3.0, 3.0), box=(40, 40),
                          class_box=(32, 32), snr=(0.5, 0.5), junk_fraction=(0.3, 0.3), classes=(3, 3),
                          iterations=3, graded_iterations=(2,))


# ---- grade mapping -------------------------------------------------------------------------

def test_grades_are_monotonic_in_each_measure():
    pur = np.linspace(0.3, 1.0, 30)
    assert np.all(np.diff(class_grade(pur, 0.03, 10.0)) <= 1e-12)
    err = np.linspace(0.0, 0.4, 30)
    assert np.all(np.diff(class_grade(0.95, err, 10.0)) >= -1e-12)
    res = np.linspace(6.0, 60.0, 30)
    assert np.all(np.diff(class_grade(0.95, 0.03, res)) >= -1e-12)
    assert np.all(np.diff(class_grade(0.95, 0.03, res, diameter_A=150.0)) >= -1e-12)
    g = class_grade(np.full(30, 0.95), 0.03, 15.0, diameter_A=np.linspace(50, 400, 30))
    assert np.all(np.diff(g) <= 1e-12)  # bigger particle, same Å: more detail across it
    for partial in (resolution_grade(res), purity_grade(pur), alignment_grade(err)):
        assert partial.min() >= 1.0 and partial.max() <= 5.0


def test_known_cases_give_the_rubric_letter():
    pure, aligned = 1.0, 0.01
    assert grade_letter(class_grade(pure, aligned, 6.5)).tolist() == ["A"]
    assert grade_letter(class_grade(pure, aligned, 10.0)).tolist() == ["B"]
    assert grade_letter(class_grade(pure, aligned, 15.0)).tolist() == ["C"]
    assert grade_letter(class_grade(pure, aligned, 24.0)).tolist() == ["D"]
    assert grade_letter(class_grade(pure, aligned, 60.0)).tolist() == ["F"]
    assert grade_letter(class_grade(pure, 0.3, 8.0)).tolist() == ["F"]  # unaligned
    assert grade_letter(class_grade(0.6, aligned, 8.0)).tolist() == ["D"]  # 40 % junk


def test_pure_junk_and_empty_classes_grade_5():
    g = class_grade([0.0, np.nan, 0.05, 0.3], [np.nan, np.nan, 0.02, 0.02], [np.inf, np.nan, 8.0, 8.0])
    assert g[:2].tolist() == [5.0, 5.0]
    assert g[2] == pytest.approx(5.0) and g[3] >= 4.9


def test_letters_round_trip():
    assert [letter_grade(x) for x in "ABCDFab"] == [1.0, 2.0, 3.0, 4.0, 5.0, 1.0, 2.0]
    assert letter_grade("E") == 5.0
    with pytest.raises(ValueError):
        letter_grade("G")
    assert grade_letter([1.2, 2.6, 4.4, 4.6]).tolist() == ["A", "C", "D", "F"]


# ---- ground-truth measures ------------------------------------------------------------------

def test_alignment_consistency_of_perfect_and_random_classes():
    rng = np.random.default_rng(0)
    n = 40
    psi = rng.uniform(-180, 180, n)
    perfect = pd.DataFrame({"rot": 30.0, "tilt": 60.0, "psi": psi, "psi2d": psi + 17.0,
                            "ox": rng.normal(size=n), "oy": rng.normal(size=n)})
    perfect["ox2d"], perfect["oy2d"] = perfect["ox"] + 1.0, perfect["oy"] - 2.0
    c = alignment_consistency(perfect)
    assert c["inplane_err_deg"] < 1e-6 and c["view_spread_deg"] < 1e-6 and c["shift_err_A"] < 1e-6
    noisy = perfect.assign(psi2d=psi + 17.0 + rng.normal(scale=5.0, size=n))
    assert 3.0 < alignment_consistency(noisy)["inplane_err_deg"] < 7.0
    assert alignment_consistency(noisy)["misaligned"] == 0
    random = perfect.assign(psi2d=rng.uniform(-180, 180, n))
    assert alignment_consistency(random)["misaligned"] > 0.6 * n


def test_members_turned_away_are_misaligned_not_an_inplane_error():
    rng = np.random.default_rng(5)
    n = 60
    psi = rng.uniform(-180, 180, n)
    members = pd.DataFrame({"class": 1, "label": "true", "rot": 30.0, "tilt": 60.0, "psi": psi,
                            "psi2d": psi + 17.0 + rng.normal(scale=4.0, size=n), "ox": 0.0, "oy": 0.0,
                            "ox2d": rng.normal(scale=2.0, size=n), "oy2d": rng.normal(scale=2.0, size=n)})
    clean = alignment_consistency(members)
    flipped = members.copy()
    flipped.loc[:9, "psi2d"] += 180.0  # a sixth flipped, as a pseudo-symmetric view gets
    flipped.loc[:9, "ox2d"] += 40.0  # and placed far off: their shifts must not count either
    c = alignment_consistency(flipped)
    assert c["misaligned"] == 10 and clean["misaligned"] == 0
    assert abs(c["inplane_err_deg"] - clean["inplane_err_deg"]) < 1.0 and 2.0 < c["inplane_err_deg"] < 6.0
    assert c["shift_err_A"] < 1.2 * clean["shift_err_A"]
    m = class_measures(flipped, np.zeros((1, 8, 8)), [1], 3.0, 100.0, ideal=None)
    assert m.loc[0, "misaligned_members"] == 10 and m.loc[0, "purity"] == 1.0
    assert m.loc[0, "aligned_purity"] == pytest.approx(50 / 60)
    assert m.loc[0, "align_rel"] < 0.05  # a few degrees at the radius, not the RMS of the flips
    # the circular-mean residual would have put this class at 70+ degrees
    phi = np.radians(np.r_[np.full(10, 180.0), np.zeros(50)] + rng.normal(scale=4.0, size=60))
    plain = np.angle(np.exp(1j * (phi - np.angle(np.mean(np.exp(1j * phi))))))
    assert np.degrees(np.sqrt(np.mean(plain ** 2))) > 60
    assert np.degrees(np.sqrt(np.mean(inplane_residuals(phi)[10:] ** 2))) < 8


def test_partial_particles_count_as_particles_not_junk():
    rng = np.random.default_rng(3)
    labels = ["true"] * 6 + ["partial"] * 3 + ["ice_blob"] * 1 + ["partial"] * 2 + ["carbon_edge"] * 8
    n = len(labels)
    members = pd.DataFrame({"class": [1] * 10 + [2] * 10, "label": labels, "rot": 10.0, "tilt": 50.0,
                            "psi": rng.uniform(-180, 180, n), "ox": 0.0, "oy": 0.0, "ox2d": 0.0, "oy2d": 0.0})
    members["psi2d"] = members["psi"]
    m = class_measures(members, np.zeros((2, 8, 8)), [1, 2], 3.0, 100.0, ideal=None)
    assert m["true_members"].tolist() == [6, 0] and m["partial_members"].tolist() == [3, 2]
    assert m["purity"].tolist() == pytest.approx([0.9, 0.2])
    # the alignment is judged on the complete particles only: class 2 has none
    assert m.loc[0, "align_rel"] < 1e-6 and np.isnan(m.loc[1, "align_rel"])


def test_frc_resolution():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.normal(size=(32, 32)))
    curve = frc(a, a)
    assert np.allclose(curve, 1.0) and frc_resolution(curve, 32, 2.0) == 4.0  # Nyquist
    b = torch.from_numpy(rng.normal(size=(32, 32)))
    assert frc_resolution(frc(a, b), 32, 2.0) == np.inf


# ---- training data ---------------------------------------------------------------------------

def test_drawn_settings_are_reproducible_and_in_range():
    s = GenerationSettings(mass_kda=(40.0, 120.0))
    a, b = draw_settings(5, 11, s), draw_settings(5, 11, s)
    assert a == b and draw_settings(6, 11, s) != a
    for i in range(6):
        d = draw_settings(i, 3, s)
        spec, cls = d["spec"], d["classify"]
        assert s.box[0] <= spec["box"] <= s.box[1] and spec["box"] % 2 == 0
        assert spec["box"] * spec["pixel_size"] > d["diameter_A"]
        assert s.class_box[0] <= cls["box"] <= min(spec["box"], s.class_box[1]) or cls["box"] == spec["box"]
        assert s.snr[0] <= spec["snr"] <= s.snr[1] and sum(spec["junk"].values()) <= s.junk_fraction[1] + 1e-6
        assert s.classes[0] <= cls["classes"] <= s.classes[1]


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    """Two tiny graded training datasets (two structures)."""
    root = tmp_path_factory.mktemp("train")
    torch.set_num_threads(1)
    tables = [make_training_dataset(root / f"ds{i}", i, 9, TINY, device="cpu", threads=1) for i in (0, 1)]
    torch.set_num_threads(2)
    return root, tables


def test_generated_dataset_files_and_grades(tiny_sets):
    root, tables = tiny_sets
    t = tables[0]
    assert set(t["iteration"]) == {2, 3} and t["final"].sum() == 3
    assert {"grade", "letter", "purity", "align_rel", "frc_resolution_A", "resolution_A", "distribution",
            "true_members", "junk_members"} <= set(t.columns)
    assert t["grade"].between(1.0, 5.0).all()
    assert (t.loc[t["members"] == 0, "grade"] == 5.0).all()
    assert (t["members"] == t["true_members"] + t["partial_members"] + t["junk_members"]).all()
    particle_like = (t["true_members"] + t["partial_members"]) / t["members"]
    assert np.allclose(t["purity"].dropna(), particle_like[t["members"] > 0])
    aligned = (t["true_members"] - t["misaligned_members"] + t["partial_members"]) / t["members"]
    assert np.allclose(t["aligned_purity"].dropna(), aligned[t["members"] > 0])
    assert (t["misaligned_members"] <= t["true_members"]).all()
    final = t[t["final"]]
    assert final["members"].sum() == 160  # every particle sits in one class
    assert sorted(p.name for p in (root / "ds0").iterdir()) == ["averages.npz", "classes.csv", "settings.json"]
    again = make_training_dataset(root / "ds0", 0, 9, TINY)  # finished: left as is
    assert len(again) == len(t)


def test_cli_makes_a_dataset_in_two_stages_like_the_library(tiny_sets, tmp_path, capsys):
    root, tables = tiny_sets
    settings = json.dumps(TINY.to_dict())
    out = tmp_path / "ds1"
    assert cli_main(["train", "--generate", str(out), "--stage", "grade"]) == 2
    assert "run the simulate stage first" in capsys.readouterr().err
    assert cli_main(["train", "--generate", str(out), "--index", "1", "--seed", "9", "--settings", settings,
                     "--stage", "simulate", "-j", "1", "--device", "cpu"]) == 0
    assert (out / "job").is_dir() and not (out / "classes.csv").exists()
    assert cli_main(["train", "--generate", str(out), "--stage", "grade", "-j", "1"]) == 0
    got = pd.read_csv(out / "classes.csv")
    pd.testing.assert_frame_equal(got, tables[1], check_dtype=False)
    assert cli_main(["train", "--generate", str(out), "--settings", "{snr: [0.1, 0.2], colour: red}"]) == 2
    assert "unknown training-data setting(s) colour" in capsys.readouterr().err


def test_examples_and_structure_split(tiny_sets):
    root, _ = tiny_sets
    ex = load_generated([root])
    assert ex.images.shape == (len(ex), 1, 64, 64) and ex.features.shape == (len(ex), 6)
    assert torch.allclose(ex.target, 0.2 * (5.0 - torch.tensor(ex.table["grade"].to_numpy(), dtype=torch.float32)))
    assert len(set(ex.groups)) == 2
    tr, va = split_by_structure(ex.groups, 0.5, 0)
    assert len(tr) and len(va) and not set(ex.groups[tr]) & set(ex.groups[va])
    final = load_generated([root / "ds0"], "final")
    assert len(final) == 3
    empty = root / "empty"
    empty.mkdir(exist_ok=True)
    with pytest.raises(InputError, match="no finished training datasets"):
        load_generated([empty])
    with pytest.raises(InputError, match="not a training dataset folder"):
        load_generated([root / "ds0" / "missing"])


def test_augment_is_rotation_or_mirror():
    x = torch.arange(2 * 16).float().reshape(2, 1, 4, 4)
    y = augment(x, torch.Generator().manual_seed(0))
    for a, b in zip(x, y):
        variants = [torch.rot90(v, r, dims=(-2, -1)) for v in (a, a.flip(-1)) for r in range(4)]
        assert any(torch.equal(b, v) for v in variants)


# ---- training, resume, fine-tuning -----------------------------------------------------------

def test_smoke_training_resumes_to_the_same_model(tiny_sets, tmp_path):
    root, _ = tiny_sets
    small = Preprocessing(input_size=32)  # the smallest the network takes: fast
    ex = load_generated([root], preprocessing=small)
    tr, va = split_by_structure(ex.groups, 0.5, 0)
    s = TrainSettings(epochs=2, batch_size=8, seed=3)
    cfg = ModelConfig(preprocessing=small)
    full = train(ex.subset(tr), tmp_path / "a.pt", s, validation=ex.subset(va), config=cfg, device="cpu")
    assert len(full["history"]) == 2 and full["val_mse"] is not None
    # Interrupted after one epoch, then rerun: same weights as the uninterrupted run.
    train(ex.subset(tr), tmp_path / "b.pt", TrainSettings(epochs=1, batch_size=8, seed=3),
          validation=ex.subset(va), config=cfg, device="cpu")
    state = torch.load(state_path(tmp_path / "b.pt"), weights_only=True)
    assert state["epoch"] == 1 and "optimizer_state_dict" in state
    resumed = train(ex.subset(tr), tmp_path / "b.pt", s, validation=ex.subset(va), config=cfg, device="cpu")
    assert [h["train_mse"] for h in resumed["history"]] == pytest.approx([h["train_mse"] for h in full["history"]])
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for k, v in a.network.state_dict().items():
        assert torch.allclose(v, b.network.state_dict()[k]), k
    prov = a.config.provenance
    assert prov["seed"] == 3 and prov["recipe"]["lr"] == 1e-4 and prov["recipe"]["weight_decay"] == 1e-4
    assert a.config.decode == "grade" and a.config.preprocessing.input_size == 32 and a.config.views == 8
    # Validated as it scores: the MSE of the saved model over its eight views.
    val = ex.subset(va)
    eight = predict_examples(a.network, val, torch.device("cpu"), views=8)
    one = predict_examples(a.network, val, torch.device("cpu"), views=1)
    target = val.target.numpy()
    # (the same computation: equal to rounding; a barely trained network is nearly invariant
    # to rotations, so one view differs only in the sixth digit or so)
    assert np.mean((eight - target) ** 2) == pytest.approx(full["val_mse"], rel=1e-9)
    assert abs(np.mean((one - target) ** 2) - full["val_mse"]) > 1e-6 * full["val_mse"]
    # Without rotations and mirrors in training, the model scores the image as given.
    train(ex.subset(tr), tmp_path / "c.pt", TrainSettings(epochs=1, batch_size=8, seed=3, augment=False),
          config=cfg, device="cpu")
    assert load_checkpoint(tmp_path / "c.pt").config.views == 1
    # Other data: refuse to resume.
    with pytest.raises(InputError, match="other data or settings"):
        train(ex.subset(va), tmp_path / "b.pt", s, device="cpu")


def test_rendering_augmentation_trains_other_weights_and_is_recorded(tiny_sets, tmp_path):
    root, _ = tiny_sets
    small = Preprocessing(input_size=32)
    ex = load_generated([root], preprocessing=small)
    assert torch.isfinite(ex.diameter_px).all()  # generated datasets know their particle
    cfg = ModelConfig(preprocessing=small)
    train(ex, tmp_path / "plain.pt", TrainSettings(epochs=1, batch_size=8, seed=3), config=cfg, device="cpu")
    train(ex, tmp_path / "r.pt", TrainSettings(epochs=1, batch_size=8, seed=3, render=0.5), config=cfg, device="cpu")
    train(ex, tmp_path / "r2.pt", TrainSettings(epochs=1, batch_size=8, seed=3, render=0.5), config=cfg,
          device="cpu")
    plain, rendered, again = (load_checkpoint(tmp_path / n).network.state_dict() for n in ("plain.pt", "r.pt", "r2.pt"))
    assert any(not torch.equal(plain[k], rendered[k]) for k in plain)
    assert all(torch.equal(rendered[k], again[k]) for k in rendered)  # seeded: the same draws
    assert load_checkpoint(tmp_path / "r.pt").config.provenance["recipe"]["render"] == 0.5
    assert "render" not in load_checkpoint(tmp_path / "plain.pt").config.provenance["recipe"]


def test_cosine_schedule_decays_to_zero_and_counts_the_batches():
    s = TrainSettings(lr=2e-4, schedule="cosine")
    assert learning_rate(s, 0, 100) == pytest.approx(2e-4)
    assert learning_rate(s, 50, 100) == pytest.approx(1e-4)
    assert learning_rate(s, 99, 100) == pytest.approx(2e-4 * 0.5 * (1 + np.cos(np.pi * 0.99)))
    assert learning_rate(TrainSettings(lr=2e-4), 99, 100) == 2e-4
    for n, size in ((65, 32), (66, 32), (64, 32), (1, 32), (5, 8)):
        batches = list(train_module._batches(n, size, torch.Generator().manual_seed(0)))
        assert train_module._steps_per_epoch(n, size) == len(batches), (n, size)
    with pytest.raises(InputError, match="schedule"):
        train(None, "x.pt", TrainSettings(schedule="linear"))


def test_cosine_training_interrupted_resumes_to_the_same_model(tiny_sets, tmp_path, monkeypatch):
    root, _ = tiny_sets
    small = Preprocessing(input_size=32)
    ex = load_generated([root], preprocessing=small)
    tr, va = split_by_structure(ex.groups, 0.5, 0)
    s = TrainSettings(epochs=2, batch_size=8, seed=3, schedule="cosine")
    cfg = ModelConfig(preprocessing=small)
    full = train(ex.subset(tr), tmp_path / "a.pt", s, validation=ex.subset(va), config=cfg, device="cpu")
    # The run is killed while validating its second epoch: the state of epoch 1 stays.
    real, calls = train_module.predict_examples, []

    def dies_on_the_second_call(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "predict_examples", dies_on_the_second_call)
    with pytest.raises(KeyboardInterrupt):
        train(ex.subset(tr), tmp_path / "b.pt", s, validation=ex.subset(va), config=cfg, device="cpu")
    monkeypatch.setattr(train_module, "predict_examples", real)
    assert torch.load(state_path(tmp_path / "b.pt"), weights_only=True)["epoch"] == 1
    # The schedule spans the epochs: resuming with another number is refused.
    with pytest.raises(InputError, match="other data or settings"):
        train(ex.subset(tr), tmp_path / "b.pt", TrainSettings(epochs=3, batch_size=8, seed=3, schedule="cosine"),
              validation=ex.subset(va), config=cfg, device="cpu")
    resumed = train(ex.subset(tr), tmp_path / "b.pt", s, validation=ex.subset(va), config=cfg, device="cpu")
    assert [h["train_mse"] for h in resumed["history"]] == pytest.approx([h["train_mse"] for h in full["history"]])
    a, b = load_checkpoint(tmp_path / "a.pt"), load_checkpoint(tmp_path / "b.pt")
    for k, v in a.network.state_dict().items():
        assert torch.allclose(v, b.network.state_dict()[k]), k
    assert a.config.provenance["recipe"]["schedule"] == "cosine"
    # The schedule changes the training: a constant rate gives other weights.
    # (no validation: the last weights are saved)
    train(ex.subset(tr), tmp_path / "c.pt", TrainSettings(epochs=2, batch_size=8, seed=3, ema=0.0), config=cfg,
          device="cpu")
    train(ex.subset(tr), tmp_path / "d.pt", TrainSettings(epochs=2, batch_size=8, seed=3, ema=0.0, schedule="cosine"),
          config=cfg, device="cpu")
    c, d = load_checkpoint(tmp_path / "c.pt").network.state_dict(), load_checkpoint(tmp_path / "d.pt").network.state_dict()
    assert not all(torch.allclose(v, d[k]) for k, v in c.items() if v.is_floating_point())


@pytest.fixture
def relion_job(tmp_path):
    make_relion_job(tmp_path, k=6, box=40)
    return tmp_path / "Class2D/job003"


def test_fine_tune_from_csv_by_image_and_by_class(relion_job, tmp_path):
    root = tmp_path
    pd.DataFrame({"image": [f"{i:06d}@Class2D/job003/run_it025_classes.mrcs" for i in (1, 2, 5)],
                  "grade": ["A", "2.5", "F"]}).to_csv(root / "grades.csv", index=False)
    ex = read_grade_csv(root / "grades.csv")
    assert ex.table["class"].tolist() == [1, 2, 5] and ex.table["grade"].tolist() == [1.0, 2.5, 5.0]
    pd.DataFrame({"class": [3, 4], "grade": [4, 1]}).to_csv(root / "by_class.csv", index=False)
    ex2 = read_labels(root / "by_class.csv", classes=relion_job)
    assert ex2.table["class"].tolist() == [3, 4]
    out = root / "tuned.pt"
    cwd = os.getcwd()
    os.chdir(root)
    try:
        assert cli_main(["train", "--init", "default", "--labels", "grades.csv", "-o", str(out), "--epochs", "1",
                         "--batch-size", "2", "-j", "1", "--device", "cpu", "--metrics", "m.json"]) == 0
    finally:
        os.chdir(cwd)
    model = load_checkpoint(out)
    assert model.config.provenance["fine_tuned_from"].endswith("default.pt")
    assert model.config.views == 8  # trained on all eight rotations and mirrors, scored on them
    assert json.loads((root / "m.json").read_text())["examples"] == 3


def test_fine_tune_from_relion_selection(relion_job, tmp_path):
    write_star(tmp_path / "backup_selection.star", {"": pd.DataFrame({"rlnSelected": [1, 0, 1, 1, 0, 0]})})
    ex = read_selection(tmp_path / "backup_selection.star", relion_job)
    assert ex.table["grade"].tolist() == [2.0, 4.5, 2.0, 2.0, 4.5, 4.5]
    assert cli_main(["train", "--init", "default", "--labels", str(tmp_path / "backup_selection.star"),
                     "--classes", str(relion_job), "-o", str(tmp_path / "sel.pt"), "--epochs", "1",
                     "--batch-size", "3", "-j", "1", "--device", "cpu"]) == 0
    assert (tmp_path / "sel.pt").exists()


def test_bad_labels_name_the_file(relion_job, tmp_path, capsys):
    def fails(name, text, match, classes=relion_job):
        p = tmp_path / name
        p.write_text(text)
        with pytest.raises(InputError, match=match) as err:
            read_labels(p, classes)
        assert err.value.path == str(p)

    fails("a.csv", "image,score\n000001@x.mrcs,1\n", "no grade column")
    fails("b.csv", "class,grade\n1,7\n", "outside 1")
    fails("c.csv", "class,grade\n1,good\n", "neither a number")
    fails("d.csv", "class,grade\n9,1\n", "class 9 does not exist")
    fails("e.csv", "class,grade\n1,1\n1,2\n", "graded twice")
    fails("f.csv", "class,grade\n1,1\n", "give the class averages", classes=None)
    fails("g.csv", "grade\n1\n", "needs an image column")
    fails("h.star", "data_\nloop_\n_rlnSelected #1\n1\n0\n", "2 selection flags but")
    fails("i.star", "data_\nloop_\n_rlnClassNumber #1\n1\n", "no rlnSelected")
    fails("j.txt2", "x", "labels must be")
    assert cli_main(["train", "--labels", str(tmp_path / "missing.csv"), "-o", str(tmp_path / "x.pt")]) == 2
    assert "missing.csv: file not found" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(tmp_path), "-o", str(tmp_path / "x.pt")]) == 2
    assert "no finished training datasets" in capsys.readouterr().err


# ---- evaluation ------------------------------------------------------------------------------

def test_quality_metrics():
    assert roc_auc([3, 4, 5], [1, 2]) == 1.0 and roc_auc([1], [1]) == 0.5
    t = pd.DataFrame({"grade": [1.0, 2.0, 3.0, 5.0, 5.0], "score": [1.1, 2.2, 2.9, 4.8, 5.2],
                      "purity": [1.0, 0.95, 0.9, 0.1, np.nan], "true_members": [50, 40, 30, 2, 0],
                      "junk_members": [0, 2, 3, 20, 0], "partial_members": [0, 4, 0, 4, 0], "final": True,
                      "dataset": "d"})
    t["target"] = 0.2 * (5 - t["grade"])
    t["network_output"] = 0.2 * (5 - t["score"])
    q = quality(t)
    assert q["spearman"] > 0.95 and q["auc"] == 1.0
    assert q["selection"]["true_kept"] == pytest.approx(120 / 122) and q["selection"]["junk_removed"] == pytest.approx(20 / 25)
    assert q["selection"]["partial_kept"] == pytest.approx(0.5)


# ---- the shipped model -----------------------------------------------------------------------

def test_shipped_model_is_the_default_and_documented():
    model = resolve_model(None)
    assert model.source == SHIPPED_MODEL and resolve_model("default").source == SHIPPED_MODEL
    assert model.config.decode == "grade" and model.config.preprocessing.input_size == 64
    assert model.config.views == 8
    prov = model.config.provenance
    assert prov["recipe"]["lr"] == 1e-4 and prov["recipe"]["batch_size"] == 32 and "seed" in prov
    card = (SHIPPED_MODEL.parent / "MODEL_CARD.md").read_text()
    assert "Spearman" in card and "0.0055" in card


def test_shipped_model_scores_a_clean_class_better_than_empty_ice():
    from cryosift.engines.builtin.grids import soft_circle
    from cryosift.io.models import ClassAverages
    from cryosift.io.rotations import euler_to_matrix
    from cryosift.projection import Projector
    from cryosift.scoring import score_classes
    from cryosift.scoring.training.truth import fourier_crop_volume
    from cryosift.simulate import SimulationSpec, load_true_structure

    truth = load_true_structure(SimulationSpec(mass_kda=150.0, box=96, pixel_size=2.0, seed=4))
    box, apix = 48, 4.0
    proj = Projector(torch.from_numpy(fourier_crop_volume(truth.volume, box)))
    clean = proj.project(torch.from_numpy(euler_to_matrix([0.0, 40.0, 120.0], [90.0, 30.0, 70.0], [0.0, 10.0, 50.0])))
    clean = clean / clean.std(dim=(1, 2), keepdim=True)
    rng = np.random.default_rng(0)
    ice = torch.nn.functional.avg_pool2d(torch.from_numpy(rng.normal(size=(3, 1, box, box))).float(), 9, 1, 4)[:, 0]
    ice = ice / ice.std(dim=(1, 2), keepdim=True)
    images = torch.cat([clean, ice]) + 0.05 * torch.from_numpy(rng.normal(size=(6, box, box))).float()
    images = (images * soft_circle(box, 0.4 * box, 3.0)).numpy()
    classes = ClassAverages(images=images, pixel_size=apix, class_numbers=np.arange(1, 7),
                            resolution=np.array([12.0, 12.0, 13.0, 30.0, 35.0, 40.0]),
                            distribution=np.array([0.25, 0.2, 0.2, 0.15, 0.1, 0.1]),
                            particle_count=np.array([250, 200, 200, 150, 100, 100]), source=None, engine="stack")
    scores = score_classes(classes, resolve_model(None))["score"].to_numpy()
    assert scores[:3].max() < scores[3:].min()
    assert scores[:3].mean() < 3.5 < scores[3:].mean()


def _blob(box, cy, cx, sigma, amplitude=1.0):
    y, x = np.mgrid[:box, :box]
    return amplitude * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * sigma**2))


def _disc(box, cy, cx, r, amplitude=1.0):
    y, x = np.mgrid[:box, :box]
    return amplitude * np.clip(r - np.hypot(y - cy, x - cx) + 0.5, 0.0, 1.0)


def test_background_texture_rises_with_blotches_beside_the_particle():
    box, radius = 64, 26.0
    particle = _disc(box, 32, 30, 7) + _disc(box, 32, 39, 5, 0.8)  # two domains
    clean = background_texture(particle, radius)
    assert clean < 0.01  # only the smoothed particle's edge
    blotches = sum(_blob(box, 32 + 18 * np.sin(a), 32 + 18 * np.cos(a), 2.5, 0.15) for a in (0.5, 2.2, 4.0))
    textured = background_texture(particle + blotches, radius)
    stronger = background_texture(particle + 2 * blotches, radius)
    assert 0.03 < textured < 0.06 and stronger == pytest.approx(2 * textured, rel=0.05)
    assert background_texture(5.0 * (particle + blotches), radius) == pytest.approx(textured)  # a ratio
    # blotches outside the mask are not the class's background
    outside = sum(_blob(box, 32 + 30 * np.sin(a), 32 + 30 * np.cos(a), 1.0, 0.3) for a in (0.5, 2.2, 4.0))
    assert background_texture(particle + outside, radius) == pytest.approx(clean, abs=2e-3)
    assert np.isnan(background_texture(np.zeros((box, box)), radius))
    assert np.isnan(background_texture(np.full((box, box), np.nan), radius))
    assert np.isnan(background_texture(_blob(box, 32, 32, 20.0), radius))  # particle fills the mask


def test_texture_of_generated_classes_and_error_bands(tiny_sets, tmp_path):
    root, tables = tiny_sets
    tex = dataset_textures(root / "ds0")
    t = tables[0]
    assert len(tex) == len(t) and (tex[["dataset", "iteration", "class"]].to_numpy() ==
                                   t[["dataset", "iteration", "class"]].to_numpy()).all()
    filled = t["members"].to_numpy() > 0
    assert np.isfinite(tex["background_texture"].to_numpy()[filled]).any()
    assert (tex["background_texture"].dropna() >= 0).all()
    # a dataset whose settings lack the mask is named, not a traceback
    broken = tmp_path / "ds9"
    broken.mkdir()
    for name in ("classes.csv", "averages.npz"):
        (broken / name).write_bytes((root / "ds0" / name).read_bytes())
    (broken / "settings.json").write_text("{}")
    with pytest.raises(InputError, match=r"ds9/settings.json: no classification mask diameter"):
        dataset_textures(broken)
    (broken / "settings.json").unlink()
    with pytest.raises(InputError, match=r"ds9/settings.json: unreadable"):
        dataset_textures(broken)
    # bands: equal counts, cleanest first, bias = mean(score - grade), MSE on the [0, 1] target
    n = 40
    table = pd.DataFrame({"aligned_purity": np.r_[np.ones(n), 0.2], "grade": np.r_[np.full(n, 2.0), 5.0],
                          "background_texture": np.r_[np.linspace(0.01, 0.2, n), 0.3]})
    table["score"] = table["grade"] + np.r_[np.zeros(n // 2), np.ones(n // 2), 0.0]  # the textured half worse
    bands = texture_bands(table, bands=4)
    assert list(bands["classes"]) == [10, 10, 10, 10]  # the junk class is left out
    assert bands["bias"].tolist() == pytest.approx([0.0, 0.0, 1.0, 1.0])
    assert bands["mse"].tolist() == pytest.approx([0.0, 0.0, 0.04, 0.04])
    assert bands["texture"].is_monotonic_increasing


def test_score_quality_benchmark_scores_the_shipped_model_on_graded_datasets(tiny_sets, tmp_path, capsys):
    import importlib.util
    spec = importlib.util.spec_from_file_location("score_quality", os.path.join(os.path.dirname(__file__), "..",
                                                                                   "benchmarks", "score_quality.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root, tables = tiny_sets
    out_json, out_csv = tmp_path / "q.json", tmp_path / "q.csv"
    assert bench.main(["--data", str(root), "--model", "default", "--json", str(out_json), "--csv", str(out_csv)]) == 0
    assert "MSE on [0, 1] target" in capsys.readouterr().out
    metrics = json.loads(out_json.read_text())
    graded = sum(int(t["grade"].notna().sum()) for t in tables)
    assert metrics["overall"]["classes"] == graded
    scored = pd.read_csv(out_csv)
    assert len(scored) == graded and scored["score"].between(0.0, 6.0).all()
    # every scored class got its texture from its own average
    expected = pd.concat([dataset_textures(root / f"ds{i}") for i in (0, 1)], ignore_index=True)
    merged = scored.merge(expected, on=["dataset", "iteration", "class"], suffixes=("", "_expected"))
    assert len(merged) == graded
    assert np.allclose(merged["background_texture"], merged["background_texture_expected"], equal_nan=True)
    mse = float(np.mean((scored["network_output"] - scored["target"]) ** 2))
    assert metrics["overall"]["mse"] == pytest.approx(mse)
