"""Re-extraction at full size: selected particles mapped back to the unbinned images they came from.

Classification may run on binned copies (RELION and cryoSPARC engines) or crop in Fourier
space internally (builtin engine). Either way each particle keeps its identity: its
``rlnImageOriginalName`` (set when a binned copy was made) or its ``rlnImageName``. The full-size
particle is the row of the ingested set with that image name; its CTF and optics come from
there, the selection's class and score columns are carried over, 2D alignments are dropped
(they belong to the classification box and are re-determined by ab initio).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from cryosift.errors import InputError
from cryosift.io.convert import read_particles
from cryosift.io.models import ParticleSet, resolve_image_path, split_image_names

CARRIED = ("rlnClassNumber", "rlnParticleFigureOfMerit", "rlnClassScore")


def _identity(pset: ParticleSet) -> np.ndarray:
    """``index@stack`` per particle, the stack as an absolute path: engines rewrite stack names
    (RELION's input gets absolute paths, cryoSPARC's are project-relative), the image stays the same."""
    label = "rlnImageOriginalName" if "rlnImageOriginalName" in pset.particles else "rlnImageName"
    index, paths = split_image_names(pset.particles[label])
    anchors = [pset.source.parent.resolve()] if pset.source is not None else []
    resolved = {p: str(Path(resolve_image_path(p, anchors)).resolve()) for p in pd.unique(paths)}
    return np.array([f"{i}@{resolved[p]}" for i, p in zip(index, paths)], dtype=object)


def map_to_unbinned(selected: ParticleSet, reference: ParticleSet) -> ParticleSet:
    """Rows of ``reference`` (the full-size ingested set) for each particle of ``selected``.

    Raises
    ------
    InputError
        A selected particle that the reference does not hold.
    """
    ref_ids = _identity(reference)
    position = {pid: i for i, pid in enumerate(ref_ids)}
    sel_ids = _identity(selected)
    rows = np.array([position.get(pid, -1) for pid in sel_ids], dtype=np.int64)
    if (rows < 0).any():
        missing = sel_ids[rows < 0][0]
        raise InputError(selected.source, f"particle {missing} is not in the ingested set {reference.source}")
    out = reference.subset(rows)
    for label in CARRIED:
        if label in selected.particles:
            out.particles[label] = selected.particles[label].to_numpy()
    out.source = selected.source
    return out


def extract_unbinned(selected_path, reference_path) -> ParticleSet:
    """Read the selected and the ingested particle files and map the selection to full size."""
    return map_to_unbinned(read_particles(selected_path), read_particles(reference_path))
