"""Run RELION programs: logs, exit markers, and errors that show what RELION said."""

from __future__ import annotations

import collections
import logging
import os
import re
import shlex
import subprocess
import time
from pathlib import Path

from cryosift.errors import EngineError
from cryosift.logs import elapsed

log = logging.getLogger(__name__)

SUCCESS = "RELION_JOB_EXIT_SUCCESS"
FAILURE = "RELION_JOB_EXIT_FAILURE"
ABORTED = "RELION_JOB_EXIT_ABORTED"

#: The line relion_refine prints as it starts an iteration (EM, SEM or SGD), e.g.
#: " Expectation iteration 3 of 25"; auto-refinement gives no total.
ITERATION_LINE = re.compile(r"^\s*(?:Expectation|Stochastic Expectation Maximisation|Stochastic Gradient Descent)"
                            r" iteration (\d+)(?: of (\d+))?")


def iteration_progress(line: str) -> tuple[int, int | None] | None:
    """(iteration, total or None) from a relion_refine output line that starts an iteration, else None."""
    m = ITERATION_LINE.match(line)
    if m is None:
        return None
    return int(m[1]), (int(m[2]) if m[2] else None)


def job_status(job_dir: str | Path) -> str:
    """``success``, ``failure``, ``aborted`` or ``unfinished`` from RELION's pipeline-control markers."""
    job = Path(job_dir)
    for marker, status in ((SUCCESS, "success"), (FAILURE, "failure"), (ABORTED, "aborted")):
        if (job / marker).exists():
            return status
    return "unfinished"


def clear_markers(job_dir: str | Path) -> None:
    """Remove exit markers before (re)starting a job, so an old success cannot be mistaken for a new one."""
    for marker in (SUCCESS, FAILURE, ABORTED):
        (Path(job_dir) / marker).unlink(missing_ok=True)


def run_relion(cmd: list[str], job_dir: str | Path, what: str, log_name: str = "run.log", tail: int = 20,
               env: dict | None = None) -> Path:
    """Run a RELION command in the foreground, writing its output to ``job_dir/log_name``.

    stdout and stderr both go to the log (RELION prints errors on either); the last
    ``tail`` lines are kept for the error message, and each iteration relion_refine starts
    is logged (one INFO line with the time since the start). The run counts as successful only if
    the program exits 0 and, when it was given ``--pipeline_control``, it wrote
    RELION_JOB_EXIT_SUCCESS (a killed run writes no marker).

    Returns
    -------
    Path
        The log file.

    Raises
    ------
    EngineError
        Non-zero exit, death by signal, or a missing success marker; the message carries
        RELION's last lines.
    """
    job = Path(job_dir)
    job.mkdir(parents=True, exist_ok=True)
    log_path = job / log_name
    last = collections.deque(maxlen=tail)
    log.info("running: %s", shlex.join(cmd))
    with open(log_path, "a") as fh:
        fh.write(f"$ {shlex.join(cmd)}\n")
        fh.flush()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, **(env or {})}, bufsize=1)
        t0 = time.perf_counter()
        for line in proc.stdout:
            fh.write(line)
            if line.strip():
                last.append(line.rstrip())
            it = iteration_progress(line)
            if it is not None:  # RELION's own progress goes to its log; the step's log gets one line per iteration
                log.info("%s: iteration %d%s started, %s", what, it[0], f" of {it[1]}" if it[1] else "",
                         elapsed(time.perf_counter() - t0))
        code = proc.wait()
    tail_text = "\n".join(last)
    if code != 0:
        raise EngineError("relion", what, code if code > 0 else None, tail_text, log_path)
    if "--pipeline_control" in cmd and job_status(cmd[cmd.index("--pipeline_control") + 1]) != "success":
        raise EngineError("relion", what, None, tail_text + f"\n(no {SUCCESS} marker)", log_path)
    return log_path
