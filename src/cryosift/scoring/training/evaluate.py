"""How well a scoring model reproduces ground-truth grades on held-out simulated data.

Metrics (docs/training.md, benchmarks/score_quality.py):

- ``spearman``: rank correlation of score and ground-truth grade over all class averages;
- ``auc``: area under the ROC curve of the score separating junk classes (purity < 0.5, or
  no members) from good ones (ground-truth grade <= 3.5); 1 = every junk class scores worse;
- ``mse``: mean squared error of the network output against the [0, 1] target 0.2 (5 - grade),
  the paper's validation figure;
- selection at a cutoff, per dataset on the last classification iteration: fraction of the
  complete particles in classes scoring <= cutoff (kept) and of the junk in the others
  (removed), pooled over datasets; particles with a domain missing are reported apart (kept);
  also for the oracle that selects on the true grades.

:func:`background_texture` measures what the scores of clean classes follow most beyond their
grades: blotches in the average's background, inside the mask but away from the particle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.ndimage import binary_dilation, gaussian_filter
from scipy.stats import spearmanr

from cryosift.errors import InputError
from cryosift.scoring.checkpoint import ScoringModel
from cryosift.scoring.decode import decode
from cryosift.scoring.training.data import Examples
from cryosift.scoring.training.generate import read_training_dataset
from cryosift.scoring.training.train import predict_examples

JUNK_PURITY = 0.5
GOOD_GRADE = 3.5
#: Background texture: Gaussian smoothing (px), particle support (fraction of the smoothed
#: maximum), its dilation (px) and the margin kept from the mask edge (px).
TEXTURE_SMOOTH_PX = 1.5
TEXTURE_SUPPORT = 0.25
TEXTURE_DILATE_PX = 3
TEXTURE_EDGE_PX = 2.0


def roc_auc(bad_scores, good_scores) -> float:
    """P(score of a bad item > score of a good item), ties counting half (Mann-Whitney U / n1 n2)."""
    bad = np.asarray(bad_scores, dtype=np.float64)
    good = np.asarray(good_scores, dtype=np.float64)
    if len(bad) == 0 or len(good) == 0:
        return float("nan")
    allv = np.concatenate([bad, good])
    ranks = pd.Series(allv).rank(method="average").to_numpy()
    u = ranks[: len(bad)].sum() - len(bad) * (len(bad) + 1) / 2.0
    return float(u / (len(bad) * len(good)))


def score_examples(model: ScoringModel, examples: Examples, device=None) -> pd.DataFrame:
    """The examples' table with ``network_output`` and ``score`` added (grade decode)."""
    dev = device if device is not None else model.device
    raw = predict_examples(model.network.to(dev), examples, dev, views=model.config.views)
    table = examples.table.copy()
    table["network_output"] = raw
    table["score"] = decode(raw, "grade") if model.config.decode == "grade" else decode(
        raw, model.config.decode, table["resolution_A"].to_numpy())
    table["target"] = examples.target.numpy().astype(np.float64)
    return table


def selection(table: pd.DataFrame, cutoff: float, column: str = "score") -> dict:
    """Particles kept and junk removed when classes with ``column`` <= cutoff are kept (pooled).

    ``true_kept``: complete particles kept; ``junk_removed``: junk (not particle-like) removed;
    ``partial_kept``: particles with a domain missing kept (NaN when there are none), neither
    particle nor junk here since no 2D selection can tell them apart.
    """
    keep = table[column].to_numpy() <= cutoff
    true, junk = table["true_members"].to_numpy(np.float64), table["junk_members"].to_numpy(np.float64)
    partial = table["partial_members"].to_numpy(np.float64) if "partial_members" in table else np.zeros(len(table))
    return {"true_kept": float(true[keep].sum() / max(true.sum(), 1.0)),
            "junk_removed": float(1.0 - junk[keep].sum() / max(junk.sum(), 1.0)),
            "partial_kept": float(partial[keep].sum() / partial.sum()) if partial.sum() > 0 else float("nan")}


def quality(table: pd.DataFrame, cutoff: float = 3.5) -> dict:
    """All metrics from a scored table (:func:`score_examples` of graded training datasets)."""
    grade = table["grade"].to_numpy(np.float64)
    score = table["score"].to_numpy(np.float64)
    purity = table["purity"].to_numpy(np.float64)
    junk = ~(purity >= JUNK_PURITY)
    good = (grade <= GOOD_GRADE) & ~junk
    out = {
        "classes": int(len(table)),
        "spearman": float(spearmanr(score, grade).statistic) if len(table) > 2 else float("nan"),
        "auc": roc_auc(score[junk], score[good]),
        "junk_classes": int(junk.sum()), "good_classes": int(good.sum()),
        "mse": float(np.mean((table["network_output"].to_numpy() - table["target"].to_numpy()) ** 2)),
        "mae_grade": float(np.mean(np.abs(score - grade))),
    }
    final = table[table["final"].astype(bool)] if "final" in table else table
    out["cutoff"] = cutoff
    out["selection"] = selection(final, cutoff)
    out["oracle_selection"] = selection(final, cutoff, "grade")
    per = [selection(g, cutoff) for _, g in final.groupby("dataset")] if "dataset" in final else []
    if per:
        out["datasets"] = len(per)
        out["datasets_meeting_selection"] = int(sum(p["true_kept"] >= 0.95 and p["junk_removed"] >= 0.90 for p in per))
    return out


def background_texture(average: np.ndarray, mask_radius_px: float) -> float:
    """RMS of a class average's background relative to its particle (0 = clean background).

    The average is smoothed (Gaussian, :data:`TEXTURE_SMOOTH_PX`); the particle is where the
    smoothed average exceeds :data:`TEXTURE_SUPPORT` of its maximum inside the mask, dilated by
    :data:`TEXTURE_DILATE_PX`; the background is the rest of the mask (less a margin at its
    soft edge). Noise that the class did not average out, and junk, show there as blotches.

    Parameters
    ----------
    average : np.ndarray
        (box, box) class average (any scale: the measure is a ratio).
    mask_radius_px : float
        Radius of the classification's circular mask, px of this box.

    Returns
    -------
    float
        RMS(background) / RMS(particle) of the smoothed average; NaN for an empty, flat or
        non-finite average or one whose particle leaves fewer than 20 background pixels.
    """
    img = np.asarray(average, dtype=np.float64)
    if img.ndim != 2 or not np.isfinite(img).all():
        return float("nan")
    box = img.shape[0]
    y, x = np.mgrid[:box, :box] - box // 2
    inside = np.hypot(x, y) < mask_radius_px - TEXTURE_EDGE_PX
    smooth = gaussian_filter(img, TEXTURE_SMOOTH_PX)
    if inside.sum() < 20 or smooth[inside].std() == 0:
        return float("nan")
    particle = binary_dilation(smooth > TEXTURE_SUPPORT * smooth[inside].max(), iterations=TEXTURE_DILATE_PX) & inside
    background = inside & ~particle
    if background.sum() < 20 or not particle.any():
        return float("nan")
    return float(np.sqrt(np.mean(smooth[background] ** 2) / np.mean(smooth[particle] ** 2)))


def dataset_textures(folder: str | Path) -> pd.DataFrame:
    """:func:`background_texture` of every class average of a finished training dataset.

    Returns a frame with ``dataset``, ``iteration``, ``class`` and ``background_texture``; the
    mask radius is the classification's (``settings.json``) over the averages' pixel size.
    """
    f = Path(folder)
    images, table = read_training_dataset(f)
    settings = f / "settings.json"
    try:
        mask_diameter_A = float(json.loads(settings.read_text())["classify"]["particle_diameter"])
    except OSError as exc:
        raise InputError(settings, f"unreadable ({exc.strerror or exc})") from None
    except (ValueError, KeyError, TypeError):
        raise InputError(settings, "no classification mask diameter (classify.particle_diameter)") from None
    radius = mask_diameter_A / 2.0 / table["pixel_size_A"].to_numpy(np.float64)
    out = table[["dataset", "iteration", "class"]].copy()
    out["background_texture"] = [background_texture(im, r) for im, r in zip(images, radius)]
    return out


def texture_bands(table: pd.DataFrame, bands: int = 8, min_purity: float = 0.85, max_grade: float = 4.0) -> pd.DataFrame:
    """Score error of clean classes by background texture (equal-count bands, cleanest first).

    Classes with ``aligned_purity`` >= ``min_purity`` and grade < ``max_grade`` (particle classes
    the grades call usable) are cut into ``bands`` quantiles of ``background_texture``; per band:
    ``classes``, ``texture`` (upper edge), ``bias`` (mean score - grade), ``sd`` and ``mse`` (on
    the [0, 1] target).
    """
    purity = table["aligned_purity"] if "aligned_purity" in table else table["purity"]
    clean = table[(purity >= min_purity) & (table["grade"] < max_grade) & table["background_texture"].notna()]
    if len(clean) < bands:
        return pd.DataFrame(columns=["classes", "texture", "bias", "sd", "mse"])
    err = clean["score"] - clean["grade"]
    band = pd.qcut(clean["background_texture"], bands, labels=False, duplicates="drop")
    out = pd.DataFrame({"classes": err.groupby(band).size(),
                        "texture": clean["background_texture"].groupby(band).max(),
                        "bias": err.groupby(band).mean(), "sd": err.groupby(band).std(),
                        "mse": (err / 5.0).pow(2).groupby(band).mean()})
    return out.reset_index(drop=True)
