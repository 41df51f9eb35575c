"""Score one job end to end: read the class averages, score them, write star/csv/png."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryosift.device import pick_device
from cryosift.errors import InputError
from cryosift.scoring.checkpoint import ScoringModel, load_checkpoint
from cryosift.scoring.domain import DomainWarning, check_scores_domain, log_warnings
from cryosift.scoring.gallery import write_gallery
from cryosift.scoring.inference import DEFAULT_BATCH_SIZE, score_classes
from cryosift.scoring.inputs import class_image_names, load_classes
from cryosift.scoring.outputs import CSV_COLUMNS, write_scores_csv, write_scores_star
from cryosift.shipped import SHIPPED_MODEL, model_file

log = logging.getLogger(__name__)

NO_MODEL_HELP = ("the shipped scoring model is missing from this installation (expected {path}); reinstall "
                 "cryosift, train one with `cryosift train` (or `snakemake train`), or pass a checkpoint with --model")


@dataclass
class ScoreOutputs:
    """Paths written by :func:`score_job`, the score table and its out-of-domain warnings."""

    star: Path
    csv: Path
    gallery: Path | None
    table: pd.DataFrame
    warnings: list[DomainWarning] = field(default_factory=list)


def output_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """``scores.star``, ``.csv`` and ``.png`` paths for ``out`` (a .star file or a folder)."""
    p = Path(out)
    if p.suffix != ".star":
        p = p / "scores.star"
    return p, p.with_suffix(".csv"), p.with_suffix(".png")


def resolve_model(model: str | Path | ScoringModel | None, device=None) -> ScoringModel:
    """The model to score with: the given one; None or ``"default"`` -> the shipped model.

    Raises
    ------
    InputError
        The checkpoint is missing or unreadable, or the shipped model is absent.
    """
    if isinstance(model, ScoringModel):
        return model.to(device) if device is not None else model
    path = model_file(model)
    if path == SHIPPED_MODEL and not path.exists():
        raise InputError(None, NO_MODEL_HELP.format(path=SHIPPED_MODEL))
    return load_checkpoint(path, device=device)


def score_job(path: str | Path, model: str | Path | ScoringModel | None, out: str | Path, *,
              particles: str | Path | None = None, features: str | Path | None = None,
              pixel_size: float | None = None, batch_size: int = DEFAULT_BATCH_SIZE, device=None,
              gallery: bool = True, gallery_columns: int = 10) -> ScoreOutputs:
    """Score the class averages of one job and write ``scores.star``, ``scores.csv`` and a gallery.

    Parameters
    ----------
    path : str or Path
        Class averages (see :func:`cryosift.scoring.inputs.load_classes`).
    model : str, Path, ScoringModel or None
        Checkpoint to score with; None or ``"default"``: the shipped model.
    out : str or Path
        ``scores.star`` path (the CSV and PNG get the same stem) or a folder.
    particles, features, pixel_size
        Passed to :func:`load_classes`.
    batch_size : int
        Classes per forward pass.
    device : str or torch.device, optional
        Default: CUDA when present, else CPU.
    gallery : bool
        Also write the PNG gallery.
    gallery_columns : int
        Panels per gallery row.

    When the scores look unlike those of validated jobs (:mod:`cryosift.scoring.domain`),
    one warning line is logged that names the gallery and how to fine-tune.
    """
    dev = device if isinstance(device, torch.device) else pick_device(device)
    scoring_model = resolve_model(model, device=dev)
    classes = load_classes(path, particles=particles, features=features, pixel_size=pixel_size)
    table = score_classes(classes, scoring_model, batch_size=batch_size)
    star, csv, png = output_paths(out)
    write_scores_csv(csv, table)
    write_scores_star(star, table, class_image_names(classes))
    if gallery:
        write_gallery(png, classes.images, table, columns=gallery_columns)
    warnings = check_scores_domain(table["score"], table["distribution"], table["empty_class"])
    log_warnings(warnings, png if gallery else None, log)
    return ScoreOutputs(star, csv, png if gallery else None, table, warnings)


def write_no_scores(out, gallery: bool = True) -> ScoreOutputs:
    """Outputs of a classification without classes (every particle was rejected before it)."""
    dtypes = {"class": np.int64, "particles": np.int64, "empty_class": bool}
    table = pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, np.float64)) for c in CSV_COLUMNS})
    star, csv, png = output_paths(out)
    write_scores_csv(csv, table)
    write_scores_star(star, table, [], model="none (no classes)")
    if gallery:
        write_gallery(png, np.zeros((0, 8, 8), np.float32), table)
    log.warning("no classes to score (the classification had no particles): %s is empty", csv)
    return ScoreOutputs(star, csv, png if gallery else None, table)
