"""Training examples as tensors: network input, features, targets, and the structure of each.

Examples come from graded training datasets (:mod:`cryosift.scoring.training.generate`)
or from user labels (:mod:`cryosift.scoring.training.labels`). Images are preprocessed and
features computed exactly as at scoring time (per job: the mass deviations are relative to
the job's classes), so a model sees the same numbers in training and in use.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryosift.errors import InputError
from cryosift.scoring.decode import encode
from cryosift.scoring.features import DEFAULT_FEATURES, FeatureSpec, feature_matrix
from cryosift.scoring.preprocess import (DEFAULT_PREPROCESSING, Preprocessing, background_normalise, centre_crop,
                                        fourier_resize, preprocess)
from cryosift.scoring.solvent import level_solvent
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
    diameter_px : torch.Tensor or None
        float32 (n,): the particle's diameter in network-input px (NaN where unknown, as for
        user grades); used by the rendering augmentation (:func:`render_augment`).
    """

    images: torch.Tensor
    features: torch.Tensor
    target: torch.Tensor
    groups: np.ndarray
    table: pd.DataFrame
    diameter_px: torch.Tensor | None = None

    def __post_init__(self):
        if self.diameter_px is None:
            self.diameter_px = torch.full((len(self.target),), float("nan"))

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, index) -> "Examples":
        idx = np.asarray(index, dtype=np.int64)
        t = torch.from_numpy(idx)
        return Examples(self.images[t], self.features[t], self.target[t], self.groups[idx],
                        self.table.iloc[idx].reset_index(drop=True), self.diameter_px[t])

    @staticmethod
    def concat(parts: list["Examples"]) -> "Examples":
        parts = [p for p in parts if len(p)]
        if not parts:
            raise ValueError("no examples")
        return Examples(torch.cat([p.images for p in parts]), torch.cat([p.features for p in parts]),
                        torch.cat([p.target for p in parts]), np.concatenate([p.groups for p in parts]),
                        pd.concat([p.table for p in parts], ignore_index=True),
                        torch.cat([p.diameter_px for p in parts]))


def job_examples(images: np.ndarray, table: pd.DataFrame, pixel_size: float, grades, group: str,
                 preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
                 features: FeatureSpec = DEFAULT_FEATURES, level: bool = False) -> Examples:
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
    level : bool
        Level the solvent step of masked averages first, as scoring does
        (:mod:`cryosift.scoring.solvent`); for measuring a model as ``cryosift score`` runs it.
        Training leaves it off, so the shipped recipe's inputs stay as they were.

    The particle's diameter (``diameter_A`` of the table, when it has one) is kept in
    network-input px for the rendering augmentation.
    """
    g = np.asarray(grades, dtype=np.float64)
    feats = feature_matrix(table, features)
    keep = np.isfinite(g)
    if level:
        images = level_solvent(images)[0]
    x = preprocess(torch.from_numpy(np.asarray(images, dtype=np.float32)[keep]), pixel_size, preprocessing)
    tab = table.loc[keep].reset_index(drop=True).copy()
    tab["grade"] = g[keep]
    diameter = np.full(int(keep.sum()), np.nan)
    if "diameter_A" in tab:
        diameter = tab["diameter_A"].to_numpy(np.float64) / input_pixel_size(np.asarray(images).shape[-1], pixel_size,
                                                                               preprocessing)
    return Examples(x.contiguous(), torch.from_numpy(feats[keep]), torch.from_numpy(encode(g[keep], "grade")).float(),
                    np.full(int(keep.sum()), group, dtype=object), tab, torch.from_numpy(diameter).float())


def load_generated(folders, iterations: str = "all", preprocessing: Preprocessing = DEFAULT_PREPROCESSING,
                   features: FeatureSpec = DEFAULT_FEATURES, level: bool = False) -> Examples:
    """Examples from finished training datasets.

    Parameters
    ----------
    folders : iterable of str or Path
        Training dataset folders, or folders holding them (every sub-folder with classes.csv).
    iterations : str
        ``all`` graded iterations, ``final`` (the last classification iteration only), or
        comma-separated iteration numbers (e.g. ``9,12``).
    level : bool
        See :func:`job_examples`.
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
                                      str(sub["structure"].iloc[0]), preprocessing, features, level))
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


def input_pixel_size(box: int, pixel_size: float, preprocessing: Preprocessing) -> float:
    """Å per network-input px of a ``box``-px class average at ``pixel_size`` Å/px."""
    if preprocessing.mode == "fourier" and preprocessing.pixel_size is not None:
        return float(preprocessing.pixel_size)
    if preprocessing.mode == "fourier":
        return float(box) * float(pixel_size) / float(preprocessing.input_size)
    return float(pixel_size) * max(1.0, float(box) / float(preprocessing.input_size))


#: Ranges of the rendering augmentation, from how RELION jobs are set up, not from any scored set:
#: boxes of 1.2-2.0 particle diameters (binned 2D jobs are often boxed tightly), mask diameters
#: of 1.05-1.35 particle diameters (RELION's advice: a little larger than the particle), soft edges
#: of 2-5 network px (RELION's default 5 px edge at the job's own, usually finer, box).
RENDER_BOX_RATIO = (1.2, 2.0)
RENDER_MASK_RATIO = (1.05, 1.35)
RENDER_EDGE_PX = (2.0, 5.0)


def render_augment(images: torch.Tensor, diameter_px: torch.Tensor, generator: torch.Generator,
                   probability: float) -> torch.Tensor:
    """Render preprocessed class averages as other jobs would have boxed and masked them.

    Each image with a known particle diameter is, with ``probability``: cut to a box of
    :data:`RENDER_BOX_RATIO` particle diameters when its own box is larger (the centre, Fourier
    rescaled back to the input size, as preprocessing rescales any box); masked as RELION masks
    class averages, a soft circle of :data:`RENDER_MASK_RATIO` particle diameters with zero
    beyond, the mean within the mask subtracted (CTF-corrected averages carry little of the
    lowest frequencies, so solvent next to the particle is darker than the flat region outside
    the mask); then background-normalised again. The grade does not change: the particle's
    average, its alignment and its resolution are the same.

    Parameters
    ----------
    images : torch.Tensor
        (n, 1, s, s) preprocessed images.
    diameter_px : torch.Tensor
        (n,) particle diameter in input px; NaN: left as it is.
    generator : torch.Generator
    probability : float
        Chance per image.

    Returns
    -------
    torch.Tensor
        (n, 1, s, s); the images not drawn (or of unknown diameter) unchanged.
    """
    if probability <= 0:  # no draws: the generator's stream stays that of a recipe without it
        return images
    n, size = images.shape[0], images.shape[-1]
    draws = torch.rand((n, 4), generator=generator, dtype=torch.float64)
    out = images.clone()
    c = torch.arange(size, dtype=torch.float64) - size // 2
    radius = torch.hypot(c[:, None], c[None, :])
    for i in range(n):
        d = float(diameter_px[i])
        if not (math.isfinite(d) and d > 0) or float(draws[i, 0]) >= probability:
            continue
        x = out[i, 0].to(torch.float64)
        ratio = RENDER_BOX_RATIO[0] + (RENDER_BOX_RATIO[1] - RENDER_BOX_RATIO[0]) * float(draws[i, 1])
        cut = int(round(ratio * d / 2.0)) * 2
        if 8 <= cut < size:
            x = fourier_resize(centre_crop(x[None], cut), size)[0].to(torch.float64)
            d = d * size / cut
        mask_d = min(d * (RENDER_MASK_RATIO[0] + (RENDER_MASK_RATIO[1] - RENDER_MASK_RATIO[0]) * float(draws[i, 2])),
                     size - 2.0)
        edge = RENDER_EDGE_PX[0] + (RENDER_EDGE_PX[1] - RENDER_EDGE_PX[0]) * float(draws[i, 3])
        t = ((radius - mask_d / 2.0) / edge).clamp(0.0, 1.0)
        inside = 0.5 + 0.5 * torch.cos(math.pi * t)
        mean = (x * inside).sum() / inside.sum()
        y = (x - mean) * inside
        out[i, 0] = background_normalise(y[None].to(torch.float32))[0]
    return out
