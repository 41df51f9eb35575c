"""Log lines: ISO 8601 time stamps on every line a command logs, and progress per iteration
of the long steps (ab initio, RELION's iterations, the wait for a CryoSPARC job)."""

from __future__ import annotations

import logging
import re
import warnings
from datetime import datetime, timedelta

import pytest

from cryosift.cli import main as cli_main
from cryosift.engines.relion.runner import iteration_progress
from cryosift.logs import ProgressLog, elapsed, log_to_stderr
from cryosift.simulate import preset, simulate_dataset
from tests.test_cryosparc_adapter import stub  # noqa: F401 (the adapter over cryosparc-tools' own classes)

STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d) (DEBUG|INFO|WARNING|ERROR) \S")


def stamped(lines):
    """The parsed time stamps of ``lines``; fails on a line without one."""
    times = []
    for line in lines:
        m = STAMP.match(line)
        assert m, f"log line without an ISO 8601 time stamp: {line!r}"
        times.append(datetime.fromisoformat(m[1]))
    return times


def test_log_lines_carry_iso_time_stamps_and_warnings_are_one_line(capsys):
    before = datetime.now().astimezone().replace(microsecond=0)
    with log_to_stderr():
        logging.getLogger("cryosift.test").info("first")
        logging.getLogger("cryosift.test").debug("hidden below INFO")
        warnings.warn("a library's\nwarning", UserWarning)
    logging.getLogger("cryosift.test").warning("after the command: not ours to print")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    times = stamped(lines)
    assert all(before <= t <= before + timedelta(seconds=5) for t in times)
    assert times[0].utcoffset() is not None  # the offset makes lines of different nodes comparable
    assert lines[0].endswith(" INFO first")
    assert re.search(r" WARNING UserWarning: a library's warning \(test_logging\.py:\d+\)$", lines[1])
    with log_to_stderr(debug=True):
        logging.getLogger("cryosift.test").debug("shown with --debug")
    assert capsys.readouterr().err.rstrip().endswith(" DEBUG shown with --debug")


def test_progress_lines(caplog):
    caplog.set_level(logging.INFO)
    progress = ProgressLog(logging.getLogger("cryosift.test"), "work", 4)
    for i in range(4):
        progress.step(f"item {i + 1}")
    assert [r.getMessage() for r in caplog.records] == [
        f"work {i}/4 ({25 * i} %), 0 s: item {i}" for i in range(1, 5)]
    caplog.clear()
    throttled = ProgressLog(logging.getLogger("cryosift.test"), "chunks", 3000, every=3600.0)
    for _ in range(6):
        throttled.step(n=500)
    # Throttled: the first and the last chunk only.
    assert [r.getMessage() for r in caplog.records] == ["chunks 500/3000 (17 %), 0 s", "chunks 3000/3000 (100 %), 0 s"]
    assert (elapsed(42.4), elapsed(725), elapsed(3 * 3600 + 7 * 60 + 5)) == ("42 s", "12 min 5 s", "3 h 7 min")


def test_relion_iteration_lines_are_recognised():
    assert iteration_progress(" Expectation iteration 3 of 25\n") == (3, 25)
    assert iteration_progress(" Expectation iteration 12") == (12, None)  # auto-refine gives no total
    assert iteration_progress(" Stochastic Gradient Descent iteration 40 of 200") == (40, 200)
    assert iteration_progress(" Estimating accuracies in the orientational assignment ... ") is None
    assert iteration_progress(" Maximization ...") is None


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """200 true particles, 40 px at 3 Å/px, SNR 1."""
    return simulate_dataset(preset("tiny", junk={}, n_particles=200, snr=1.0, seed=3), tmp_path_factory.mktemp("sim"))


def test_abinit_logs_every_iteration_with_a_time_stamp(small, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = cli_main(["abinit", str(small.particles_star), "-o", "out", "--seed", "4", "--final-resolution", "20",
                     "--iterations", "1", "2", "1", "--initial-batch", "100", "--final-batch", "200",
                     "--mask-diameter", "100", "--starts", "2", "--select-resolution", "30", "--device", "cpu"])
    assert code == 0
    lines = capsys.readouterr().err.splitlines()
    times = stamped(lines)
    assert times == sorted(times)
    progress = [line for line in lines if re.search(r" INFO ab initio \d+/\d+ ", line)]
    import pandas as pd

    history = pd.read_csv(tmp_path / "out" / "abinit_log.csv")
    total = len(history)  # every start through the coarse iterations, then the selected one to the end
    assert total >= 5
    assert len(progress) == total
    for i, (line, row) in enumerate(zip(progress, history.itertuples()), start=1):
        assert f" ab initio {i}/{total} ({100 * i / total:.0f} %), " in line
        assert f": iteration {row.iteration} (start " in line
        assert f"{row.resolution_A:.1f} Å, {row.batch} particles" in line
    # The passes over all particles log their first and last chunk (and every 30 s between).
    n = 200
    for what in ("particles read", "final poses (particles)", "backprojected particles"):
        ends = [line for line in lines if f" INFO {what} " in line]
        assert ends and f" {what} {n}/{n} (100 %), " in ends[-1], what
    select = int((history["start"] == 1).sum())  # coarse iterations per start
    phases = ["start 1 of 2"] * select + ["start 2 of 2"] * select + ["selected"] * (total - 2 * select)
    assert all(phase in line for phase, line in zip(phases, progress))


@pytest.mark.skipif(__import__("shutil").which("relion_refine") is None, reason="RELION (relion_refine) not on PATH")
def test_relion_iterations_reach_the_log(tmp_path, caplog):
    from cryosift.engines import get_engine

    data = simulate_dataset(preset("tiny", box=32, pixel_size=4.0, n_particles=150, snr=0.5, junk={}), tmp_path / "sim")
    caplog.set_level(logging.INFO, logger="cryosift.engines.relion.runner")
    get_engine("relion", threads=2).classify2d(data.particles_star, tmp_path / "Class2D", iterations=3, classes=2,
                                               particle_diameter=110, psi_step=12, offset_range=3, offset_step=2,
                                               seed=1)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("relion_refine (")]
    assert [re.sub(r", \d.*$", "", line) for line in lines] == [
        f"relion_refine (2D classification): iteration {i} of 3 started" for i in (1, 2, 3)]
    assert "Expectation iteration 3 of 3" in (tmp_path / "Class2D" / "run.log").read_text()


def test_waiting_for_a_cryosparc_job_logs_its_status(stub, monkeypatch, caplog):
    """A job polled through cryosparc-tools' own JobController: one status line per report period."""
    from cryosift.engines.cryosparc import adapter as adapter_module

    adapter, api = stub
    api.jobs._new(type="class_2D", status="running")
    polls = {"n": 0}
    find_one = api.jobs.find_one

    def running_then_completed(project_uid, job_uid, /):
        polls["n"] += 1
        model = find_one(project_uid, job_uid)
        model.status = "completed" if polls["n"] > 4 else "running"
        return model

    monkeypatch.setattr(api.jobs, "find_one", running_then_completed)
    monkeypatch.setattr("cryosparc.controllers.job.sleep", lambda s: None)
    monkeypatch.setattr(adapter_module, "WAIT_REPORT_S", 0)
    caplog.set_level(logging.INFO, logger="cryosift.engines.cryosparc.adapter")
    assert adapter.wait("P3", "J1") == "completed"
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) >= 2 and all(re.fullmatch(r"P3 J1: running, waited \d+ s", line) for line in lines)
