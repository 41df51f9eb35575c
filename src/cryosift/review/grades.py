"""The grades a reviewer gives, kept in the CSV that ``cryosift train --labels`` reads.

Columns: ``dataset``, ``step``, ``job`` (the class averages: a run_itNNN_model.star, cryoSPARC
.cs or classification manifest, relative to the CSV's folder), ``class`` (1-based) and ``grade``
(A, B, C, D, F or 1-5). The training reader uses ``job``, ``class`` and ``grade``; ``dataset``
and ``step`` say which results the grade came from.

Every change is one read-modify-write of the whole file under an exclusive lock
(``grades.csv.lock`` beside it), written to a temporary file and renamed into place: a crash
leaves the previous complete file, and two tabs (or two servers) grading at once both keep
their grades, the last write of one class winning.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError
from cryosift.io.atomic import atomic_path
from cryosift.scoring.training.grades import letter_grade

COLUMNS = ("dataset", "step", "job", "class", "grade")
#: Letters of the rubric (CryoSift paper): A secondary structure ... F nothing particle-like.
LETTERS = ("A", "B", "C", "D", "F")


def normalise_grade(value) -> str:
    """A grade as stored: a letter A-F (E counts as F) or a whole number 1-5, as text.

    Raises
    ------
    InputError
        Anything else (naming the value and the scale).
    """
    text = str(value).strip().upper()
    if text in LETTERS or text == "E":
        return "F" if text == "E" else text
    try:
        number = float(text)
    except ValueError:
        number = None
    if number is not None and number.is_integer() and 1 <= number <= 5:
        return str(int(number))
    raise InputError(None, f"grade {str(value)!r} is outside the scale (A, B, C, D, F or 1-5)")


def grade_value(grade: str) -> float:
    """Numeric grade (1 best ... 5 unusable) of a stored grade."""
    return letter_grade(grade) if grade in LETTERS else float(grade)


@dataclass(frozen=True)
class GradeKey:
    """Which class average a grade is for."""

    dataset: str
    step: str
    job: str
    cls: int


def _same_job(table: pd.DataFrame, key: GradeKey) -> pd.Series:
    """Rows of the same class averages: the same job file (a round that reused the previous
    round's classification shares its grades), or the same dataset and step when the job is unknown."""
    if key.job:
        return table["job"] == key.job
    return (table["dataset"] == key.dataset) & (table["step"] == key.step) & (table["job"] == "")


class GradeBook:
    """The grades CSV of one review.

    Parameters
    ----------
    path : str or Path
        The CSV (created on the first grade).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def _read(self) -> pd.DataFrame:
        if not self.path.exists():
            return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
        try:
            table = pd.read_csv(self.path, dtype=str, keep_default_na=False)
        except Exception as exc:  # pandas raises several parser errors
            raise InputError(self.path, f"not a readable grades CSV ({type(exc).__name__}: {exc})") from None
        missing = [c for c in COLUMNS if c not in table]
        if missing and len(table.columns):
            raise InputError(self.path, f"no {', '.join(missing)} column (a grades CSV has {', '.join(COLUMNS)})")
        if len(table.columns) == 0:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in COLUMNS})
        return table

    def read(self) -> pd.DataFrame:
        """All grades (text columns as stored). Writers rename whole files into place, so a
        reader needs no lock and creates nothing."""
        return self._read()

    def grades_of(self, key: GradeKey) -> dict:
        """Class number -> grade of the step of ``key`` (its ``cls`` is not used)."""
        t = self.read()
        rows = t[_same_job(t, key)]
        return {int(c): g for c, g in zip(rows["class"], rows["grade"])}

    def set(self, key: GradeKey, grade) -> str | None:
        """Store (or with ``grade`` None, remove) the grade of one class; returns the stored grade.

        Raises
        ------
        InputError
            The grade is outside the scale, or the CSV on disk is not a grades CSV
            (then nothing is written).
        """
        value = None if grade is None else normalise_grade(grade)
        with self._locked():
            table = self._read()
            same = _same_job(table, key) & (table["class"].astype(str) == str(int(key.cls)))
            table = table[~same.to_numpy()]
            if value is not None:
                row = pd.DataFrame([{"dataset": key.dataset, "step": key.step, "job": key.job,
                                     "class": str(int(key.cls)), "grade": value}])
                table = pd.concat([table, row], ignore_index=True)
            order = np.lexsort((table["class"].astype(int).to_numpy(), table["step"].to_numpy(),
                                table["dataset"].to_numpy())) if len(table) else np.arange(0)
            table = table.iloc[order][[*COLUMNS, *[c for c in table.columns if c not in COLUMNS]]]
            with atomic_path(self.path) as tmp:
                table.to_csv(tmp, index=False)
                with open(tmp, "rb+") as fh:  # on disk before the rename, so a crash leaves one whole file
                    os.fsync(fh.fileno())
        return value
