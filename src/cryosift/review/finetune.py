"""Fine-tuning from the review's grades as a background job, and the graded classes' scores before and after.

One run lives in ``<review>/finetune/runNNN/``: ``grades.csv`` (the grades it trained on, job
paths absolute), ``model.pt`` from ``cryosift train --init ... --labels grades.csv``,
``train.log``, one ``scores/<n>/scores.star`` per graded job rescored with the new model by
``cryosift score``, and ``status.json`` (phase, progress, result), written atomically at each
change so a reloaded page, or a restarted server, finds the run as it was. Both steps run as
the command line does, in a child process: a failed training leaves the server and the grades
untouched.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from cryosift.errors import InputError
from cryosift.io.atomic import atomic_path, write_text_atomic
from cryosift.review.grades import GradeBook, grade_value
from cryosift.scoring.outputs import read_scores

EPOCH_LINE = re.compile(r"epoch (\d+)/(\d+)")
#: Share of the progress bar given to training; rescoring the graded jobs takes the rest.
TRAIN_SHARE = 0.85


def _alive(pid) -> bool:
    """Whether another review server (that runs a fine-tuning of the same grades) still lives."""
    if not pid or pid == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError):
        return False
    return True


def _tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class FineTuner:
    """Runs one fine-tuning at a time from a grades CSV.

    Parameters
    ----------
    folder : str or Path
        Where the runs go (``runNNN`` below it).
    grades : GradeBook
        The review's grades.
    before : callable
        ``before(dataset, step) -> {class: score}``: the scores the review shows (the "before").
    init : str
        Model to start from (``default``: the shipped one; or a checkpoint).
    train_args, score_args : sequence of str
        More ``cryosift train`` options (``--epochs``, ``--device``, ...) and ``cryosift score``
        options (``--device``).
    """

    def __init__(self, folder: str | Path, grades: GradeBook, before: Callable[[str, str], dict],
                 init: str = "default", train_args=(), score_args=()):
        self.folder = Path(folder).resolve()  # the children run in the run folder
        self.grades = grades
        self.before = before
        self.init = str(init)
        self.train_args = [str(a) for a in train_args]
        self.score_args = [str(a) for a in score_args]
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    # -- state -----------------------------------------------------------------------------
    def runs(self) -> list[Path]:
        return sorted(p for p in self.folder.glob("run[0-9][0-9][0-9]") if (p / "status.json").is_file())

    def status(self) -> dict:
        """The latest run's status (``{"phase": "none"}`` before the first)."""
        runs = self.runs()
        if not runs:
            return {"phase": "none"}
        status = json.loads((runs[-1] / "status.json").read_text())
        if status["phase"] in ("training", "rescoring") and not self.running() and not _alive(status.get("server")):
            status["phase"] = "interrupted"
            status["message"] = "the server stopped while this run was going; start it again"
        return status

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _write(self, run: Path, status: dict) -> None:
        write_text_atomic(run / "status.json", json.dumps(status, indent=2) + "\n")

    # -- start -----------------------------------------------------------------------------
    def start(self) -> dict:
        """Start a run from the grades as they are now; returns its first status.

        Raises
        ------
        InputError
            A run is going, there are no grades, or a graded class has no known job.
        """
        with self._lock:
            if self.running() or self.status()["phase"] in ("training", "rescoring"):
                raise InputError(None, "a fine-tuning run is already going; wait for it to finish")
            table = self.grades.read()
            if len(table) == 0:
                raise InputError(self.grades.path, "no grades yet: grade some classes first")
            if (table["job"] == "").any():
                row = table[table["job"] == ""].iloc[0]
                raise InputError(self.grades.path, f"class {row['class']} of {row['dataset']}/{row['step']}: its class "
                                                   "averages (job) are unknown, so it cannot train")
            base = self.grades.path.parent
            jobs = [str((base / j).resolve()) for j in table["job"]]
            missing = [j for j in jobs if not Path(j).exists()]
            if missing:
                raise InputError(missing[0], "class averages named in the grades not found")
            n = len(self.runs()) + 1
            run = self.folder / f"run{n:03d}"
            while run.exists():
                n += 1
                run = self.folder / f"run{n:03d}"
            run.mkdir(parents=True)
            snapshot = table.copy()
            snapshot["job"] = jobs
            with atomic_path(run / "grades.csv") as tmp:
                snapshot.to_csv(tmp, index=False)
            status = {"run": run.name, "phase": "training", "progress": 0.0, "message": "starting training",
                      "graded": len(snapshot), "started": time.time(), "server": os.getpid()}
            self._write(run, status)
            self._thread = threading.Thread(target=self._run, args=(run, snapshot, status), daemon=True)
            self._thread.start()
            return status

    # -- the job ---------------------------------------------------------------------------
    def _cli(self, args, log: Path, cwd: Path, on_line=None) -> int:
        with open(log, "a") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "cryosift", *args], cwd=cwd, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True, bufsize=1)
            for line in proc.stdout:
                fh.write(line)
                fh.flush()
                if on_line is not None:
                    on_line(line)
            return proc.wait()

    def _run(self, run: Path, grades: pd.DataFrame, status: dict) -> None:
        log = run / "train.log"
        try:
            def epoch(line):
                m = EPOCH_LINE.search(line)
                if m:
                    done, total = int(m.group(1)), int(m.group(2))
                    status.update(progress=TRAIN_SHARE * done / total, message=line.strip())
                    self._write(run, status)

            code = self._cli(["train", "--init", self.init, "--labels", "grades.csv", "-o", "model.pt",
                              "--metrics", "metrics.json", *self.train_args], log, run, epoch)
            if code != 0:
                raise RuntimeError(f"cryosift train failed (exit {code}): {_tail(log, 3)}")
            jobs = list(dict.fromkeys(grades["job"]))
            after = {}
            for i, job in enumerate(jobs):
                status.update(phase="rescoring", progress=TRAIN_SHARE + (1 - TRAIN_SHARE) * i / len(jobs),
                              message=f"scoring {Path(job).name} with the fine-tuned model ({i + 1}/{len(jobs)})")
                self._write(run, status)
                out = run / "scores" / str(i + 1) / "scores.star"
                code = self._cli(["score", job, "--model", "model.pt", "-o", str(out), "--no-gallery", *self.score_args],
                                 log, run)
                if code != 0:
                    raise RuntimeError(f"cryosift score failed (exit {code}): {_tail(log, 3)}")
                table = read_scores(out)
                after[job] = dict(zip(table["class"].astype(int), table["score"].astype(float)))
            status.update(phase="done", progress=1.0, message="done", finished=time.time(),
                          model=str((run / "model.pt").resolve()), result=self._compare(grades, after))
        except Exception as exc:  # any failure ends the run with its message; grades stay untouched
            status.update(phase="failed", message=str(exc), log=str(log), finished=time.time())
        self._write(run, status)

    def _compare(self, grades: pd.DataFrame, after: dict) -> dict:
        rows = []
        for _, g in grades.iterrows():
            cls = int(g["class"])
            try:
                before = self.before(g["dataset"], g["step"]).get(cls)
            except InputError:
                before = None
            rows.append({"dataset": g["dataset"], "step": g["step"], "class": cls, "grade": g["grade"],
                         "grade_value": grade_value(g["grade"]), "before": before,
                         "after": after.get(g["job"], {}).get(cls)})
        def mae(key):
            pairs = [(r[key], r["grade_value"]) for r in rows if r[key] is not None]
            return float(np.mean([abs(a - b) for a, b in pairs])) if pairs else None

        return {"classes": rows, "mean_abs_diff_before": mae("before"), "mean_abs_diff_after": mae("after")}
