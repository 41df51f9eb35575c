"""The jobs of a dry run (``snakemake -n``): rule, wildcards, threads, resources and shell command.

Read from the job blocks Snakemake prints for each planned job (``rule NAME:`` or ``localrule
NAME:`` followed by indented ``key: value`` lines), not from its summary table.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"

_HEADER = re.compile(r"^(local)?rule (\w+):$")
_FIELD = re.compile(r"^    (\w+): ?(.*)$")


@dataclass
class PlannedJob:
    rule: str
    local: bool
    wildcards: dict = field(default_factory=dict)
    threads: int = 1
    resources: dict = field(default_factory=dict)
    shell: str = ""


def _pairs(text: str) -> dict:
    out = {}
    for item in text.split(", "):
        key, _, value = item.partition("=")
        out[key.strip()] = value.strip()
    return out


def parse_plan(output: str) -> list[PlannedJob]:
    """Every job block of a dry run's output, in the order printed."""
    jobs, job = [], None
    for line in output.splitlines():
        header = _HEADER.match(line)
        if header:
            job = PlannedJob(rule=header[2], local=bool(header[1]))
            jobs.append(job)
            continue
        if job is None:
            continue
        if line.startswith("Shell command: "):
            job.shell = line[len("Shell command: "):]
            continue
        entry = _FIELD.match(line)
        if not entry:
            continue
        key, value = entry[1], entry[2]
        if key == "wildcards":
            job.wildcards = _pairs(value)
        elif key == "threads":
            job.threads = int(value)
        elif key == "resources":
            job.resources = _pairs(value)
    return jobs


def dry_run(workdir: Path, *extra: str, check: bool = True) -> tuple[list[PlannedJob], subprocess.CompletedProcess]:
    """``snakemake -n -p`` of workflow/Snakefile in ``workdir``: (jobs, process)."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--snakefile", str(SNAKEFILE),
                           "--directory", str(workdir), *extra], capture_output=True, text=True, timeout=900)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return parse_plan(proc.stdout + proc.stderr), proc


def job_counts(jobs: list[PlannedJob]) -> Counter:
    return Counter(job.rule for job in jobs)
