"""The steps of a map superposition: prepared copies, global search, local refinement.

Shifts inside a step are in voxels of that step's box; rotations act on centred
coordinates. :func:`cryosift.validate.align.align_maps` strings the steps together.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import minimize

from cryosift.io.rotations import angular_distance
from cryosift.validate.fourier_match import (
    OversampledTransform,
    ball_frequencies,
    correlation,
    rotvec_to_matrix,
    shell_correlation,
    translation_search,
)
from cryosift.validate.grids import fourier_crop_volume, fourier_shift, rotation_grid
from cryosift.validate.masks import soft_sphere_mask

log = logging.getLogger(__name__)

#: (score, rotation (3, 3), shift (3,) in voxels of the step's box)
Solution = tuple[float, np.ndarray, np.ndarray]


@dataclass
class PreparedMap:
    """A map cropped to a step's box, its density centre moved to the box centre.

    Attributes
    ----------
    transform : OversampledTransform
        Of the cropped, centred, soft-masked and normalised map.
    centre_A : np.ndarray
        Centred (x, y, z) position in Å of the density centre that was moved to the box
        centre: the prepared map P relates to the map M by P(x) = M(x + centre_A).
    box : int
        Side of the cropped map in voxels.
    pixel_size : float
        Its voxel size in Å.
    """

    transform: OversampledTransform
    centre_A: np.ndarray
    box: int
    pixel_size: float


def density_centre(volume: np.ndarray) -> np.ndarray:
    """Centred (x, y, z) voxel position of the centre of a map's strong density (> mean + 1 sd)."""
    vol = np.asarray(volume, dtype=np.float64)
    w = np.clip(vol - (vol.mean() + vol.std()), 0.0, None)
    total = w.sum()
    if total <= 0:
        return np.zeros(3)
    ax = np.arange(vol.shape[0]) - vol.shape[0] // 2
    return np.array([(w.sum(axis=(0, 1)) * ax).sum(), (w.sum(axis=(0, 2)) * ax).sum(),
                     (w.sum(axis=(1, 2)) * ax).sum()]) / total


def prepare_map(volume: np.ndarray, pixel_size: float, box: int, centre_A=None, device=None) -> PreparedMap:
    """Crop a map to ``box`` voxels, centre its density, soft-mask it and normalise it.

    Parameters
    ----------
    volume : np.ndarray
        Map, shape (n, n, n).
    pixel_size : float
        Its voxel size in Å.
    box : int
        Side of the copy in voxels (<= n).
    centre_A : sequence of 3 floats, optional
        Density centre to use (Å, centred coordinates); found from the map by default.
    device : torch.device, optional
        Where the transform lives.
    """
    full = np.asarray(volume).shape[0]
    small = fourier_crop_volume(volume, box)
    apix = pixel_size * full / box
    if centre_A is None:
        centre_A = density_centre(small) * apix
    small = fourier_shift(small, -np.asarray(centre_A) / apix)
    mask = soft_sphere_mask(box, 0.42 * box, 0.08 * box)
    small = (small - (small * mask).sum() / mask.sum()) * mask
    small /= max(float(np.sqrt((small**2).mean())), 1e-30)
    return PreparedMap(OversampledTransform(small, device), np.asarray(centre_A, dtype=np.float64), box, apix)


def global_search(ref: PreparedMap, mov: PreparedMap, step_deg: float, radius: float, max_shift_A: float,
                  keep: int, batch: int = 64) -> list[Solution]:
    """The ``keep`` best distinct solutions over a rotation grid, each with its best translation.

    Parameters
    ----------
    ref, mov : PreparedMap
        Same box.
    step_deg : float
        Rotation grid spacing, degrees.
    radius : float
        Fourier band used, in cycles per box.
    max_shift_A : float
        Largest translation along each axis, Å.
    keep : int
        Solutions returned, best first, at least 2 x step apart in rotation.
    batch : int
        Rotations per pass.
    """
    device = ref.transform.device
    k, w = ball_frequencies(radius, device)
    f_ref = ref.transform.sample(k)[0]
    rots = torch.as_tensor(rotation_grid(step_deg), dtype=torch.float32, device=device)
    scores, shifts = [], []
    with torch.no_grad():
        for i in range(0, len(rots), batch):
            f_rot = mov.transform.sample(k, rots[i:i + batch])
            s, t = translation_search(f_ref, f_rot, k, w, ref.box, max_shift_A / ref.pixel_size)
            scores.append(s)
            shifts.append(t)
    score = torch.cat(scores).cpu().numpy()
    shift = torch.cat(shifts).cpu().numpy().astype(np.float64)
    rot_np = rots.cpu().numpy().astype(np.float64)
    picked: list[Solution] = []
    for i in np.argsort(-score):
        # Neighbours of a peak score well too; keep distinct rotations only.
        if all(angular_distance(rot_np[i], p[1])[0] > 2.0 * step_deg for p in picked):
            picked.append((float(score[i]), rot_np[i], shift[i]))
            if len(picked) == keep:
                break
    return picked


def refine(ref: PreparedMap, mov: PreparedMap, rotation: np.ndarray, shift_vox: np.ndarray, radius: float,
           iterations: int = 40) -> Solution:
    """Local refinement of one solution (L-BFGS on a rotation vector and a translation).

    Parameters
    ----------
    ref, mov : PreparedMap
        Same box.
    rotation : np.ndarray
        Starting rotation, shape (3, 3).
    shift_vox : np.ndarray
        Starting translation (x, y, z) in voxels, shape (3,).
    radius : float
        Fourier band used, in cycles per box.
    iterations : int
        Most L-BFGS iterations.
    """
    device = ref.transform.device
    k, w = ball_frequencies(radius, device)
    f_ref = ref.transform.sample(k)[0]
    r0 = torch.as_tensor(rotation, dtype=torch.float32, device=device)
    t0 = torch.as_tensor(shift_vox, dtype=torch.float32, device=device)
    # Rotation parameters scaled so one unit moves the particle's edge by about a voxel.
    lever = max(ref.box / 4.0, 1.0)

    def pose(params: torch.Tensor):
        return rotvec_to_matrix(params[:3] / lever) @ r0, t0 + params[3:]

    def score(params: torch.Tensor) -> torch.Tensor:
        rot, t = pose(params)
        return correlation(f_ref, mov.transform.sample(k, rot[None]), k, w, t[None], ref.box)[0]

    def loss_and_gradient(x: np.ndarray):
        params = torch.tensor(x, dtype=torch.float32, device=device, requires_grad=True)
        loss = -score(params)
        loss.backward()
        return float(loss.detach()), params.grad.detach().cpu().numpy().astype(np.float64)

    with torch.enable_grad():
        res = minimize(loss_and_gradient, np.zeros(6), jac=True, method="L-BFGS-B",
                       options={"maxiter": iterations, "gtol": 1e-5, "ftol": 1e-7})
    with torch.no_grad():
        params = torch.as_tensor(res.x, dtype=torch.float32, device=device)
        rot, t = pose(params)
        best = float(score(params))
    log.debug("refined in %d evaluations: %.4f", res.nfev, best)
    return best, rot.cpu().numpy().astype(np.float64), t.cpu().numpy().astype(np.float64)


def coarse_solutions(ref: PreparedMap, mov: PreparedMap, step_deg: float, max_shift_A: float,
                     candidates: int) -> list[Solution]:
    """Global search, then a short refinement of each distinct candidate; best first."""
    found = global_search(ref, mov, step_deg, 0.3 * ref.box, max_shift_A, candidates)
    refined: list[Solution] = []
    for _, rot, t in found:
        # A start inside the basin of a solution already refined would only find it again.
        if any(angular_distance(rot, r)[0] < 2.0 * step_deg and np.abs(t - tt).max() < 3.0 for _, r, tt in refined):
            continue
        refined.append(refine(ref, mov, rot, t, ref.box / 2 - 1, iterations=20))
    return sorted(refined, key=lambda s: -s[0])


def useful_radius(ref: PreparedMap, mov: PreparedMap, solution: Solution, threshold: float = 0.143) -> float:
    """Fourier radius (cycles per box) up to which two superposed maps still correlate.

    The first shell whose correlation falls below ``threshold``, with a margin of 25 %,
    never below 30 % of the box; shells beyond hold only noise and would dilute the score.
    """
    _, rot, t = solution
    device = ref.transform.device
    top = ref.box / 2 - 1
    k, w = ball_frequencies(top, device)
    with torch.no_grad():
        rot_t = torch.as_tensor(rot, dtype=torch.float32, device=device)[None]
        shells = shell_correlation(ref.transform.sample(k)[0], mov.transform.sample(k, rot_t)[0], k, w,
                                   torch.as_tensor(t, dtype=torch.float32, device=device), ref.box)
    below = np.flatnonzero(shells[2:] < threshold)
    if below.size == 0:
        return top
    return float(np.clip(1.25 * (below[0] + 2), 0.3 * ref.box, top))
