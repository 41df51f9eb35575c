"""Junk picks: exact counts per type, and their images before the CTF.

Each junk image is drawn in the same units as the particle projections (projected
density), scaled by ``ref_peak``, the typical peak of a particle projection; the CTF
and the noise are added afterwards exactly as for particles.

- ``empty_ice``: ice alone (faint, smooth thickness variation).
- ``carbon_edge``: the edge of the carbon support film crossing the box.
- ``ice_blob``: one to three dense spheres (ice crystals, contaminants).
- ``aggregate``: three to six particles clumped together, picked at the clump's centre.
- ``off_centre``: a particle 30-50 % of the box away from the centre, clipped by the box edge.
- ``partial``: a particle with a domain (chain, region) missing.
"""

from __future__ import annotations

import numpy as np
import torch

from cryosift.io.rotations import euler_to_matrix
from cryosift.simulate.orientations import angles_from_direction, uniform_directions
from cryosift.simulate.renderer import ParticleRenderer, place
from cryosift.simulate.spec import JUNK_TYPES

#: Junk types drawn in real space (the others are projections of a map).
REAL_SPACE_TYPES = ("empty_ice", "carbon_edge", "ice_blob", "aggregate", "off_centre")


def junk_counts(fractions: dict, n: int) -> dict:
    """Images per junk type: round(fraction x n) each, by largest remainders so the total is round(sum x n).

    Returns
    -------
    dict
        Junk type -> count, in :data:`JUNK_TYPES` order, zero counts included.
    """
    kinds = [k for k in JUNK_TYPES if fractions.get(k, 0) > 0]
    want = np.array([fractions[k] * n for k in kinds], dtype=np.float64)
    counts = np.floor(want + 1e-9).astype(np.int64)
    total = min(n, int(round(float(want.sum()) + 1e-9)))
    order = np.argsort(-(want - counts), kind="stable")
    for i in order[: max(0, total - int(counts.sum()))]:
        counts[i] += 1
    out = {k: 0 for k in JUNK_TYPES}
    out.update({k: int(c) for k, c in zip(kinds, counts)})
    return out


def assign_labels(fractions: dict, n: int, rng: np.random.Generator) -> np.ndarray:
    """Label per image ("true" or a junk type) with exact counts, in random order; object array (n,)."""
    counts = junk_counts(fractions, n)
    labels = np.concatenate([np.full(c, k, dtype=object) for k, c in counts.items()]
                            + [np.full(n - sum(counts.values()), "true", dtype=object)])
    return labels[rng.permutation(n)]


def junk_generator(seed: int, index: int) -> np.random.Generator:
    """The random stream of one junk image (independent of chunking)."""
    return np.random.default_rng([seed, 11, int(index)])


def _smooth_field(rng, size: int, sigma_px: float) -> np.ndarray:
    """Gaussian random field of unit variance, correlated over ``sigma_px`` (Fourier filtering), (size, size)."""
    ky = np.fft.fftfreq(size)[:, None]
    kx = np.fft.rfftfreq(size)[None, :]
    ft = np.fft.rfft2(rng.standard_normal((size, size))) * np.exp(-2 * np.pi**2 * sigma_px**2 * (kx**2 + ky**2))
    field = np.fft.irfft2(ft, s=(size, size))
    return field / (field.std() + 1e-12)


def _grid(canvas: int) -> tuple[np.ndarray, np.ndarray]:
    y, x = np.mgrid[:canvas, :canvas] - canvas // 2
    return y, x


def empty_ice(rng, box: int, canvas: int, ref_peak: float) -> np.ndarray:
    """Faint smooth ice-thickness variation, shape (canvas, canvas)."""
    return 0.05 * ref_peak * _smooth_field(rng, canvas, box / 8)


def carbon_edge(rng, box: int, canvas: int, ref_peak: float) -> np.ndarray:
    """A straight, slightly soft carbon film edge within 30 % of the box from its centre; (canvas, canvas)."""
    angle = rng.uniform(0, 2 * np.pi)
    offset = rng.uniform(-0.3, 0.3) * box
    y, x = _grid(canvas)
    d = x * np.cos(angle) + y * np.sin(angle) - offset
    film = 1.0 / (1.0 + np.exp(-d / rng.uniform(0.5, 1.5)))
    thickness = rng.uniform(1.0, 3.0) * ref_peak
    texture = 1.0 + 0.25 * _smooth_field(rng, canvas, 1.0)
    return thickness * film * texture


def ice_blob(rng, box: int, canvas: int, ref_peak: float) -> np.ndarray:
    """One to three dense spheres in projection, shape (canvas, canvas)."""
    y, x = _grid(canvas)
    out = np.zeros((canvas, canvas))
    for _ in range(int(rng.integers(1, 4))):
        radius = rng.uniform(0.1, 0.35) * box
        cx, cy = rng.uniform(-0.3, 0.3, size=2) * box
        r2 = radius**2 - (x - cx) ** 2 - (y - cy) ** 2
        peak = rng.uniform(1.0, 4.0) * ref_peak
        out += peak * np.sqrt(np.clip(r2, 0, None)) / radius
    return out


def aggregate_layout(rng, rot, tilt, psi, shift_px, copies: int, diameter_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Poses and positions of particles clumped together, the clump centred on the given position.

    The first particle has the given pose; each other one touches an earlier one. The pick is the
    clump's centre (the mean of the particle centres), where a picker finds a blob of that size,
    so no particle need sit at the centre: a particle picked with its neighbours touching it is a
    particle, not an aggregate.

    Returns
    -------
    rotations : np.ndarray
        (copies, 3, 3).
    positions : np.ndarray
        Centres (x, y) in px from the box centre, (copies, 2).
    """
    d = uniform_directions(rng, copies - 1)
    r2, t2 = angles_from_direction(d)
    rots = euler_to_matrix(np.r_[rot, r2], np.r_[tilt, t2], np.r_[psi, rng.uniform(-180, 180, copies - 1)])
    step = rng.uniform(0.55, 0.85, size=copies - 1) * diameter_px
    phi = rng.uniform(0, 2 * np.pi, size=copies - 1)
    anchors = rng.integers(0, np.arange(1, copies))  # each copy touches an earlier one
    pos = np.zeros((copies, 2))
    for k in range(1, copies):
        pos[k] = pos[anchors[k - 1]] + step[k - 1] * np.array([np.cos(phi[k - 1]), np.sin(phi[k - 1])])
    return rots, pos - pos.mean(axis=0) + np.asarray(shift_px)


def density_image(kind: str, rng, box: int, canvas: int, ref_peak: float) -> np.ndarray:
    """Pre-CTF image of ice, carbon or blobs, (canvas, canvas)."""
    return {"empty_ice": empty_ice, "carbon_edge": carbon_edge, "ice_blob": ice_blob}[kind](rng, box, canvas, ref_peak)


def render_junk(rows, renderer: ParticleRenderer, seed: int, ref_peak: float, diameter_px: float,
                canvas: int) -> torch.Tensor:
    """Pre-CTF images of real-space junk picks (see :data:`REAL_SPACE_TYPES`), float32 (n, canvas, canvas).

    The canvas (larger than the box, same centre) lets the CTF act as on a micrograph:
    objects beyond the box edge still send fringes into it, and nothing wraps around.
    Particles of aggregates and off-centre picks are projected together in one batch.

    Parameters
    ----------
    rows : pd.DataFrame
        Ground-truth rows (``index``, ``label``, ``rot``, ``tilt``, ``psi`` degrees,
        ``origin_x_A``, ``origin_y_A`` Å as RELION origins, ``copies``).
    seed : int
        Dataset seed; each image draws from its own stream (:func:`junk_generator`).
    """
    box, apix = renderer.box, renderer.pixel_size
    out = torch.zeros((len(rows), canvas, canvas), dtype=torch.float32, device=renderer.device)
    rots, pos, owner = [], [], []
    for k, (_, row) in enumerate(rows.iterrows()):
        rng = junk_generator(seed, row["index"])
        kind = row["label"]
        shift = -np.array([row["origin_x_A"], row["origin_y_A"]]) / apix  # RELION: centre = box centre - origin
        if kind == "aggregate":
            r, p = aggregate_layout(rng, row["rot"], row["tilt"], row["psi"], shift, int(row["copies"]), diameter_px)
        elif kind == "off_centre":
            r, p = euler_to_matrix(row["rot"], row["tilt"], row["psi"]), shift[None]
        elif kind in ("empty_ice", "carbon_edge", "ice_blob"):
            out[k] = torch.as_tensor(density_image(kind, rng, box, canvas, ref_peak), dtype=torch.float32)
            continue
        else:
            raise ValueError(f"{kind} is not a real-space junk type")
        rots.append(r)
        pos.append(p)
        owner += [k] * len(p)
    if rots:
        pos = np.concatenate(pos)
        whole = np.round(pos)
        img = renderer.project(np.concatenate(rots), pos - whole)  # sub-pixel part as a phase shift
        big = torch.zeros((len(pos), canvas, canvas), dtype=img.dtype, device=img.device)
        o = canvas // 2 - box // 2
        big[:, o:o + box, o:o + box] = img
        placed = place(big, whole.astype(np.int64))
        # Row by row in a fixed order: index_add_ accumulates in arbitrary order on a GPU.
        for i, k in enumerate(owner):
            out[k] += placed[i]
    return out
