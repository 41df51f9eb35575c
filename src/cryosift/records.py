"""The records the pipeline's stages hand each other, one type per stage file.

=====================  ==========================  =========================================
file                   record                      written by
=====================  ==========================  =========================================
``dataset.json``       :class:`DatasetRecord`      ingest (:mod:`cryosift.pipeline.ingest`,
                                                   the cryoSPARC engine's server ingest)
``classification.json`` :class:`cryosift.pipeline.manifest.ClassificationRecord` (read and
                       written in :mod:`cryosift.pipeline.manifest`)
``selection.json``     :class:`SelectionRecord`    :mod:`cryosift.selection.apply` (with its
                                                   subsets, as one atomic step)
``validation.json``    :class:`ValidationRecord`   :mod:`cryosift.validate.run`
``summary.json``       :class:`SummaryRecord`      :mod:`cryosift.pipeline.summary`
=====================  ==========================  =========================================

Every reader here goes through :func:`cryosift.io.jsonfile.read_json` and checks the keys
that make the file what it claims to be, so a wrong or truncated file is one line naming
it. A record keeps the whole JSON as written (``data``), so copying it into another record
(validation results into the summary) changes no byte; its attributes name what other
stages read. This module sits below every stage package and imports none of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from cryosift.errors import InputError
from cryosift.io.jsonfile import read_json, write_json


@dataclass(frozen=True)
class StageRecord:
    """A stage file as read: its ``path`` and its JSON object ``data``."""

    path: Path
    data: dict = field(repr=False)

    #: Keys the file must hold; what the file is, for messages.
    required: ClassVar[tuple] = ()
    what: ClassVar[str] = "a stage record"

    @classmethod
    def read(cls, path: str | Path):
        """Read and check ``path``; InputError naming it when it is not such a file."""
        data = read_json(path, cls.what)
        missing = [k for k in cls.required if k not in data]
        if missing:
            raise InputError(path, f"not {cls.what} (no {', '.join(repr(k) for k in missing)})")
        return cls(Path(path), data)

    def __getitem__(self, key: str):
        return self.data[key]

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def get(self, key: str, default=None):
        return self.data.get(key, default)


@dataclass(frozen=True)
class DatasetRecord(StageRecord):
    """``dataset.json``: what ingest learned about a dataset."""

    required: ClassVar[tuple] = ("dataset", "type", "box", "pixel_size", "n_particles")
    what: ClassVar[str] = "an ingested dataset.json"

    @property
    def name(self) -> str:
        return str(self.data["dataset"])

    @property
    def box(self) -> int:
        """Extraction box, px."""
        return int(self.data["box"])

    @property
    def pixel_size(self) -> float:
        """Å/px of the ingested particles."""
        return float(self.data["pixel_size"])

    @property
    def n_particles(self) -> int:
        return int(self.data["n_particles"])

    @property
    def model(self) -> str | None:
        """The atomic model validation compares with, if any."""
        return self.data.get("model") or None


@dataclass(frozen=True)
class SelectionRecord(StageRecord):
    """``selection.json``: a loop round's decision (``step`` ``round``) or the final split (``final``)."""

    required: ClassVar[tuple] = ("step",)
    what: ClassVar[str] = "a selection.json written by `cryosift select round` or `select final`"

    @property
    def step(self) -> str:
        return str(self.data["step"])

    @property
    def stop(self) -> bool:
        """A round that ended the loop."""
        if "stop" not in self.data:
            raise InputError(self.path, "not a round selection summary (no 'stop' entry)")
        return bool(self.data["stop"])

    @property
    def warning(self) -> str | None:
        """The step's out-of-domain warning line, if any."""
        return self.data.get("warning") or None

    def class_groups(self) -> dict:
        """Subset name -> sorted 1-based classes: a round's ``accepted``/``kept`` (not ``rejected``),
        or the final split's ``score_le_<cutoff>``."""
        if self.step == "round":
            return {name: sorted({c for st in statuses for c in self.data["classes"].get(st, [])})
                    for name, statuses in self.data["subsets"].items() if name != "rejected"}
        if self.step == "final":
            return {f"score_le_{c}": r["classes_kept"] for c, r in self.data["cutoffs"].items()}
        raise InputError(self.path, f"not {self.what}")


@dataclass(frozen=True)
class ValidationRecord(StageRecord):
    """``validation.json``: one map's figures (FSC, Q-score, ResLog) for a dataset and cutoff."""

    required: ClassVar[tuple] = ("dataset",)
    what: ClassVar[str] = "a validation JSON file"

    @property
    def dataset(self) -> str:
        return str(self.data["dataset"])

    @property
    def cutoff(self) -> float | None:
        value = self.data.get("cutoff")
        return None if value is None else float(value)


@dataclass(frozen=True)
class SummaryRecord(StageRecord):
    """``summary.json``: a dataset's particles through the rounds, kept per cutoff, and validations."""

    required: ClassVar[tuple] = ("dataset", "particles", "cutoffs")
    what: ClassVar[str] = "a dataset summary (cryosift summarize)"


def read_dataset(path: str | Path) -> DatasetRecord:
    return DatasetRecord.read(path)


def read_selection(path: str | Path) -> SelectionRecord:
    return SelectionRecord.read(path)


def read_validation(path: str | Path) -> ValidationRecord:
    return ValidationRecord.read(path)


def read_summary(path: str | Path) -> SummaryRecord:
    return SummaryRecord.read(path)


def write_dataset(path: str | Path, facts: dict) -> None:
    """Write ``dataset.json`` (atomically; ingest writes it last)."""
    write_json(path, facts)


def write_validation(path: str | Path, result: dict) -> None:
    """Write ``validation.json`` atomically."""
    write_json(path, result)


def write_summary(path: str | Path, summary: dict) -> None:
    """Write ``summary.json`` atomically."""
    write_json(path, summary)
