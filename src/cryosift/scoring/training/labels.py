"""User labels for fine-tuning: a CSV of class-average grades, or a RELION Select job's choice.

*CSV*: one row per graded class average, a ``grade`` column (1 best ... 5 unusable, or the
rubric letters A, B, C, D, F) and which class average it is, either

- ``image``: the RELION name ``NNNNNN@Class2D/job012/run_it025_classes.mrcs`` (the job's
  ``_model.star`` beside the stack is used), or
- ``class``: the 1-based class number, with the class averages given separately (``classes``
  argument, ``--classes`` on the command line) or in a ``job`` column per row (a Class2D job
  folder, ``run_itNNN_model.star``, cryoSPARC ``.cs``).

Relative paths are taken relative to the CSV's folder, then the working folder.

*RELION Select*: ``backup_selection.star`` holds ``rlnSelected`` (1/0) per class, in the order
of the classes of the Class2D job that was selected from (``classes`` argument). Selected
classes get ``selected_grade`` (default 2), the others ``rejected_grade`` (default 4.5).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError, require_file
from cryosift.io import read_star
from cryosift.io.models import split_image_names
from cryosift.scoring.features import class_features
from cryosift.scoring.inputs import load_classes
from cryosift.scoring.training.data import Examples, job_examples
from cryosift.scoring.training.grades import letter_grade

SELECTED_GRADE = 2.0
REJECTED_GRADE = 4.5


def _resolve(name: str, base: Path) -> Path:
    p = Path(name)
    if p.is_absolute() or p.exists():
        return p
    return base / p


def parse_grades(values, path: Path) -> np.ndarray:
    """Grades from numbers 1..5 or letters A..F; InputError naming ``path`` and the row otherwise."""
    out = np.empty(len(values), dtype=np.float64)
    for i, v in enumerate(values):
        text = str(v).strip()
        try:
            g = float(text)
        except ValueError:
            try:
                g = letter_grade(text)
            except ValueError:
                raise InputError(path, f"row {i + 1}: grade {text!r} is neither a number 1-5 nor a letter A-F") from None
        if not 1.0 <= g <= 5.0:
            raise InputError(path, f"row {i + 1}: grade {g:g} is outside 1 (best) ... 5 (unusable)")
        out[i] = g
    return out


def _job_from_stack(stack: str, base: Path) -> Path:
    p = _resolve(stack.removesuffix(":mrcs"), base)
    name = p.name
    for suffix in ("_classes.mrcs", "_classes.mrc"):
        if name.endswith(suffix):
            return p.with_name(name[: -len(suffix)] + "_model.star")
    return p


def _examples_for_job(job: Path, class_numbers: np.ndarray, grades: np.ndarray, labels: Path, **kw) -> Examples:
    classes = load_classes(job)
    known = np.asarray(classes.class_numbers, dtype=np.int64)
    per_class = np.full(len(known), np.nan)
    for k, g in zip(class_numbers, grades):
        hit = np.flatnonzero(known == k)
        if len(hit) == 0:
            raise InputError(labels, f"class {k} does not exist in {job} (classes {known.min()}-{known.max()})")
        per_class[hit[0]] = g
    table = class_features(classes)
    return job_examples(classes.images, table, classes.pixel_size, per_class, f"labels:{job}", **kw)


def read_grade_csv(path: str | Path, classes: str | Path | None = None, **kw) -> Examples:
    """Examples from a CSV of class-average grades (see the module description).

    ``kw``: ``preprocessing`` and ``features`` of the model to train (default: ours).
    """
    p = require_file(path)
    try:
        table = pd.read_csv(p, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several parser errors
        raise InputError(p, f"not a readable CSV table ({type(exc).__name__}: {exc})") from None
    table.columns = [c.strip().lower() for c in table.columns]
    if "grade" not in table:
        raise InputError(p, f"no grade column (columns: {', '.join(table.columns) or 'none'})")
    if len(table) == 0:
        raise InputError(p, "no rows")
    grades = parse_grades(table["grade"].tolist(), p)
    base = p.parent
    if "image" in table:
        index, stacks = split_image_names(table["image"].to_numpy())
        jobs = [(_job_from_stack(str(s), base) if classes is None else Path(classes)) for s in stacks]
        numbers = index + 1
    elif "class" in table:
        try:
            numbers = table["class"].astype(int).to_numpy()
        except ValueError:
            raise InputError(p, "the class column must hold whole class numbers (1-based)") from None
        if classes is not None:
            jobs = [Path(classes)] * len(table)
        elif "job" in table:
            jobs = [_resolve(j, base) for j in table["job"]]
        else:
            raise InputError(p, "rows name classes by number: give the class averages (--classes) or a job column")
    else:
        raise InputError(p, "needs an image column (NNNNNN@stack) or a class column naming each class average")
    frame = pd.DataFrame({"job": [str(j) for j in jobs], "class": numbers, "grade": grades})
    dup = frame.duplicated(["job", "class"])
    if dup.any():
        row = int(np.flatnonzero(dup.to_numpy())[0])
        raise InputError(p, f"row {row + 1}: class {frame['class'].iloc[row]} of {frame['job'].iloc[row]} is graded twice")
    parts = []
    for job, rows in frame.groupby("job", sort=False):
        jp = Path(job)
        if not jp.exists():
            raise InputError(p, f"class averages {job} not found")
        parts.append(_examples_for_job(jp, rows["class"].to_numpy(), rows["grade"].to_numpy(), p, **kw))
    return Examples.concat(parts)


def read_selection(path: str | Path, classes: str | Path, selected_grade: float = SELECTED_GRADE,
                   rejected_grade: float = REJECTED_GRADE, **kw) -> Examples:
    """Examples from a RELION Select job's ``backup_selection.star`` and the Class2D job it selected from."""
    p = require_file(path)
    if classes is None:
        raise InputError(p, "a RELION selection needs the Class2D job it was made from (--classes)")
    blocks = read_star(p)
    found = [b for b in blocks.values() if isinstance(b, pd.DataFrame) and "rlnSelected" in b]
    if not found:
        single = [b for b in blocks.values() if isinstance(b, dict) and "rlnSelected" in b]
        if not single:
            raise InputError(p, "no rlnSelected column: not a RELION backup_selection.star")
        found = [pd.DataFrame({"rlnSelected": [single[0]["rlnSelected"]]})]
    selected = pd.to_numeric(found[0]["rlnSelected"], errors="coerce").to_numpy()
    if np.isnan(selected).any():
        raise InputError(p, "rlnSelected holds values other than 0 and 1")
    avg = load_classes(classes)
    if len(selected) != len(avg):
        raise InputError(p, f"{len(selected)} selection flags but {classes} holds {len(avg)} classes")
    grades = np.where(selected > 0, float(selected_grade), float(rejected_grade))
    return job_examples(avg.images, class_features(avg), avg.pixel_size, grades, f"selection:{classes}", **kw)


def read_labels(path: str | Path, classes: str | Path | None = None, selected_grade: float = SELECTED_GRADE,
                rejected_grade: float = REJECTED_GRADE, **kw) -> Examples:
    """Examples from a grade CSV or a ``.star`` selection, by the file's suffix.

    ``kw``: ``preprocessing`` and ``features`` of the model to train (default: ours).
    """
    p = Path(path)
    if p.suffix.lower() == ".star":
        return read_selection(p, classes, selected_grade, rejected_grade, **kw)
    if p.suffix.lower() in (".csv", ".tsv", ".txt"):
        return read_grade_csv(p, classes, **kw)
    raise InputError(p, "labels must be a grade table (.csv) or a RELION backup_selection.star")
