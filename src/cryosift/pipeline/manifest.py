"""Classification manifests: one small JSON naming a finished 2D classification's files.

The workflow's rules pass manifests between stages instead of job folders, so a stage reads
exactly the iteration that was finished, and a round that is skipped (the loop stopped early)
can point at the previous round's classification.
"""

from __future__ import annotations

import json
from pathlib import Path

from cryosift.errors import InputError, require_file
from cryosift.io.atomic import write_text_atomic
from cryosift.io.star import last_finished_iteration

FORMAT = "cryosift-classification"


def _relative(p, base) -> str:
    """``p`` relative to the folder ``base`` when inside it, else absolute (manifests move with results)."""
    p, base = Path(p).resolve(), Path(base).resolve()
    try:
        return str(p.relative_to(base))
    except ValueError:
        return str(p)


def write_manifest(path: str | Path, engine: str, job_dir: str | Path, reused_from: str | Path | None = None,
                   **extra) -> dict:
    """Record the last finished iteration of ``job_dir`` in ``path`` (written atomically, last)."""
    found = last_finished_iteration(job_dir)
    base = Path(path).parent

    def rel(p) -> str:
        return _relative(p, base)

    record = {"format": FORMAT, "engine": engine, "iteration": found["iteration"], "job_dir": rel(job_dir),
              "model_star": rel(found["model"]), "data_star": rel(found["data"]),
              "classes_mrcs": rel(found["classes"]), "reused_from": None if reused_from is None else str(reused_from),
              **extra}
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    return record


def write_empty_manifest(path: str | Path, engine: str, particles: str | Path) -> dict:
    """Record that a step had no particles to classify (every particle was rejected before it).

    The steps after it read an empty classification: no classes, no scores, empty subsets, so a
    dataset whose particles were all rejected still completes, with "no particles kept".
    """
    record = {"format": FORMAT, "engine": engine, "empty": True, "iteration": 0,
              "particles": _relative(particles, Path(path).parent),
              "reused_from": None}
    write_text_atomic(path, json.dumps(record, indent=2) + "\n")
    return record


def _read_json(path: str | Path) -> tuple[Path, dict]:
    p = require_file(path)
    try:
        return p, json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise InputError(p, f"not valid JSON ({exc})") from None


def read_manifest(path: str | Path) -> dict:
    """A manifest with its paths made absolute."""
    p, record = _read_json(path)
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise InputError(p, "not a cryosift classification manifest")
    keys = ("particles",) if record.get("empty") else ("job_dir", "model_star", "data_star", "classes_mrcs")
    missing = [k for k in keys if not isinstance(record.get(k), str)]
    if missing:
        raise InputError(p, f"manifest lacks {', '.join(missing)}")
    if record.get("empty"):
        record["particles"] = (p.parent / record["particles"]).resolve()
        return record
    for key in keys:
        record[key] = (p.parent / record[key]).resolve()
        if key != "job_dir" and not record[key].exists():
            raise InputError(p, f"{key} {record[key]} no longer exists")
    return record


def is_empty_classification(path: str | Path) -> bool:
    """Whether ``path`` is a manifest of a step that had no particles to classify."""
    return is_manifest(path) and bool(read_manifest(path).get("empty"))


def is_manifest(path: str | Path) -> bool:
    """Whether ``path`` names a classification manifest (by name and format)."""
    p = Path(path)
    if p.suffix != ".json" or not p.is_file():
        return False
    try:
        return json.loads(p.read_text()).get("format") == FORMAT
    except (json.JSONDecodeError, AttributeError):
        return False


def loop_stopped(selection_json: str | Path) -> bool:
    """Whether a round's ``selection.json`` ended the selection loop (nothing more to classify)."""
    p, record = _read_json(selection_json)
    if not isinstance(record, dict) or "stop" not in record:
        raise InputError(p, "not a round selection summary (no 'stop' entry)")
    return bool(record["stop"])


def reuse_manifest(path: str | Path, previous: str | Path) -> dict:
    """Write a manifest at ``path`` that names the classification of ``previous`` (a manifest).

    Used when the loop stopped in the previous round: the round after it classifies nothing
    new, and its steps read the previous round's classification.
    """
    record = read_manifest(previous)
    extra = {k: v for k, v in record.items() if k not in {"format", "engine", "iteration", "job_dir", "model_star",
                                                        "data_star", "classes_mrcs", "reused_from"}}
    return write_manifest(path, record["engine"], record["job_dir"], reused_from=Path(previous).resolve(), **extra)
