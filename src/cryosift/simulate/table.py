"""The ground-truth table: every image's label, pose, shift, CTF and half-set, drawn before any image.

Each quantity has its own random stream (seed, stream number), so changing the junk
fractions leaves the poses, shifts and CTFs of every image index unchanged.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryosift.io.models import join_image_names
from cryosift.simulate.junk import assign_labels
from cryosift.simulate.orientations import draw_orientations

#: Columns of ground_truth.csv, in order.
COLUMNS = ("index", "image_name", "micrograph", "label", "detail", "copies", "view", "rot", "tilt", "psi",
           "origin_x_A", "origin_y_A", "defocus_u_A", "defocus_v_A", "defocus_angle", "phase_shift", "bfactor",
           "random_subset", "variant")
_NO_PARTICLE = ("empty_ice", "carbon_edge", "ice_blob")


def stream(seed: int, number: int) -> np.random.Generator:
    """Random stream ``number`` of a dataset seed."""
    return np.random.default_rng([int(seed), int(number)])


def draw_table(spec, stack_name: str = "particles.mrcs", variant_names=()) -> pd.DataFrame:
    """Draw the ground truth of every image of a dataset.

    Parameters
    ----------
    spec : SimulationSpec
    stack_name : str
        Stack file named in ``image_name`` (``NNNNNN@stack``).
    variant_names : sequence of str
        Names of the maps with a domain missing (for ``partial`` junk).

    Returns
    -------
    pd.DataFrame
        One row per image with :data:`COLUMNS`: angles and defocus angle in degrees,
        defocus in Å, origins in Å as RELION's rlnOriginX/YAngst (the particle centre
        lies at the box centre minus the origin), phase shift in degrees, B-factor in Å²,
        random_subset 1 or 2, copies = particles in the image, view -1 for junk or when
        no views are defined.
    """
    n = int(spec.n_particles)
    idx = np.arange(n)
    orient = draw_orientations(spec.orientations, n, stream(spec.seed, 1), n_views=spec.n_views, views=spec.views,
                               preferred_direction=spec.preferred_direction,
                               preferred_strength=spec.preferred_strength)
    shifts = stream(spec.seed, 2).normal(scale=spec.shift_sd_A, size=(n, 2)) if spec.shift_sd_A > 0 else np.zeros((n, 2))
    # CTF per micrograph: particles of one micrograph are consecutive, as after extraction.
    rng = stream(spec.seed, 3)
    mic = idx // spec.particles_per_micrograph
    n_mic = int(mic[-1]) + 1 if n else 0
    mean_df = rng.uniform(*spec.defocus_range, size=n_mic)
    astig = rng.uniform(0.0, spec.astigmatism, size=n_mic)
    angle = rng.uniform(0.0, 180.0, size=n_mic)
    phase = rng.uniform(*spec.phase_shift_range, size=n_mic)
    bfac = rng.uniform(*spec.bfactor_range, size=n_mic)
    subset = 1 + stream(spec.seed, 4).permutation(n) % 2
    labels = assign_labels(spec.junk, n, stream(spec.seed, 5))
    table = pd.DataFrame({
        "index": idx,
        "image_name": join_image_names(idx, np.full(n, stack_name, dtype=object)),
        "micrograph": [f"micrographs/mic{m + 1:05d}.mrc" for m in mic],
        "label": labels,
        "detail": np.full(n, "", dtype=object),
        "copies": np.ones(n, dtype=np.int64),
        "view": orient["view"],
        "rot": orient["rot"], "tilt": orient["tilt"], "psi": orient["psi"],
        "origin_x_A": shifts[:, 0], "origin_y_A": shifts[:, 1],
        "defocus_u_A": (mean_df + astig / 2)[mic], "defocus_v_A": (mean_df - astig / 2)[mic],
        "defocus_angle": angle[mic], "phase_shift": phase[mic], "bfactor": bfac[mic],
        "random_subset": subset.astype(np.int64),
        "variant": np.full(n, -1, dtype=np.int64),
    })
    _junk_details(table, spec, variant_names, stream(spec.seed, 6))
    return table


def _junk_details(table: pd.DataFrame, spec, variant_names, rng: np.random.Generator) -> None:
    """Fill copies, detail, variant and off-centre shifts of junk rows (in place)."""
    label = table["label"].to_numpy()
    table.loc[label != "true", "view"] = -1
    table.loc[np.isin(label, _NO_PARTICLE), "copies"] = 0
    agg = np.flatnonzero(label == "aggregate")
    copies = rng.integers(3, 7, size=len(agg))
    table.loc[agg, "copies"] = copies
    table.loc[agg, "detail"] = [f"{c} particles" for c in copies]
    off = np.flatnonzero(label == "off_centre")
    radius = rng.uniform(0.3, 0.5, size=len(off)) * spec.box * spec.pixel_size
    phi = rng.uniform(0, 2 * np.pi, size=len(off))
    table.loc[off, "origin_x_A"] = radius * np.cos(phi)
    table.loc[off, "origin_y_A"] = radius * np.sin(phi)
    table.loc[off, "detail"] = [f"{r:.0f} A off centre" for r in radius]
    part = np.flatnonzero(label == "partial")
    if len(part):
        if not len(variant_names):
            raise ValueError("partial junk needs a model with at least two domains, chains or regions")
        variant = rng.integers(0, len(variant_names), size=len(part))
        table.loc[part, "variant"] = variant
        table.loc[part, "detail"] = [variant_names[v] for v in variant]
