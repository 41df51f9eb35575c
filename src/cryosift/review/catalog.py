"""What a review shows: the scored steps under a results folder, each step's classes and selections.

The workflow lays out its results as ``<results>/score/<dataset>/<step>/scores.star`` (with
``scores.csv`` beside it), the classification each step scored as
``<results>/classify/<dataset>/<step>/classification.json`` (round 1 of a classified source:
``<results>/ingest/<dataset>/classification.json``) and the selection as
``<results>/select/<dataset>/<step>/selection.json``. A lone ``scores.star`` (``cryosift score``
outside the workflow) is one step; its class averages are found from the image names it holds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError, require_file
from cryosift.io import read_star
from cryosift.io.jsonfile import read_json
from cryosift.io.models import resolve_image_path, split_image_names
from cryosift.pipeline.manifest import read_manifest
from cryosift.records import read_selection
from cryosift.scoring.outputs import SCORE_LABEL, read_scores

#: Cutoffs when neither the selection nor the run's configuration names them.
DEFAULT_CUTOFFS = (2.5, 3.5, 4.5)


@dataclass(frozen=True)
class Step:
    """One scored classification: a dataset's round or final step.

    Attributes
    ----------
    key : str
        ``dataset/step``; unique within a review.
    dataset, step : str
        Dataset name and step (``round1`` ... ``final``; the folder name for a lone file).
    scores : Path
        Its ``scores.star``.
    results : Path or None
        The workflow results folder it lies in (None for a lone ``scores.star``).
    """

    key: str
    dataset: str
    step: str
    scores: Path
    results: Path | None = None

    @property
    def csv(self) -> Path:
        return self.scores.with_suffix(".csv")

    @property
    def selection(self) -> Path | None:
        """``selection.json`` of this step's selection (None outside the workflow)."""
        if self.results is None:
            return None
        return self.results / "select" / self.dataset / self.step / "selection.json"

    def manifest(self) -> Path | None:
        """The workflow's classification manifest of this step, when it exists."""
        if self.results is None:
            return None
        for p in (self.results / "classify" / self.dataset / self.step / "classification.json",
                  self.results / "ingest" / self.dataset / "classification.json"):
            if p.is_file() and (p.parent.name == self.step or self.step == "round1"):
                return p
        return None


@dataclass
class StepTable:
    """The classes of one step as the review shows them.

    Attributes
    ----------
    step : Step
    classes : pd.DataFrame
        One row per class: ``class``, ``score`` and every feature the scores hold
        (``distribution``, ``resolution_A``, ``mass_kDa``, ``particles``, ...).
    image_names : list of str
        ``NNNNNN@stack`` per row (RELION's names, as in scores.star).
    job : Path or None
        The class averages the scores came from (a model.star, cryoSPARC .cs or manifest),
        which a grades CSV names; None when it cannot be found.
    cutoffs : tuple of float
        Score cutoffs of the run (from its selection or configuration).
    kept : pd.DataFrame
        Particles of each class kept at each cutoff (columns ``le_<cutoff>``; index ``class``).
    kept_source : str
        Where ``kept`` came from: the selection.json it was read from, or ``scores``.
    round_status : dict
        Class number -> the round's decision (accepted, kept, attractor, rejected), rounds only.
    """

    step: Step
    classes: pd.DataFrame
    image_names: list
    job: Path | None
    cutoffs: tuple
    kept: pd.DataFrame
    kept_source: str
    round_status: dict = field(default_factory=dict)


def find_steps(path: str | Path) -> list[Step]:
    """Every scored step under ``path`` (a results folder) or ``path`` itself (a scores.star).

    Raises
    ------
    InputError
        ``path`` does not exist, or holds no ``scores.star``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(p, "not found (give a workflow results folder or a scores.star)")
    if p.is_file():
        if p.suffix != ".star":
            raise InputError(p, "not a scores.star (give a workflow results folder or a scores.star)")
        return [Step(key=f"{p.parent.name}/{p.stem}", dataset=p.parent.name, step=p.stem, scores=p)]
    found = sorted(p.rglob("scores.star"))
    steps, keys = [], set()
    for star in found:
        if any(part.startswith(".") for part in star.relative_to(p).parts):
            continue
        step_dir, ds_dir = star.parent, star.parent.parent
        if ds_dir.parent.name == "score":
            results = ds_dir.parent.parent
            dataset, step = ds_dir.name, step_dir.name
            project = results.relative_to(p).as_posix() if results != p else ""
            key = f"{project}:{dataset}/{step}" if project and project != "." else f"{dataset}/{step}"
        else:
            results, dataset, step = None, step_dir.name, star.stem
            key = star.relative_to(p).as_posix()
        if key in keys:
            continue
        keys.add(key)
        steps.append(Step(key=key, dataset=dataset, step=step, scores=star, results=results))
    if not steps:
        raise InputError(p, "no scores.star below this folder (expected <results>/score/<dataset>/<step>/scores.star)")
    return sorted(steps, key=lambda s: (s.results is None, str(s.results), s.dataset, _step_order(s.step), s.key))


def _step_order(step: str) -> tuple:
    if step.startswith("round") and step[5:].isdigit():
        return (0, int(step[5:]))
    return (1, 0) if step == "final" else (2, 0)


def run_cutoffs(step: Step) -> tuple:
    """Score cutoffs of the run: its final selection, else its run_info.json, else 2.5/3.5/4.5."""
    if step.results is not None:
        final = step.results / "select" / step.dataset / "final" / "selection.json"
        if final.is_file():
            cutoffs = read_selection(final).get("cutoffs")
            if cutoffs:
                return tuple(sorted(float(c) for c in cutoffs))
        info = step.results / "run_info.json"
        if info.is_file():
            config = read_json(info).get("config") or {}
            cutoffs = (config.get("selection") or {}).get("cutoffs")
            if cutoffs:
                return tuple(sorted(float(c) for c in cutoffs))
    return DEFAULT_CUTOFFS


def _job_of_stack(stack: Path) -> Path | None:
    """The job file beside a class-average stack: RELION's model.star or cryoSPARC's .cs."""
    name = stack.name
    for suffix in ("_classes.mrcs", "_classes.mrc"):
        if name.endswith(suffix):
            model = stack.with_name(name[: -len(suffix)] + "_model.star")
            return model if model.is_file() else None
    if name.endswith("_class_averages.mrc"):
        cs = stack.with_suffix(".cs")
        return cs if cs.is_file() else None
    return None


def resolve_stack(stack: str, step: Step) -> Path:
    """The file of a stack named in scores.star (relative to the folder the scoring ran in)."""
    name = stack.removesuffix(":mrcs")
    anchors = [step.scores.parent.resolve(), Path.cwd()]
    return resolve_image_path(name, anchors)


def _job(step: Step, image_names: list) -> Path | None:
    manifest = step.manifest()
    if manifest is not None:
        try:
            model = read_manifest(manifest).model_star
        except InputError:  # the classification's files were moved: show the manifest itself
            model = None
        return model if model is not None else manifest.resolve()
    if not image_names:
        return None
    _, stacks = split_image_names(np.asarray(image_names))
    job = _job_of_stack(resolve_stack(str(stacks[0]), step))
    return job.resolve() if job is not None else None


def _kept(step: Step, classes: pd.DataFrame, cutoffs) -> tuple[pd.DataFrame, str, dict]:
    """Particles of each class kept per cutoff: the final selection's, else what the scores imply."""
    counts = classes["particles"].to_numpy(np.int64) if "particles" in classes else np.zeros(len(classes), np.int64)
    numbers = classes["class"].to_numpy(np.int64)
    kept = pd.DataFrame(index=pd.Index(numbers, name="class"))
    source, status = "scores", {}
    summary = read_selection(step.selection) if step.selection is not None and step.selection.is_file() else None
    if summary is not None and summary.get("step") == "final" and summary.get("cutoffs"):
        source = str(step.selection)
        cutoffs = sorted(float(c) for c in summary["cutoffs"])
        for c in cutoffs:
            chosen = set(summary["cutoffs"][f"{c:g}"].get("classes_kept", []))
            kept[f"le_{c:g}"] = np.where(np.isin(numbers, list(chosen)), counts, 0)
        return kept, source, status
    if summary is not None and summary.get("step") == "round":
        for decision, members in (summary.get("classes") or {}).items():
            for c in members:
                status[int(c)] = decision
    scores = classes["score"].to_numpy(np.float64)
    for c in cutoffs:
        kept[f"le_{c:g}"] = np.where(scores <= c, counts, 0)
    return kept, source, status


def load_step(step: Step) -> StepTable:
    """Read one step's scores (the CSV beside the star for the features), its job and selection.

    Raises
    ------
    InputError
        The scores.star is unreadable or not a cryosift scores.star, or the CSV beside it
        disagrees with it.
    """
    star = require_file(step.scores)
    try:
        blocks = read_star(star)
    except InputError:
        raise
    except Exception as exc:  # the STAR parser raises several error types on a damaged file
        raise InputError(star, f"not a readable STAR file ({type(exc).__name__}: {exc})") from None
    table = blocks.get("model_classes")
    if not isinstance(table, pd.DataFrame) or SCORE_LABEL not in table or "rlnReferenceImage" not in table:
        raise InputError(star, f"no data_model_classes loop with {SCORE_LABEL} and rlnReferenceImage "
                               "(not a cryosift scores.star?)")
    scores = read_scores(star)
    names = table["rlnReferenceImage"].astype(str).tolist()
    classes = scores.copy()
    if "rlnClassDistribution" in table:
        classes["distribution"] = pd.to_numeric(table["rlnClassDistribution"], errors="coerce").to_numpy()
    if "rlnEstimatedResolution" in table:
        classes["resolution_A"] = pd.to_numeric(table["rlnEstimatedResolution"], errors="coerce").to_numpy()
    if step.csv.is_file():
        features = read_scores(step.csv)
        if sorted(features["class"]) != sorted(classes["class"]):
            raise InputError(step.csv, f"its classes differ from those of {star.name} beside it")
        features = features.set_index("class").loc[classes["class"]].reset_index()
        if not np.allclose(features["score"].to_numpy(), classes["score"].to_numpy(), rtol=1e-6, atol=1e-6):
            raise InputError(step.csv, f"its scores differ from those of {star.name} beside it (rescored halfway?)")
        for col in features.columns:
            if col not in ("class", "score"):
                classes[col] = features[col].to_numpy()
    cutoffs = run_cutoffs(step)
    kept, source, status = _kept(step, classes, cutoffs)
    cutoffs = tuple(float(c.removeprefix("le_")) for c in kept.columns)
    return StepTable(step=step, classes=classes.reset_index(drop=True), image_names=names, job=_job(step, names),
                     cutoffs=cutoffs, kept=kept, kept_source=source, round_status=status)
