"""The workflow's plan: per dataset, the engine, the box, the loop rounds, each step's inputs and arguments.

The Snakemake rules (workflow/rules/*.smk) ask a :class:`WorkflowPlan` what to run; the commands
ask :func:`classification_action` whether a loop step classifies, reuses the previous round's
classification or records an empty one. Nothing here imports Snakemake or the workflow folder:
the plan is a plain object of the configuration (``config.yaml`` after the schema filled its
defaults) and the datasets sheet, so it is unit-tested like any other module.

A dataset's steps are ``round1`` .. ``roundN`` (the selection loop, N from the extraction box,
see :func:`cryosift.selection.policy.rounds_for_box`) and ``final`` (the pooled particles). Round 1
classifies the ingested particles, or scores the source's own classification when the source is
a finished 2D job; round r >= 2 classifies the particles round r-1 kept; the final step classifies
the last round's kept particles pooled with every round's accepted ones.
"""

from __future__ import annotations

import enum
import json
import re
from functools import cached_property
from pathlib import Path

from cryosift.errors import InputError
from cryosift.pipeline.datasets import Source, check_engine, describe_source, source_box
from cryosift.selection.policy import rounds_for_box

FINAL = "final"


def step_round(step: str) -> int | None:
    """1-based round number of a step name ``roundN``; None for ``final``."""
    return None if step == FINAL else int(step[len("round"):])


def name_pattern(names) -> str:
    """A wildcard constraint matching exactly these names (or nothing)."""
    return "|".join(re.escape(n) for n in names) or "(?!)"


def flags(*pairs) -> str:
    """``--flag value`` for each (flag, value) pair whose value is set (not None, not blank).

    Every argument string of the plan is built here, so a sheet column or a setting becomes
    the same flag wherever it is passed. A value of True gives the bare flag.
    """
    out = []
    for flag, value in pairs:
        if value is None or value is False or str(value).strip() == "":
            continue
        out.append(flag if value is True else f"{flag} {value}")
    return " ".join(out)


def training_numbers(count: int, heldout_first: int, heldout_count: int) -> list[int]:
    """The first ``count`` training dataset numbers outside the held-out range
    ``heldout_first .. heldout_first + heldout_count - 1`` (more training data leaves the
    held-out structures where they were)."""
    numbers, i = [], 0
    while len(numbers) < count:
        if not heldout_first <= i < heldout_first + heldout_count:
            numbers.append(i)
        i += 1
    return numbers


class DatasetPlan:
    """One row of the datasets sheet, resolved against the configuration.

    Parameters
    ----------
    row : dict
        The sheet's row (column -> text; blank where empty).
    config : dict
        The workflow configuration, defaults filled.
    where : str
        ``<sheet>: <dataset>``, for errors.
    """

    def __init__(self, row: dict, config: dict, where: str):
        self.name = row["dataset"]
        self.row = row
        self.config = config
        self.where = where
        self.source: Source = describe_source(row["type"], row["source"], where=where)

    def column(self, key: str) -> str:
        """The sheet's value in column ``key``, stripped; blank when empty or absent."""
        return str(self.row.get(key, "")).strip()

    @property
    def engine(self) -> str:
        """The row's engine, else the configured one."""
        return self.row.get("engine") or self.config["engine"]

    @property
    def on_server(self) -> bool:
        """Every step runs as jobs on the CryoSPARC server."""
        return self.engine == "cryosparc"

    @property
    def sheet_box(self) -> int | None:
        """The sheet's box column (full extraction box in px), or None when empty or absent."""
        value = self.column("box")
        return int(float(value)) if value else None

    @cached_property
    def box(self) -> int:
        """Full extraction box in px: the sheet's, else ``cryosparc.extraction_box`` for a job on
        the server, else read from the source (InputError where it cannot be known)."""
        box = self.sheet_box
        extraction_box = (self.config.get("cryosparc") or {}).get("extraction_box")
        if box is None and self.source.on_server and extraction_box:
            box = int(extraction_box)
        return box or source_box(self.source, where=self.where)

    @cached_property
    def rounds(self) -> int:
        """Loop rounds: the row's, else ``selection.rounds``, else the rule of the extraction box.

        The box is read only when the rounds are ``auto`` (a job on a CryoSPARC server has no
        local header to read it from)."""
        override = self.row.get("rounds") or self.config["selection"]["rounds"]
        if str(override) not in ("", "auto"):
            return int(override)
        return rounds_for_box(self.box)

    @property
    def steps(self) -> list[str]:
        """``round1`` .. ``roundN`` and ``final``."""
        return [f"round{r}" for r in range(1, self.rounds + 1)] + [FINAL]


class WorkflowPlan:
    """What the workflow runs for every dataset of the sheet.

    Parameters
    ----------
    config : dict
        The workflow configuration, checked and with its defaults filled.
    sheet : list of dict
        The datasets sheet's rows (column -> text, blank where empty), names unique.
    sheet_path : str
        The sheet's file, named in errors.

    Raises
    ------
    InputError
        A source that does not fit its type, or that the dataset's engine cannot reach.
    """

    def __init__(self, config: dict, sheet: list[dict], sheet_path: str):
        self.config = config
        self.results = config["results"]
        self.datasets = {row["dataset"]: DatasetPlan(row, config, f"{sheet_path}: {row['dataset']}") for row in sheet}
        for ds in self.datasets.values():
            check_engine(ds.source, ds.engine, where=ds.where)
        self.cutoffs = [f"{c:g}" for c in sorted(float(c) for c in config["selection"]["cutoffs"])]
        self.cryosparc = config.get("cryosparc", {})  # the block as given (passed on to the settings rule)
        self.cryosparc_settings = f"{self.results}/cryosparc/settings.json"

    def __getitem__(self, name: str) -> DatasetPlan:
        return self.datasets[name]

    # ------------------------------------------------------------------ datasets by where they run

    def names(self, on_server: bool | None = None, has_classes: bool | None = None) -> list[str]:
        """Dataset names, optionally only those (not) on a CryoSPARC server and whose source is
        (not) a finished classification, in sheet order."""
        return [ds.name for ds in self.datasets.values()
                if (on_server is None or ds.on_server == on_server)
                and (has_classes is None or ds.source.has_classes == has_classes)]

    # ------------------------------------------------------------------ files

    def file(self, stage: str, ds: str, *parts: str) -> str:
        """``<results>/<stage>/<dataset>/<parts...>``."""
        return "/".join((self.results, stage, ds, *parts))

    def classification(self, ds: str, step: str) -> str:
        """Manifest of a step's classification (round 1 of a classified source: the ingested one)."""
        if step == "round1" and self[ds].source.has_classes:
            return self.file("ingest", ds, "classification.json")
        return self.file("classify", ds, step, "classification.json")

    def previous_round(self, ds: str, step: str) -> dict:
        """Round r >= 2: the previous round's selection and classification (whether the loop
        stopped there, and what to reuse if it did); nothing for round 1 and the final step."""
        r = step_round(step)
        if r is None or r < 2:
            return {}
        return {"previous_selection": self.file("select", ds, f"round{r - 1}", "selection.json"),
                "previous": self.classification(ds, f"round{r - 1}")}

    def classify_inputs(self, ds: str, step: str) -> dict:
        """A local classification's inputs: round 1 the ingested particles, round r >= 2 the
        particles round r-1 kept (with that round's selection and classification), the final
        step the pooled particles."""
        r = step_round(step)
        if r is None:
            particles = self.file("pool", ds, "particles.star")
        elif r == 1:
            particles = self.file("ingest", ds, "particles.star")
        else:
            particles = self.file("select", ds, f"round{r - 1}", "kept.star")
        return {"info": self.file("ingest", ds, "dataset.json"), "particles": particles,
                **self.previous_round(ds, step)}

    def pool_inputs(self, ds: str) -> list[str]:
        """What the final classification pools: every round's accepted particles and the last round's kept."""
        n = self[ds].rounds
        return [self.file("select", ds, f"round{r}", "accepted.star") for r in range(1, n + 1)] + [
            self.file("select", ds, f"round{n}", "kept.star")]

    def cryosparc_particles(self, ds: str, step: str) -> list[str]:
        """What a classification on the CryoSPARC server classifies: round 1 the source on the
        server (no local file), round r >= 2 the particles round r-1 kept, the final step the last
        round's kept particles and every round's accepted ones (empty selections add nothing)."""
        r = step_round(step)
        if r == 1:
            return []
        if r is not None:
            return [self.file("cryosparc", ds, f"round{r - 1}", "kept.cs")]
        n = self[ds].rounds
        return [self.file("cryosparc", ds, f"round{n}", "kept.cs")] + [
            self.file("cryosparc", ds, f"round{i}", "accepted.cs") for i in range(1, n + 1)]

    def cryosparc_classify_inputs(self, ds: str, step: str) -> dict:
        return {"settings": self.cryosparc_settings, "info": self.file("ingest", ds, "dataset.json"),
                "particles": self.cryosparc_particles(ds, step), **self.previous_round(ds, step)}

    def round_selections(self, ds: str) -> list[str]:
        """Every loop round's selection.json, in order."""
        return [self.file("select", ds, f"round{r}", "selection.json") for r in range(1, self[ds].rounds + 1)]

    def validations(self, ds: str) -> list[str]:
        """The validation.json of every score cutoff."""
        return [self.file("validate", ds, f"cutoff{c}", "validation.json") for c in self.cutoffs]

    def ingest_inputs(self, ds: str) -> dict:
        """A simulated dataset's simulation; a source file (a folder is not an input Snakemake tracks)."""
        src = self[ds].source
        if src.type == "simulated":
            return {"simulation": self.file("simulate", ds, "dataset.json")}
        return {"source": src.path} if Path(src.path).is_file() else {}

    def final_outputs(self) -> list[str]:
        """What ``snakemake`` (rule all) makes: every validation, every summary, the comparison."""
        out = []
        for ds in self.datasets:
            out += self.validations(ds)
            out.append(f"{self.results}/summary/{ds}.json")
        out.append(f"{self.results}/report/comparison.csv")
        return out

    # ------------------------------------------------------------------ resources

    def gpus(self, ds: str) -> int:
        """GPUs a classification or ab initio job asks for: 1 for the builtin engine unless
        ``device: cpu`` (``auto`` takes the GPU it is given), 1 for RELION with ``relion.gpu``,
        none for work on a CryoSPARC server."""
        engine = self[ds].engine
        if engine == "builtin":
            return 0 if self.config["device"] == "cpu" else 1
        return 1 if engine == "relion" and self.config["relion"]["gpu"] else 0

    def mpi_ranks(self, ds: str) -> int:
        """SLURM tasks of a job: RELION's MPI ranks (``relion.mpi``), else 1."""
        return int(self.config["relion"]["mpi"]) if self[ds].engine == "relion" else 1

    def mpi_launcher(self, ds: str) -> str:
        """The ``mpi`` resource: set for a RELION job with several ranks, so that the SLURM executor
        allocates the ranks as tasks and runs the command (RELION's mpirun) in the allocation."""
        return "mpirun" if self.mpi_ranks(ds) > 1 else ""

    # ------------------------------------------------------------------ command-line arguments

    def classes(self, step: str) -> int:
        """Classes of a step's classification: ``classify.final_classes`` for the final one."""
        return self.config["classify"]["final_classes" if step == FINAL else "classes"]

    def engine_args(self, ds: str) -> str:
        """The engine's settings from config.yaml (RELION: MPI ranks, GPU, programs' folder)."""
        if self[ds].engine != "relion":
            return ""
        relion = self.config["relion"]
        return flags(("--mpi", relion["mpi"]), ("--relion-gpu", bool(relion["gpu"])),
                     ("--relion-prefix", relion["prefix"]))

    def device_arg(self) -> str:
        device = self.config["device"]
        return "" if device == "auto" else flags(("--device", device))

    def simulation_args(self, ds: str) -> str:
        """A simulator preset by name, else a settings file."""
        from cryosift.simulate.presets import PRESETS

        source = self[ds].row["source"]
        return flags(("--preset", source)) if source in PRESETS else flags(("--config", source))

    def ingest_args(self, ds: str, simulation: str | None = None) -> str:
        """``cryosift ingest``: the dataset, its source (a simulated one: the simulation's folder)
        and the sheet's diameter, model and pixel size."""
        d = self[ds]
        source = Path(simulation).parent if d.source.type == "simulated" else d.row["source"]
        return flags(("--dataset", ds), ("--type", d.row["type"]), ("--source", source),
                     *self._sheet_flags(d, ("diameter", "model", "pixel_size")))

    def cryosparc_ingest_args(self, ds: str) -> str:
        """``cryosift cryosparc ingest``: the dataset, its source on the server, the sheet's diameter and model."""
        d = self[ds]
        return flags(("--dataset", ds), ("--source", d.row["source"]), *self._sheet_flags(d, ("diameter", "model")))

    @staticmethod
    def _sheet_flags(d: DatasetPlan, keys) -> list[tuple]:
        return [("--" + key.replace("_", "-"), d.row.get(key, "")) for key in keys]

    def cryosparc_reconstruct_args(self, ds: str) -> str:
        """The ab initio seed of every cutoff (``cryosparc.seed``, else the workflow's) and ``--box``
        from the sheet (otherwise the engine reads cryosparc.extraction_box or the source job's)."""
        seed = (self.cryosparc or {}).get("seed")
        return flags(("--seed", self.config["seed"] if seed is None else int(seed)), ("--box", self[ds].sheet_box))

    def cryosparc_classify_args(self, ds: str, step: str) -> str:
        """Particles and the settings a cryoSPARC classification takes from the sheet and config.yaml."""
        d = self[ds]
        particles = self.cryosparc_particles(ds, step) or [d.row["source"]]
        return " ".join(particles) + " " + flags(
            ("--classes", self.classes(step)), ("--seed", self.config["seed"]), ("--diameter", d.row.get("diameter", "")),
            ("--box", d.sheet_box))

    @staticmethod
    def previous_args(inputs) -> str:
        """``--previous/--previous-selection`` of a loop round r >= 2 (from its rule's inputs)."""
        if "previous" not in inputs.keys():
            return ""
        return flags(("--previous", inputs.previous), ("--previous-selection", inputs.previous_selection))

    @staticmethod
    def model_arg(info_path: str) -> str:
        """``--model`` of validation: the atomic model ingest recorded in dataset.json, if any."""
        model = json.loads(Path(info_path).read_text()).get("model")
        return flags(("--model", model)) if model else ""


# ---------------------------------------------------------------------- what a loop step does at run time


class StepAction(enum.Enum):
    """What a classification step of the loop does, decided when it runs."""

    CLASSIFY = "classify"  # classify the step's particles
    REUSE = "reuse"  # the previous round ended the loop: name its classification
    EMPTY = "empty"  # no particle is left (all rejected before): record an empty classification


def classification_action(manifest=None, previous=None, previous_selection=None, particles=None) -> StepAction:
    """Decide what a loop step's classification does (``--manifest/--previous/--previous-selection``).

    Parameters
    ----------
    manifest : path, optional
        The manifest the step writes (required when the previous round ended the loop).
    previous, previous_selection : path, optional
        Round r >= 2: the previous round's classification manifest and selection.json; both or neither.
    particles : path, optional
        The step's particles; given (with ``manifest``), an empty file gives :attr:`StepAction.EMPTY`
        so the dataset completes with "no particles kept" instead of stopping the run.

    Returns
    -------
    StepAction
        REUSE when the previous round ended the loop, EMPTY when ``particles`` hold none,
        else CLASSIFY.

    Raises
    ------
    InputError
        Half of the previous pair, or a stopped loop without ``manifest``.
    """
    from cryosift.pipeline.manifest import loop_stopped

    if bool(previous) != bool(previous_selection):
        raise InputError(previous or previous_selection, "--previous and --previous-selection go together")
    if previous and loop_stopped(previous_selection):
        if not manifest:
            raise InputError(previous_selection, "the loop has stopped; give --manifest to record the reuse")
        return StepAction.REUSE
    if manifest and particles is not None:
        from cryosift.io.convert import read_particles

        if len(read_particles(particles)) == 0:
            return StepAction.EMPTY
    return StepAction.CLASSIFY
