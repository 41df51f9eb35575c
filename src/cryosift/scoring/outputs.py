"""Score tables on disk: ``scores.csv`` and a RELION-readable ``scores.star``.

``scores.star`` starts with a ``data_model_classes`` loop (the block relion_display reads
by default) holding, per class: ``rlnReferenceImage`` and ``rlnImageName`` (the same image:
the first as in a model.star, the second what relion_display shows and RELION's image tools
read by default), ``rlnClassNumber``, the raw CryoSift score in ``rlnParticleFigureOfMerit``,
the RELION-convention ``rlnClassScore`` (0..1, higher better), ``rlnClassDistribution`` and
``rlnEstimatedResolution``. A ``data_cryosift`` block after it records the model.

Why ``rlnParticleFigureOfMerit``: RELION 3.1 has no class-score label (``rlnClassScore``
arrived with the Class Ranker in RELION 4). Its tools keep unknown labels only as text,
which relion_display cannot sort on and relion_star_handler cannot select on; a known
numeric label is needed. ``rlnParticleFigureOfMerit`` ("developmental FOM") is numeric and
written by no RELION program, so it never collides with RELION's own values, in class
tables and in particle files alike. Lower is better, so an ascending sort lists the best
classes first: ``relion_display --i scores.star --sort rlnParticleFigureOfMerit``.
RELION's C++ tools read the table back (e.g. ``relion_image_handler --i scores.star``
keeps every column); RELION 3.1's ``relion_star_handler`` only opens particle, micrograph
and movie tables, so select on the particle subsets that ``cryosift select`` writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError, require_file
from cryosift.io.atomic import atomic_path
from cryosift.io.star import read_star, write_star

#: RELION label that carries the raw CryoSift score (1 best ... 5 unusable, unclamped).
SCORE_LABEL = "rlnParticleFigureOfMerit"
#: RELION label of the 0..1 (higher better) class score.
CLASS_SCORE_LABEL = "rlnClassScore"

CSV_COLUMNS = ("class", "score", "class_score", "mass_kDa", "resolution_A", "distribution", "pixel_size_A",
               "mass_dmean_kDa", "mass_dmedian_kDa", "mass_dmode_kDa", "particles", "empty_class", "network_output")


def write_scores_csv(path: str | Path, table: pd.DataFrame) -> Path:
    """Write the score table (one row per class, full float precision) atomically."""
    cols = [c for c in CSV_COLUMNS if c in table] + [c for c in table if c not in CSV_COLUMNS]
    out = Path(path)
    with atomic_path(out) as tmp:
        table[cols].to_csv(tmp, index=False, float_format="%.10g")
    return out


def scores_star_blocks(table: pd.DataFrame, image_names, model: str | None = None) -> dict:
    """STAR blocks of ``scores.star`` (see the module description)."""
    from cryosift import __version__

    if len(image_names) != len(table):
        raise ValueError(f"{len(image_names)} image names for {len(table)} classes")
    classes = pd.DataFrame({
        "rlnReferenceImage": list(image_names),
        "rlnImageName": list(image_names),
        "rlnClassNumber": table["class"].to_numpy(np.int64),
        SCORE_LABEL: table["score"].to_numpy(np.float64),
        CLASS_SCORE_LABEL: table["class_score"].to_numpy(np.float64),
        "rlnClassDistribution": table["distribution"].to_numpy(np.float64),
        "rlnEstimatedResolution": table["resolution_A"].to_numpy(np.float64),
    })
    general = {"cryosiftVersion": __version__, "cryosiftScoreLabel": SCORE_LABEL,
               "cryosiftModel": model or table.attrs.get("model", "unknown")}
    return {"model_classes": classes, "cryosift": general}


def write_scores_star(path: str | Path, table: pd.DataFrame, image_names, model: str | None = None) -> Path:
    """Write ``scores.star`` atomically.

    Parameters
    ----------
    path : str or Path
        Output file.
    table : pd.DataFrame
        From :func:`cryosift.scoring.score_classes`.
    image_names : sequence of str
        ``NNNNNN@stack`` per class (:func:`cryosift.scoring.inputs.class_image_names`).
    model : str, optional
        Description of the model (default: ``table.attrs["model"]``).
    """
    write_star(path, scores_star_blocks(table, image_names, model))
    return Path(path)


def _numeric_scores(path: Path, classes: np.ndarray, raw: pd.Series) -> np.ndarray:
    values = pd.to_numeric(raw, errors="coerce").to_numpy(np.float64)
    for cls, value, text in zip(classes, values, raw):
        text = "" if pd.isna(text) else str(text)
        if np.isnan(value):
            what = "NaN" if text.strip().lower() in ("nan", "-nan", "") else f"{text.strip()!r}, not a number"
            raise InputError(path, f"class {int(cls)}: score is {what}")
    return values


def read_scores(path: str | Path) -> pd.DataFrame:
    """Read per-class scores from ``scores.csv`` or ``scores.star``.

    Scores are parsed as numbers: negative values, values above 5 and exact cutoff
    values are kept as they are.

    Returns
    -------
    pd.DataFrame
        Columns ``class`` (int64, 1-based) and ``score`` (float64), plus any other
        columns of a CSV.

    Raises
    ------
    InputError
        Missing columns, duplicate classes, or a score that is NaN or not a number
        (naming the class).
    """
    p = require_file(path)
    if p.suffix == ".star":
        blocks = read_star(p)
        table = blocks.get("model_classes")
        if not isinstance(table, pd.DataFrame) or SCORE_LABEL not in table:
            raise InputError(p, f"no data_model_classes loop with {SCORE_LABEL} (not a cryosift scores.star?)")
        classes = (table["rlnClassNumber"].to_numpy(np.int64) if "rlnClassNumber" in table
                   else np.arange(1, len(table) + 1))
        out = pd.DataFrame({"class": classes})
        out["score"] = _numeric_scores(p, classes, table[SCORE_LABEL])
    else:
        try:
            table = pd.read_csv(p, dtype={"score": str})
        except Exception as exc:  # pandas raises several parser errors
            raise InputError(p, f"not a readable CSV file ({type(exc).__name__}: {exc})") from None
        for col in ("class", "score"):
            if col not in table:
                raise InputError(p, f"no {col} column (expected class and score)")
        classes = pd.to_numeric(table["class"], errors="coerce")
        if classes.isna().any():
            raise InputError(p, f"class {table['class'][classes.isna()].iloc[0]!r} is not a class number")
        out = table.copy()
        out["class"] = classes.to_numpy(np.int64)
        out["score"] = _numeric_scores(p, out["class"].to_numpy(), table["score"])
    dup = out["class"].duplicated()
    if dup.any():
        raise InputError(p, f"class {int(out['class'][dup].iloc[0])} is listed more than once")
    return out.reset_index(drop=True)
