"""Classification manifests (``classification.json``): one small JSON naming a finished 2D
classification's files, read and written here only, as :class:`ClassificationRecord`.

The workflow's rules pass manifests between stages instead of job folders, so a stage reads
exactly the iteration that was finished, and a round that is skipped (the loop stopped early)
can point at the previous round's classification. The library below the pipeline (io,
selection, scoring) never sees a manifest: :func:`class_averages_of`,
:func:`classified_particles` and :func:`score_classification` turn one into the files and
settings those take.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from cryosift.errors import InputError
from cryosift.io.atomic import write_text_atomic
from cryosift.io.jsonfile import read_json
from cryosift.io.star import last_finished_iteration
from cryosift.records import read_selection
from cryosift.scoring.job import score_job, write_no_scores
from cryosift.selection.apply import ClassifiedParticles

FORMAT = "cryosift-classification"

#: Keys of a manifest that the record holds as attributes (any other key is kept in ``extra``).
_KEYS = ("format", "engine", "iteration", "job_dir", "model_star", "data_star", "classes_mrcs", "reused_from",
         "empty", "particles")


@dataclass
class ClassificationRecord:
    """A ``classification.json``, its paths made absolute.

    Attributes
    ----------
    engine : str
        The engine that classified (``input`` for a classification given as the source).
    iteration : int
        The iteration named (0 for an empty classification).
    job_dir, model_star, data_star, classes_mrcs : Path or None
        The job folder and that iteration's files (None for an empty classification).
    reused_from : str or None
        The manifest this one repeats (a round after the loop stopped).
    empty : bool
        The step had no particles to classify.
    particles : Path or None
        For an empty classification, the (empty) particle file it was given.
    extra : dict
        Further keys written with the manifest.
    """

    engine: str
    iteration: int
    job_dir: Path | None = None
    model_star: Path | None = None
    data_star: Path | None = None
    classes_mrcs: Path | None = None
    reused_from: str | None = None
    empty: bool = False
    particles: Path | None = None
    extra: dict = field(default_factory=dict)

    def __getitem__(self, key: str):
        """The manifest's value for ``key`` (its JSON name), for readers that index by key."""
        if key in _KEYS and key != "format":
            return getattr(self, key)
        return self.extra[key]

    def get(self, key: str, default=None):
        try:
            return self[key]
        except KeyError:
            return default


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


def read_manifest(path: str | Path) -> ClassificationRecord:
    """A manifest with its paths made absolute; InputError naming the file when it is not one,
    or when a file it names no longer exists."""
    p = Path(path)
    record = read_json(p, "a cryosift classification manifest")
    if record.get("format") != FORMAT:
        raise InputError(p, "not a cryosift classification manifest")
    keys = ("particles",) if record.get("empty") else ("job_dir", "model_star", "data_star", "classes_mrcs")
    missing = [k for k in keys if not isinstance(record.get(k), str)]
    if missing:
        raise InputError(p, f"manifest lacks {', '.join(missing)}")
    paths = {k: (p.parent / record[k]).resolve() for k in keys}
    for key in keys:
        if key not in ("job_dir", "particles") and not paths[key].exists():
            raise InputError(p, f"{key} {paths[key]} no longer exists")
    return ClassificationRecord(engine=record.get("engine"), iteration=int(record.get("iteration", 0)),
                                reused_from=record.get("reused_from"), empty=bool(record.get("empty")),
                                extra={k: v for k, v in record.items() if k not in _KEYS}, **paths)


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
    return read_selection(selection_json).stop


def reuse_manifest(path: str | Path, previous: str | Path) -> dict:
    """Write a manifest at ``path`` that names the classification of ``previous`` (a manifest).

    Used when the loop stopped in the previous round: the round after it classifies nothing
    new, and its steps read the previous round's classification.
    """
    record = read_manifest(previous)
    return write_manifest(path, record.engine, record.job_dir, reused_from=Path(previous).resolve(), **record.extra)


# --------------------------------------------------------------------------- what the library reads

def class_averages_of(path: str | Path) -> Path:
    """The class averages behind ``path``: a manifest's ``model_star``, else ``path`` itself."""
    return read_manifest(path).model_star if is_manifest(path) else Path(path)


def classified_particles(path: str | Path) -> ClassifiedParticles:
    """The :class:`~cryosift.selection.apply.ClassifiedParticles` of a classification: a particle
    file, or a manifest (its ``data_star``; an empty classification's particles, each in class 0;
    a reused classification marked as such). ``selection.json`` records ``path`` as given."""
    if not is_manifest(path):
        return ClassifiedParticles(path)
    record = read_manifest(path)
    if record.empty:
        return ClassifiedParticles.unclassified(record.particles, record.reused_from, source=path)
    return ClassifiedParticles(record.data_star, record.reused_from, source=path)


def score_classification(path: str | Path, model, out: str | Path, **options):
    """:func:`cryosift.scoring.job.score_job` of a classification given as a manifest or as the
    scorer's own inputs; a manifest of an empty classification gets empty scores."""
    if is_manifest(path):
        record = read_manifest(path)
        if record.empty:
            return write_no_scores(out, options.get("gallery", True))
        path = record.model_star
    return score_job(path, model, out, **options)
