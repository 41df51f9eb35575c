"""cryosift review: the HTTP API through Flask's test client, the grades CSV, fine-tuning, bad input."""

import os
import threading
import time

import numpy as np
import pandas as pd
import pytest

from cryosift.cli import main as cli_main
from cryosift.errors import InputError
from cryosift.review import GradeBook, GradeKey, create_app, find_steps, load_step
from cryosift.review.app import band_of
from cryosift.scoring import load_checkpoint, read_scores, score_classes
from cryosift.scoring.inputs import load_classes
from cryosift.scoring.training.labels import read_grade_csv
from tests.review_data import CUTOFFS, make_results


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return make_results(tmp_path_factory.mktemp("review"))


@pytest.fixture
def client(results, tmp_path):
    app = create_app(results, grades=tmp_path / "grades.csv",
                     train_args=["--epochs", "1", "--batch-size", "2", "-j", "1", "--device", "cpu"],
                     score_args=["--device", "cpu", "-j", "1"])
    return app.test_client()


def grade(client, step, cls, value):
    return client.post("/api/grade", json={"step": step, "class": cls, "grade": value})


def test_steps_are_the_workflows_datasets_and_steps(results, client):
    info = client.get("/api/steps").get_json()
    assert [(s["dataset"], s["step"]) for s in info["steps"]] == [("ds1", "round1"), ("ds1", "final")]
    assert info["finetune"] == {"phase": "none"}
    assert client.get("/").status_code == 200
    for asset in ("review.js", "review.css"):  # shipped in the package, no CDN
        assert client.get(f"/static/{asset}").status_code == 200
    page = client.get("/").get_data(as_text=True)
    assert "http://" not in page and "https://" not in page


def test_classes_carry_scores_features_bands_and_the_final_selection(results, client):
    d = client.get("/api/classes?step=ds1/final").get_json()
    scores = read_scores(results / "score/ds1/final/scores.csv")
    assert d["cutoffs"] == list(CUTOFFS)
    assert [c["class"] for c in d["classes"]] == scores["class"].tolist()
    assert np.allclose([c["score"] for c in d["classes"]], scores["score"], rtol=1e-9, atol=0)  # CSV: 10 digits
    for c, (_, row) in zip(d["classes"], scores.iterrows()):
        assert c["particles"] == row["particles"] and isinstance(c["particles"], int)
        assert c["mass_kDa"] == pytest.approx(row["mass_kDa"]) and c["resolution_A"] == pytest.approx(row["resolution_A"])
        assert c["band"] == sum(c["score"] > cut for cut in CUTOFFS)
        # A class keeps all its particles at the cutoffs it passes, none at the others.
        assert c["kept"] == {f"{cut:g}": (row["particles"] if row["score"] <= cut else 0) for cut in CUTOFFS}
    # The totals are those the final selection wrote.
    import json

    summary = json.loads((results / "select/ds1/final/selection.json").read_text())
    assert d["kept_total"] == {k: v["particles_kept"] for k, v in summary["cutoffs"].items()}
    assert d["kept_source"].endswith("select/ds1/final/selection.json")
    assert d["bands"][0]["colour"] == "#1a9641" and d["bands"][-1]["upto"] is None
    rounds = client.get("/api/classes?step=ds1/round1").get_json()
    decided = json.loads((results / "select/ds1/round1/selection.json").read_text())["classes"]
    for c in rounds["classes"]:
        assert c["class"] in decided[c["round_status"]]


def test_band_of_uses_the_cutoffs_inclusively():
    assert [band_of(s, (2.5, 3.5, 4.5)) for s in (-1, 2.5, 2.51, 3.5, 4.5, 4.51, 9)] == [0, 0, 1, 1, 2, 3, 3]


def test_image_is_the_class_average(results, client):
    import io

    import matplotlib.image

    from cryosift.io.mrc import read_stack

    r = client.get("/api/image?step=ds1/final&class=3")
    assert r.status_code == 200 and r.mimetype == "image/png"
    png = matplotlib.image.imread(io.BytesIO(r.data))[..., 0]
    stack = read_stack(results.parent / "Class2D/job003/run_it025_classes.mrcs")[0]
    assert png.shape == stack[2].shape
    # Same picture: the PNG's grey levels follow the class average (contrast-stretched).
    assert np.corrcoef(png.ravel(), stack[2].ravel())[0, 1] > 0.95
    assert client.get("/api/image?step=ds1/final&class=99").status_code == 404


def test_grades_written_in_the_format_train_reads(results, client, tmp_path):
    assert grade(client, "ds1/final", 2, "b").get_json()["grade"] == "B"
    assert grade(client, "ds1/final", 5, 4).get_json()["grade"] == "4"
    assert grade(client, "ds1/final", 7, "E").get_json()["grade"] == "F"
    assert grade(client, "ds1/final", 2, "A").status_code == 200  # the last grade of a class wins
    table = pd.read_csv(tmp_path / "grades.csv", dtype=str)
    assert list(table.columns) == ["dataset", "step", "job", "class", "grade"]
    assert table["class"].tolist() == ["2", "5", "7"] and table["grade"].tolist() == ["A", "4", "F"]
    examples = read_grade_csv(tmp_path / "grades.csv")  # the fine-tuning reader, unchanged
    assert examples.table["class"].tolist() == [2, 5, 7] and examples.table["grade"].tolist() == [1.0, 4.0, 5.0]
    d = client.get("/api/classes?step=ds1/final").get_json()
    assert {c["class"]: c["grade"] for c in d["classes"] if c["grade"]} == {2: "A", 5: "4", 7: "F"}
    # Round 1 reused the same class averages: the grades are the class averages', shown there too.
    d1 = client.get("/api/classes?step=ds1/round1").get_json()
    assert {c["class"]: c["grade"] for c in d1["classes"] if c["grade"]} == {2: "A", 5: "4", 7: "F"}
    assert grade(client, "ds1/final", 5, None).get_json()["grade"] is None
    assert pd.read_csv(tmp_path / "grades.csv")["class"].tolist() == [2, 7]


@pytest.mark.parametrize("value", ["G", "6", "0", "2.5", "", "-1"])
def test_a_grade_outside_the_scale_is_refused_and_writes_nothing(client, tmp_path, value):
    grade(client, "ds1/final", 1, "C")
    before = (tmp_path / "grades.csv").read_bytes()
    r = grade(client, "ds1/final", 3, value)
    assert r.status_code == 400 and "outside the scale (A, B, C, D, F or 1-5)" in r.get_json()["error"]
    assert (tmp_path / "grades.csv").read_bytes() == before


def test_bad_requests_write_nothing(client, tmp_path):
    assert grade(client, "ds1/final", 99, "A").status_code == 404
    assert grade(client, "nope/final", 1, "A").status_code == 404
    assert client.post("/api/grade", json={"step": "ds1/final"}).status_code == 400
    assert grade(client, "ds1/final", "x", "A").status_code == 400
    assert not (tmp_path / "grades.csv").exists()


def test_two_writers_keep_every_grade(results, tmp_path):
    """Two tabs (or servers) grading at once: each write is a locked read-modify-write."""
    path = tmp_path / "grades.csv"
    books = [GradeBook(path), GradeBook(path)]

    def grade_many(book, classes):
        for c in classes:
            book.set(GradeKey("ds1", "final", "job.star", c), "B")

    threads = [threading.Thread(target=grade_many, args=(b, range(i, 200, 2))) for i, b in enumerate(books)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    table = pd.read_csv(path)
    assert sorted(table["class"]) == list(range(200))


def test_a_crash_while_writing_leaves_the_previous_grades(tmp_path, monkeypatch):
    book = GradeBook(tmp_path / "grades.csv")
    book.set(GradeKey("ds1", "final", "job.star", 1), "A")
    before = (tmp_path / "grades.csv").read_bytes()

    def dies(self, path, *args, **kwargs):
        open(path, "w").write("dataset,step,job,cl")  # half a file, then the process dies
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", dies)
    with pytest.raises(KeyboardInterrupt):
        book.set(GradeKey("ds1", "final", "job.star", 2), "B")
    assert (tmp_path / "grades.csv").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_folder_without_scores_is_refused(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no scores.star below this folder"):
        create_app(tmp_path / "empty")
    assert cli_main(["review", str(tmp_path / "empty")]) == 2
    assert "empty: no scores.star below this folder" in capsys.readouterr().err
    assert cli_main(["review", str(tmp_path / "missing")]) == 2
    assert not (tmp_path / "empty" / "review").exists()


def test_a_corrupt_scores_star_gets_a_clear_message_and_no_grade(results, tmp_path, capsys):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("review"))
    bad = copy / "score/ds1/round1/scores.star"
    bad.write_text("data_model_classes\nloop_\n_rlnReferenceImage #1\n_rlnClassNumber #2\n000001@x.mrcs 1\n")
    client = create_app(copy).test_client()
    r = client.get("/api/classes?step=ds1/round1")
    assert r.status_code == 400
    assert r.get_json()["error"] == f"{bad}: no data_model_classes loop with rlnParticleFigureOfMerit and " \
                                    "rlnReferenceImage (not a cryosift scores.star?)"
    assert grade(client, "ds1/round1", 1, "A").status_code == 400
    assert client.get("/api/classes?step=ds1/final").status_code == 200  # the other steps still open
    assert not (copy / "review").exists()
    # A lone damaged file is refused when the server starts.
    bad.write_text("data_model_classes\nloop_\n_rlnParticleFigureOfMerit #1\n_rlnReferenceImage #2\nnot-a-number\n")
    assert cli_main(["review", str(bad)]) == 2
    assert str(bad) in capsys.readouterr().err


def test_a_lone_scores_star_finds_its_job(results):
    (step,) = find_steps(results / "score/ds1/final/scores.star")
    table = load_step(step)
    assert table.job == (results.parent / "Class2D/job003/run_it025_model.star").resolve()
    assert table.kept_source == "scores"


def test_the_command_serves_the_page_on_localhost_only(results, tmp_path):
    import json
    import socket
    import subprocess
    import sys
    import urllib.request

    with socket.socket() as s:  # a free port
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "cryosift", "review", str(results), "--port", str(port),
                             "--grades", str(tmp_path / "g.csv")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/steps", timeout=5) as r:
                    steps = json.loads(r.read())
                break
            except OSError:
                assert proc.poll() is None and time.time() < deadline, "the server did not start"
                time.sleep(0.5)
        assert [s["key"] for s in steps["steps"]] == ["ds1/round1", "ds1/final"]
        import psutil  # installed with snakemake

        listening = [c for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN"]
        assert {c.laddr.ip for c in listening} == {"127.0.0.1"}
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert f"open http://localhost:{port}/" in out


def test_fine_tuning_from_the_page_shows_scores_before_and_after(results, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # grades named relative to the working folder, as on the command line
    client = create_app(results, grades="grades.csv",
                        train_args=["--epochs", "1", "--batch-size", "2", "-j", "1", "--device", "cpu"],
                        score_args=["--device", "cpu", "-j", "1"]).test_client()
    r = client.post("/api/finetune")
    assert r.status_code == 400 and "no grades yet" in r.get_json()["error"]
    for cls, g in ((1, "A"), (4, "F"), (6, "C")):
        assert grade(client, "ds1/final", cls, g).status_code == 200
    r = client.post("/api/finetune")
    assert r.status_code == 202 and r.get_json()["phase"] == "training"
    assert client.post("/api/finetune").status_code == 400  # one run at a time
    deadline = time.time() + 240
    while (status := client.get("/api/finetune").get_json())["phase"] in ("training", "rescoring"):
        assert time.time() < deadline, status
        time.sleep(0.5)
    assert status["phase"] == "done", status
    run = tmp_path / "finetune" / status["run"]
    assert "epoch 1/1" in (run / "train.log").read_text()
    rows = status["result"]["classes"]
    assert [(r["class"], r["grade"]) for r in rows] == [(1, "A"), (4, "F"), (6, "C")]
    before = read_scores(results / "score/ds1/final/scores.star").set_index("class")["score"]
    assert [r["before"] for r in rows] == pytest.approx([before[1], before[4], before[6]], abs=1e-12)
    # "After" is the fine-tuned model's score of the same class averages.
    model = load_checkpoint(run / "model.pt")
    cwd = os.getcwd()
    os.chdir(results.parent)
    try:
        after = score_classes(load_classes("Class2D/job003"), model).set_index("class")["score"]
    finally:
        os.chdir(cwd)
    assert [r["after"] for r in rows] == pytest.approx([after[1], after[4], after[6]], abs=1e-5)
    assert status["result"]["mean_abs_diff_after"] == pytest.approx(
        np.mean([abs(r["after"] - r["grade_value"]) for r in rows]))
    assert model.config.provenance["fine_tuned_from"].endswith("default.pt")


def test_rescored_fine_tuning_runs_are_not_listed_as_steps(results, tmp_path):
    import shutil

    copy = tmp_path / "results"
    shutil.copytree(results, copy, ignore=shutil.ignore_patterns("review"))
    run = copy / "review/finetune/run001/scores/1"
    run.mkdir(parents=True)
    shutil.copy(copy / "score/ds1/final/scores.star", run / "scores.star")
    steps = create_app(copy).test_client().get("/api/steps").get_json()["steps"]
    assert [s["key"] for s in steps] == ["ds1/round1", "ds1/final"]


def test_two_pages_on_one_grades_file_keep_both_sets_of_grades(results, tmp_path):
    """Two tabs, or two servers, grading the same results: neither overwrites the other's grades."""
    first, second = (create_app(results, grades=tmp_path / "grades.csv").test_client() for _ in range(2))
    assert grade(first, "ds1/final", 1, "A").status_code == 200
    assert grade(second, "ds1/final", 2, "D").status_code == 200  # the second page never read class 1
    assert grade(first, "ds1/final", 3, "B").status_code == 200
    assert grade(second, "ds1/final", 1, "C").status_code == 200  # the last grade of a class wins
    shown = {c["class"]: c["grade"] for c in first.get("/api/classes?step=ds1/final").get_json()["classes"]}
    assert {k: v for k, v in shown.items() if v} == {1: "C", 2: "D", 3: "B"}


def test_a_grades_file_that_is_not_one_is_left_alone(client, tmp_path):
    (tmp_path / "grades.csv").write_text("image,score\n000001@x.mrcs,2\n")
    r = grade(client, "ds1/final", 1, "A")
    assert r.status_code == 400
    assert r.get_json()["error"] == f"{tmp_path / 'grades.csv'}: no dataset, step, job, class, grade column " \
                                    "(a grades CSV has dataset, step, job, class, grade)"
    assert (tmp_path / "grades.csv").read_text() == "image,score\n000001@x.mrcs,2\n"
