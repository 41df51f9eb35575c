"""Superpose one map on another: global rotation search with FFT translation search, both hands.

An ab initio reconstruction comes in an arbitrary orientation, position and hand. The moving
map and its mirror image are each searched over a near-uniform rotation grid on small,
low-passed copies (every rotation gets its best translation from one inverse FFT), the best
distinct solutions are refined locally (L-BFGS on rotation and translation) on larger
copies, and the hand with the higher final correlation wins.

Transform convention (centred coordinates, see :mod:`cryosift.validate.grids`): with M' the
moving map, mirrored first when ``flipped``, the aligned map is A(x) = M'(R^T (x - t)), i.e.
a point y of M' lands on x = R y + t in the reference.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from cryosift.device import pick_device
from cryosift.io.rotations import angular_distance
from cryosift.validate.grids import mirror_map, resample_map
from cryosift.validate.search import coarse_solutions, prepare_map, refine, useful_radius

log = logging.getLogger(__name__)


@dataclass
class MapAlignment:
    """A rigid superposition (with optional change of hand) of a moving map on a reference.

    Attributes
    ----------
    rotation : np.ndarray
        R, float64, shape (3, 3), acting on centred (x, y, z) coordinates.
    shift_A : np.ndarray
        t, float64, shape (3,), (x, y, z) in Å.
    flipped : bool
        The moving map is mirrored (:func:`cryosift.validate.grids.mirror_map`) before R, t.
    score : float
        Normalised correlation of the superposed maps over the Fourier band of the final
        refinement (soft-masked, density-centred copies).
    score_other_hand : float
        The same for the best solution of the other hand (how sure the hand is).
    pixel_size : float
        Voxel size in Å.
    box : int
        Map side in voxels.
    aligned : np.ndarray or None
        The moving map resampled onto the reference grid, float32, shape (box, box, box).
    """

    rotation: np.ndarray
    shift_A: np.ndarray
    flipped: bool
    score: float
    score_other_hand: float
    pixel_size: float
    box: int
    aligned: np.ndarray | None = field(default=None, repr=False)

    @property
    def rotation_angle_deg(self) -> float:
        """Angle of R in degrees."""
        return float(angular_distance(np.eye(3), self.rotation)[0])

    def apply_to_map(self, moving: np.ndarray, order: int = 3) -> np.ndarray:
        """Resample a map of the moving frame (e.g. a half map) onto the reference grid, float32."""
        vol = mirror_map(moving) if self.flipped else np.asarray(moving)
        return resample_map(vol, self.rotation, self.shift_A, self.pixel_size, order=order)

    def moving_frame_map(self, moving: np.ndarray) -> np.ndarray:
        """The moving map in the hand the reference has (mirrored when flipped), not resampled."""
        return mirror_map(moving) if self.flipped else np.asarray(moving)

    def reference_to_moving(self, xyz_A: np.ndarray, reference_origin_A=(0.0, 0.0, 0.0),
                            moving_origin_A=(0.0, 0.0, 0.0)) -> np.ndarray:
        """Carry positions from the reference's frame into the moving map's frame.

        Use it to move an atomic model that fits the reference so that it fits the moving
        map (in the hand of :meth:`moving_frame_map`), without resampling that map.

        Parameters
        ----------
        xyz_A : np.ndarray
            Absolute positions (x, y, z) in Å in the reference frame, shape (n, 3).
        reference_origin_A, moving_origin_A : sequence of 3 floats
            MRC header origins (x, y, z) in Å of the two maps.

        Returns
        -------
        np.ndarray
            float64, shape (n, 3), absolute positions in the moving map's frame.
        """
        centre = (self.box // 2) * self.pixel_size
        x = np.asarray(xyz_A, dtype=np.float64) - np.asarray(reference_origin_A, dtype=np.float64) - centre
        y = (x - self.shift_A) @ self.rotation  # rows: R^T (x - t)
        return y + np.asarray(moving_origin_A, dtype=np.float64) + centre

    def to_dict(self) -> dict:
        """JSON-ready summary (no map)."""
        return {
            "rotation": np.round(self.rotation, 8).tolist(),
            "shift_A": np.round(self.shift_A, 4).tolist(),
            "flipped": bool(self.flipped),
            "hand": "flipped" if self.flipped else "as reconstructed",
            "rotation_angle_deg": round(self.rotation_angle_deg, 3),
            "score": float(self.score),
            "score_other_hand": float(self.score_other_hand),
        }


def align_maps(reference, moving, pixel_size: float, *, both_hands: bool = True, search_box: int = 32,
               refine_box: int = 64, step_deg: float = 15.0, max_shift_A: float | None = None,
               max_resolution_A: float | None = None, candidates: int = 4, resample: bool = True,
               device=None) -> MapAlignment:
    """Find the rotation, translation and hand that best superpose ``moving`` on ``reference``.

    Parameters
    ----------
    reference : np.ndarray or torch.Tensor
        Reference map (e.g. a model map), shape (box, box, box), indexed [z, y, x].
    moving : np.ndarray or torch.Tensor
        Map to superpose, same shape and voxel size.
    pixel_size : float
        Voxel size in Å of both maps.
    both_hands : bool
        Also try the mirror image of ``moving`` (needed for ab initio maps).
    search_box : int
        Box in voxels of the Fourier-cropped copies used for the global search.
    refine_box : int
        Box of the copies used for the final refinement and the choice of hand.
    step_deg : float
        Rotation grid spacing of the global search, degrees.
    max_shift_A : float, optional
        Largest translation searched along each axis, Å (default a quarter of the box).
    max_resolution_A : float, optional
        Finest detail used by the final refinement, Å. By default the band where the two
        maps still correlate after the coarse search (FSC >= 0.143, plus a margin).
    candidates : int
        Distinct global solutions refined per hand.
    resample : bool
        Also return the moving map resampled onto the reference grid (cubic spline).
    device : str or torch.device, optional
        Where the search runs (default: the GPU when there is one, else the CPU).

    Returns
    -------
    MapAlignment

    Notes
    -----
    On the CPU the two hands are searched side by side in threads, each running torch
    single-threaded (the caller's thread setting is restored afterwards): the search is many
    small operations, which parallelise badly inside torch.
    """
    ref = _as_numpy(reference)
    mov = _as_numpy(moving)
    if ref.shape != mov.shape or ref.ndim != 3 or len(set(ref.shape)) != 1:
        raise ValueError(f"maps must be cubic and the same shape, got {ref.shape} and {mov.shape}")
    device = pick_device(None if device is None else str(device))
    box = ref.shape[0]
    search_box = min(search_box - search_box % 2, box)
    refine_box = min(max(refine_box - refine_box % 2, search_box), box)
    if max_shift_A is None:
        max_shift_A = 0.25 * box * pixel_size
    clock = time.perf_counter()
    with _hand_workers(device, 2 if both_hands else 1) as pool:
        ref_s = prepare_map(ref, pixel_size, search_box, device=device)
        ref_f = prepare_map(ref, pixel_size, refine_box, ref_s.centre_A, device)

        def coarse(flipped: bool):
            src = mirror_map(mov) if flipped else mov
            mov_s = prepare_map(src, pixel_size, search_box, device=device)
            mov_f = prepare_map(src, pixel_size, refine_box, mov_s.centre_A, device)
            return mov_s, mov_f, coarse_solutions(ref_s, mov_s, step_deg, max_shift_A, candidates)

        flips = [False, True] if both_hands else [False]
        hands = dict(zip(flips, pool.map(coarse, flips)))
        log.debug("coarse search: %s after %.1f s", ", ".join(
            f"{'mirrored' if h else 'original'} {v[2][0][0]:.3f}" for h, v in hands.items()), time.perf_counter() - clock)
        # One band for both hands, chosen on the better coarse solution, so their scores compare.
        lead = max(hands, key=lambda h: hands[h][2][0][0])
        scale = ref_s.pixel_size / ref_f.pixel_size
        _, lead_fine, lead_coarse = hands[lead]
        first = lead_coarse[0]
        radius = useful_radius(ref_f, lead_fine, (first[0], first[1], first[2] * scale))
        if max_resolution_A:
            radius = min(radius, refine_box * ref_f.pixel_size / max_resolution_A)

        def fine(flipped: bool):
            mov_s, mov_f, found = hands[flipped]
            # Close runners-up get a second chance at the finer sampling.
            contenders = [c for c in found[:2] if c[0] >= found[0][0] - 0.05]
            score, rot, t_vox = max((refine(ref_f, mov_f, r, t * scale, radius) for _, r, t in contenders),
                                    key=lambda s: s[0])
            # Undo the pre-centring: ref_c(x) = ref(x + c_r), mov_c(y) = mov(y + c_m).
            return score, rot, t_vox * ref_f.pixel_size + ref_s.centre_A - rot @ mov_s.centre_A

        results = dict(zip(flips, pool.map(fine, flips)))
    log.debug("refined to %.1f Å in %.1f s: %s", refine_box * ref_f.pixel_size / radius, time.perf_counter() - clock,
              ", ".join(f"{'mirrored' if h else 'original'} {r[0]:.3f}" for h, r in results.items()))
    flipped = max(results, key=lambda h: results[h][0])
    score, rot, t_A = results[flipped]
    other = results[not flipped][0] if both_hands else math.nan
    out = MapAlignment(rot, t_A, flipped, score, other, pixel_size, box)
    if resample:
        out.aligned = out.apply_to_map(mov)
    return out


@contextlib.contextmanager
def _hand_workers(device, hands: int):
    """A pool that searches the hands side by side.

    On the CPU each torch operation of the search is small, so splitting it over threads
    costs more in synchronisation than it gains (and far more on shared, oversubscribed
    cores); instead torch runs single-threaded and the two hands share the allotted cores.
    """
    threads = torch.get_num_threads()
    cpu = torch.device(device).type == "cpu"
    if cpu:
        torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(max(1, min(hands, threads if cpu else 1))) as pool:
            yield pool
    finally:
        if cpu:
            torch.set_num_threads(threads)


def _as_numpy(volume) -> np.ndarray:
    if hasattr(volume, "detach"):
        volume = volume.detach().cpu().numpy()
    return np.asarray(volume, dtype=np.float32)
