"""Training examples as tensors: network input, features, targets, and the structure of each.

Examples come from graded training datasets (:mod:`cryosift.scoring.training.generate`)
or from user labels (:mod:`cryosift.scoring.training.labels`). Images are preprocessed and
features computed exactly as at scoring time (per job: the mass deviations are relative to
the job's classes), so a model sees the same numbers in training and in use.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryosift.errors import InputError
from cryosift.scoring.decode import encode
from cryosift.scoring.features import DEFAULT_FEATURES, FeatureSpec, feature_matrix
from cryosift.scoring.preprocess import DEFAULT_PREPROCESSING, Preprocessing, preprocess
from cryosift.scoring.training.generate import CLASSES_CSV, read_training_dataset

log = logging.getLogger(__name__)


@dataclass
class Examples:
    """Class averages ready for the network.

    Attributes
    ----------
    images : torch.Tensor
        float32 (n, 1, s, s), preprocessed.
    features : torch.Tensor
        float32 (n, 6).
    target : torch.Tensor
        float32 (n,), ``encode(grade, "grade")`` = 0.2 (5 - grade).
    groups : np.ndarray
        Structure id of each example (object array, (n,)); splits never separate a structure.
    table : pd.DataFrame
        One row per example (grade, dataset, class ...).
    """

    images: torch.Tensor
    features: torch.Tensor
    target: torch.Tensor
    groups: np.ndarray
    table: pd.DataFrame

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, index) -> "Examples":
        idx = np.asarray(index, dtype=np.int64)
        t = torch.from_numpy(idx)
        return Examples(self.images[t], self.features[t], self.target[t], self.groups[idx],
                        self.table.iloc[idx].reset_index(drop=True))

    @staticmethod
    def concat(parts: list["Examples"]) -> "Examples":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("no examples")
        return Examples(torch.cat([p.images for p in parts]), torch.cat([p.features for p in parts]),
                        torch.cat([p.target for p in parts]), np.concatenate([p.groups for p in parts]),
                        pd.concat([p.table for p in parts], ignore_index=True))


def job_examples(images: np.ndarray, table: pd.DataFrame, pixel_size: float, grades, group: str,
                 preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
                 features: FeatureSpec = DEFAULT_FEATURES) -> Examples:
    """Examples from the class averages of one job.

    Parameters
    ----------
    images : np.ndarray
        (k, box, box) class averages.
    table : pd.DataFrame
        :func:`cryosift.scoring.features.class_features` of the whole job (k rows).
    pixel_size : float
        Å/px of the images.
    grades : array_like
        Grade (1..5) per class; NaN rows are dropped (after the job's features are computed).
    group : str
        Structure id of the job.
    """
    g = np.asarray(grades, dtype=np.float64)
    feats = feature_matrix(table, features)
    keep = np.isfinite(g)
    x = preprocess(torch.from_numpy(np.asarray(images, dtype=np.float32)[keep]), pixel_size, preprocessing)
    tab = table.loc[keep].reset_index(drop=True).copy()
    tab["grade"] = g[keep]
    return Examples(x.contiguous(), torch.from_numpy(feats[keep]), torch.from_numpy(encode(g[keep], "grade")).float(),
                    np.full(int(keep.sum()), group, dtype=object), tab)


def load_generated(folders, iterations: str = "all", preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
                   features: FeatureSpec = DEFAULT_FEATURES) -> Examples:
    """Examples from finished training datasets.

    Parameters
    ----------
    folders : iterable of str or Path
        Training dataset folders, or folders holding them (every sub-folder with classes.csv).
    iterations : str
        ``all`` graded iterations, ``final`` (the last classification iteration only), or
        comma-separated iteration numbers (e.g. ``9,12``).
    """
    found = find_training_datasets(folders)
    parts = []
    for folder in found:
        images, table = read_training_dataset(folder)
        sel = iteration_mask(table, iterations, folder)
        if not sel.all():
            images, table = images[sel], table.loc[sel].reset_index(drop=True)
        for _, rows in table.groupby("iteration", sort=True).groups.items():
            rows = np.asarray(rows)
            sub = table.loc[rows].reset_index(drop=True)
            stack = np.stack(list(images[rows]))
            parts.append(job_examples(stack, sub, float(sub["pixel_size_A"].iloc[0]), sub["grade"],
                                      str(sub["structure"].iloc[0]), preprocessing, features))
    out = Examples.concat(parts)
    log.info("%d class averages from %d training datasets (%d structures)", len(out), len(found),
             len(set(out.groups)))
    return out


def find_training_datasets(folders) -> list[Path]:
    """Finished training dataset folders (with classes.csv) among ``folders`` and their sub-folders.

    Raises InputError for a path that is neither, or when none is found.
    """
    found: list[Path] = []
    for f in folders:
        p = Path(f)
        if (p / CLASSES_CSV).exists():
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(q.parent for q in p.glob(f"*/{CLASSES_CSV}")))
        else:
            raise InputError(p, "not a training dataset folder")
    if not found:
        raise InputError(None, "no finished training datasets (folders with classes.csv) found in "
                               + ", ".join(str(f) for f in folders))
    return found


def iteration_mask(table: pd.DataFrame, iterations: str, source=None) -> np.ndarray:
    """Rows of a training dataset's table to use (see :func:`load_generated`)."""
    text = str(iterations).strip().lower()
    if text == "all":
        return np.ones(len(table), dtype=bool)
    if text == "final":
        return table["final"].astype(bool).to_numpy()
    try:
        wanted = {int(x) for x in text.split(",") if x.strip()}
    except ValueError:
        raise InputError(source, f"iterations must be all, final or numbers like 9,12, not {iterations!r}") from None
    return table["iteration"].isin(wanted).to_numpy()


def split_by_structure(groups, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held out): a random ``fraction`` of the structures, all their examples held out.

    At least one structure is held out when there are two or more.
    """
    groups = np.asarray(groups, dtype=object)
    names = np.array(sorted(set(groups.tolist())), dtype=object)
    rng = np.random.default_rng([int(seed), 7])
    rng.shuffle(names)
    n_out = int(round(fraction * len(names)))
    if fraction > 0 and len(names) >= 2:
        n_out = min(max(1, n_out), len(names) - 1)
    held = set(names[:n_out].tolist())
    mask = np.array([g in held for g in groups], dtype=bool)
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random rotation by a multiple of 90 degrees and random mirror, per image (exact, no interpolation).

    Rotates about the array centre, so odd boxes keep their centre pixel; the network input
    (default 64 px) is even and the shift of half a pixel is immaterial to a class average.
    """
    n = images.shape[0]
    k = torch.randint(0, 4, (n,), generator=generator)
    flip = torch.randint(0, 2, (n,), generator=generator).bool()
    out = torch.where(flip[:, None, None, None], images.flip(-1), images)
    for r in (1, 2, 3):
        sel = k == r
        if sel.any():
            out[sel] = torch.rot90(out[sel], r, dims=(-2, -1))
    return out
