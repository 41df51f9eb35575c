"""Ground-truth measures of 2D class averages of simulated particles.

For one classification iteration (``run_itNNN_data.star`` + class averages) and the
simulation's ground truth, every class gets:

- ``purity``: particles among its members (hard assignment, ``rlnClassNumber``). Particles
  with a domain missing (``partial``) count as particles: they are the molecule, a 2D
  average cannot show them apart (3D classification separates them), and what they do
  to the average shows in the FRC below, whose ideal holds the complete particles only.
  All other junk counts against purity. ``true_members`` (complete particles) and
  ``partial_members`` keep the two kinds apart;
- ``inplane_err_deg``, ``shift_err_A``, ``view_spread_deg``: how consistently its true
  members were aligned. A member with true rotation A (RELION matrix) assigned in-plane
  angle psi shows the class in orientation B = Rz(psi)^T A; for a perfectly aligned class of
  one view all B agree. Against their chordal mean, each B's in-plane residual (the twist
  that brings it closest to the mean) is its rotational misalignment and the remaining angle
  its view difference; the in-plane error counts members within 30 degrees of the consensus
  view only (the in-plane angle of very different views is not comparable). Of those, members
  turned more than 30 degrees from the in-plane angle most of them agree on are
  ``misaligned_members``: they add a turned ghost to the average, not a blur, so like junk
  they count against ``aligned_purity`` and are left out of the RMS in-plane and shift errors
  (a sixth of the members flipped by 180 degrees would otherwise read as a 60-degree error
  of a class whose average matches the ideal). The shift
  error is the RMS spread of the members' true centres after the assigned shifts, in the
  class frame. Conventions (sign of psi, shift before or after
  rotation) are taken as the most consistent of the candidates, so the measure does not
  depend on them;
- ``align_err_A`` = sqrt(shift_err² + (radius x inplane_err)²) and ``align_rel`` = align_err /
  diameter;
- ``frc_resolution_A``: FRC 0.5 between the class average and the ideal average, i.e. the mean of
  noise-free, CTF-free projections of its true members, each at its own view but with the
  consensus in-plane angle and no shift (up to 300 members). The ideal is matched to the class
  average over in-plane rotation (3 degrees), mirror and shift first.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch

from cryosift.fourier import shell_index
from cryosift.io.models import split_image_names
from cryosift.io.rotations import euler_to_matrix
from cryosift.masks import soft_disc
from cryosift.projection import Projector

#: Members projected for the ideal average of one class.
MAX_IDEAL_MEMBERS = 300
#: FRC threshold against a noise-free reference.
FRC_THRESHOLD = 0.5
#: Members whose view lies within this angle (degrees) of the class consensus count for the in-plane error.
NEAR_VIEW_DEG = 30.0
#: Near-view members turned further than this (degrees) from the class's consensus in-plane angle are misaligned.
MISALIGNED_DEG = 30.0
#: Coarse in-plane step of the ideal-to-class match, degrees.
MATCH_STEP = 3.0


def fourier_crop_volume(volume: np.ndarray, new_box: int) -> np.ndarray:
    """Crop a cubic map's Fourier transform to ``new_box`` (same physical box, coarser voxels)."""
    box = volume.shape[-1]
    if new_box == box:
        return np.asarray(volume, dtype=np.float32)
    f = np.fft.fftshift(np.fft.fftn(volume))
    s = box // 2 - new_box // 2
    f = f[s:s + new_box, s:s + new_box, s:s + new_box]
    out = np.fft.ifftn(np.fft.ifftshift(f)).real * (new_box / box) ** 3
    return out.astype(np.float32)


def member_table(particles: pd.DataFrame, truth: pd.DataFrame) -> pd.DataFrame:
    """Assigned class and pose of each particle beside its ground truth.

    Parameters
    ----------
    particles : pd.DataFrame
        Particles of a ``run_itNNN_data.star`` (rlnImageName, rlnClassNumber, rlnAnglePsi,
        rlnOriginX/YAngst).
    truth : pd.DataFrame
        The simulation's ground truth, one row per image in stack order.
    """
    index, _ = split_image_names(particles["rlnImageName"])
    gt = truth.iloc[index].reset_index(drop=True)
    return pd.DataFrame({
        "class": particles["rlnClassNumber"].to_numpy(np.int64),
        "psi2d": particles["rlnAnglePsi"].to_numpy(np.float64),
        "ox2d": particles["rlnOriginXAngst"].to_numpy(np.float64),
        "oy2d": particles["rlnOriginYAngst"].to_numpy(np.float64),
        "label": gt["label"].astype(str).to_numpy(),
        "rot": gt["rot"].to_numpy(np.float64), "tilt": gt["tilt"].to_numpy(np.float64),
        "psi": gt["psi"].to_numpy(np.float64),
        "ox": gt["origin_x_A"].to_numpy(np.float64), "oy": gt["origin_y_A"].to_numpy(np.float64),
    })


def mean_rotation(m: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotation matrices (n, 3, 3)."""
    u, _, vt = np.linalg.svd(m.sum(axis=0))
    d = np.sign(np.linalg.det(u @ vt))
    return u @ np.diag([1.0, 1.0, d]) @ vt


def _angle(m: np.ndarray) -> np.ndarray:
    cos = np.clip((np.trace(m, axis1=-2, axis2=-1) - 1.0) / 2.0, -1.0, 1.0)
    return np.arccos(cos)


def _rot2(deg: np.ndarray) -> np.ndarray:
    a = np.radians(deg)
    c, s = np.cos(a), np.sin(a)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def alignment_consistency(members: pd.DataFrame) -> dict:
    """In-plane, shift and view consistency of a class's true members (see the module description).

    Returns
    -------
    dict
        ``inplane_err_deg``, ``view_spread_deg``, ``shift_err_A`` (NaN for fewer than 2 members;
        the errors over the members that are not misaligned), ``misaligned`` (count) and
        ``aligned`` (class-frame rotations with the consensus in-plane angle, (n, 3, 3)).
    """
    n = len(members)
    if n == 0:
        return {"inplane_err_deg": np.nan, "view_spread_deg": np.nan, "shift_err_A": np.nan,
                "misaligned": 0, "aligned": np.zeros((0, 3, 3))}
    a = euler_to_matrix(members["rot"], members["tilt"], members["psi"])
    best = None
    for sign in (1.0, -1.0):
        rz = euler_to_matrix(0.0, 0.0, sign * members["psi2d"].to_numpy())
        b = np.einsum("nji,njk->nik", rz, a)  # Rz^T A
        mean = mean_rotation(b)
        spread = float(np.mean(_angle(np.einsum("nij,kj->nik", b, mean)) ** 2))
        if best is None or spread < best[0]:
            best = (spread, b, mean)
    _, b, mean = best
    m = np.einsum("nij,kj->nik", b, mean)  # B_i mean^T
    phi = np.arctan2(m[:, 1, 0] - m[:, 0, 1], m[:, 0, 0] + m[:, 1, 1])
    rz = euler_to_matrix(0.0, 0.0, np.degrees(phi))
    aligned = np.einsum("nij,njk->nik", rz, b)
    view = _angle(np.einsum("nij,kj->nik", aligned, mean))
    centre = np.column_stack([members["ox2d"] - members["ox"], members["oy2d"] - members["oy"]])
    # The in-plane angle is only comparable between similar views.
    near = view <= np.radians(NEAR_VIEW_DEG)
    resid = inplane_residuals(phi[near])
    off = np.zeros(n, dtype=bool)
    off[np.flatnonzero(near)[np.abs(resid) > np.radians(MISALIGNED_DEG)]] = True
    core = resid[np.abs(resid) <= np.radians(MISALIGNED_DEG)]
    keep = ~off
    spreads = []
    for variant in (None, 1.0, -1.0):
        p = centre if variant is None else np.einsum("nij,nj->ni", _rot2(variant * members["psi2d"].to_numpy()), centre)
        p = p[keep]
        spreads.append(float(np.sqrt(np.mean(np.sum((p - p.mean(axis=0)) ** 2, axis=1)))) if len(p) else np.nan)
    return {"inplane_err_deg": float(np.degrees(np.sqrt(np.mean(core ** 2)))) if len(core) > 1 else np.nan,
            "view_spread_deg": float(np.degrees(np.sqrt(np.mean(view ** 2)))) if n > 1 else np.nan,
            "shift_err_A": min(spreads) if keep.sum() > 1 else np.nan, "misaligned": int(off.sum()),
            "aligned": aligned}


def inplane_residuals(phi: np.ndarray) -> np.ndarray:
    """In-plane residuals (radians, (-pi, pi]) of angles ``phi`` (n,) about their consensus.

    The consensus is the circular mean of the densest window of +-MISALIGNED_DEG (the angle
    most members agree on), so a minority turned far away (often by about 180 degrees) does not
    pull it: those members are what the class shows as a ghost, not a shift of its average.
    """
    phi = np.asarray(phi, dtype=np.float64)
    if len(phi) == 0:
        return phi
    width = np.radians(MISALIGNED_DEG)
    diff = np.abs(np.angle(np.exp(1j * (phi[:, None] - phi[None, :]))))
    centre = phi[int(np.argmax((diff <= width).sum(axis=1)))]
    for _ in range(3):  # refine on the window's own circular mean
        r = np.angle(np.exp(1j * (phi - centre)))
        centre = centre + np.angle(np.mean(np.exp(1j * r[np.abs(r) <= width])))
    return np.angle(np.exp(1j * (phi - centre)))


def _soft_mask(box: int, radius: float) -> torch.Tensor:
    """The classification's particle mask: a ``max(2, 0.06 box)`` px raised-cosine edge, float32, (box, box)."""
    return soft_disc(box, 2, radius, max(2.0, 0.06 * box), tensor=True)


def _rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Rotate one image (box, box) by each angle about pixel box // 2; returns (n, box, box)."""
    box = images.shape[-1]
    a = torch.deg2rad(degrees.to(torch.float32))
    c, s = torch.cos(a), torch.sin(a)
    theta = torch.zeros(len(a), 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = c, -s, s, c
    # Rotate about pixel box // 2, not the geometric centre (matters for even boxes).
    off = (box // 2 - (box - 1) / 2.0) * 2.0 / box
    theta[:, 0, 2] = off - (c * off - s * off)
    theta[:, 1, 2] = off - (s * off + c * off)
    grid = torch.nn.functional.affine_grid(theta, (len(a), 1, box, box), align_corners=False)
    src = images.expand(len(a), 1, box, box)
    return torch.nn.functional.grid_sample(src, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[:, 0]


def _best_shift(ref: torch.Tensor, imgs: torch.Tensor, max_shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-correlation peak of each image against ``ref`` within +-max_shift px: (values, (dy, dx))."""
    box = ref.shape[-1]
    cc = torch.fft.irfft2(torch.fft.rfft2(ref)[None] * torch.conj(torch.fft.rfft2(imgs)), s=(box, box))
    cc = torch.fft.fftshift(cc, dim=(-2, -1))
    c = box // 2
    win = cc[:, c - max_shift:c + max_shift + 1, c - max_shift:c + max_shift + 1].reshape(len(imgs), -1)
    val, idx = win.max(dim=1)
    w = 2 * max_shift + 1
    return val, torch.stack([idx // w - max_shift, idx % w - max_shift], dim=1)


def frc(a: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    """Fourier ring correlation of two images (box, box) for rings 0 .. box // 2 - 1."""
    box = a.shape[-1]
    fa, fb = torch.fft.fft2(a.double()), torch.fft.fft2(b.double())
    ring = shell_index(box, 2, half=False, tensor=True).reshape(-1)
    keep = ring < box // 2
    ring = ring[keep]
    num = torch.zeros(box // 2, dtype=torch.float64).index_add_(0, ring, (fa * fb.conj()).real.reshape(-1)[keep])
    da = torch.zeros(box // 2, dtype=torch.float64).index_add_(0, ring, (fa.abs() ** 2).reshape(-1)[keep])
    db = torch.zeros(box // 2, dtype=torch.float64).index_add_(0, ring, (fb.abs() ** 2).reshape(-1)[keep])
    return (num / torch.sqrt(da * db).clamp(min=1e-30)).numpy()


def frc_resolution(curve: np.ndarray, box: int, pixel_size: float, threshold: float = FRC_THRESHOLD) -> float:
    """Å where the FRC first falls below ``threshold`` (linear between rings); Nyquist if never; inf if at once."""
    below = np.flatnonzero(curve[1:] < threshold) + 1
    if len(below) == 0:
        return 2.0 * pixel_size
    r = int(below[0])
    if r <= 1:
        return math.inf
    lo, hi = curve[r - 1], curve[r]
    frac = (lo - threshold) / (lo - hi) if lo > hi else 0.0
    return box * pixel_size / (r - 1 + frac)


class IdealAverages:
    """Noise-free averages of class members from the true map at the class box.

    Parameters
    ----------
    volume : np.ndarray
        True map (box, box, box), [z, y, x].
    class_box : int
        Side of the class averages in px (the map is Fourier-cropped to it).
    mask_radius : float
        Radius of the class averages' circular mask, px of the class box.
    """

    def __init__(self, volume: np.ndarray, class_box: int, mask_radius: float):
        self.box = int(class_box)
        self.projector = Projector(torch.from_numpy(fourier_crop_volume(volume, self.box)))
        self.mask = _soft_mask(self.box, mask_radius)

    def ideal(self, rotations: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Mean projection over (at most MAX_IDEAL_MEMBERS of) ``rotations`` (n, 3, 3)."""
        if len(rotations) > MAX_IDEAL_MEMBERS:
            rotations = rotations[np.sort(rng.choice(len(rotations), MAX_IDEAL_MEMBERS, replace=False))]
        total = torch.zeros(self.box, self.box)
        for start in range(0, len(rotations), 100):
            total += self.projector.project(torch.from_numpy(rotations[start:start + 100])).sum(dim=0)
        return total / max(1, len(rotations))

    def match(self, average: np.ndarray, ideal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        """Masked class average and the ideal rotated/mirrored/shifted onto it; also the correlation."""
        avg = torch.as_tensor(average, dtype=torch.float32) * self.mask
        ref = ideal * self.mask
        angles = torch.arange(0.0, 360.0, MATCH_STEP)
        cands = torch.cat([_rotate(ref[None, None], angles), _rotate(ref.flip(-1)[None, None], angles)])
        cands = cands - cands.mean(dim=(-2, -1), keepdim=True)
        a0 = avg - avg.mean()
        val, shift = _best_shift(a0, cands, max(1, self.box // 6))
        norm = cands.flatten(1).norm(dim=1) * a0.norm()
        cc = val / norm.clamp(min=1e-12)
        best = int(torch.argmax(cc))
        moved = torch.roll(cands[best], shifts=(int(shift[best, 0]), int(shift[best, 1])), dims=(-2, -1))
        return avg, moved * self.mask, float(cc[best])


def class_measures(members: pd.DataFrame, averages: np.ndarray, class_numbers, pixel_size: float,
                   diameter_A: float, ideal: IdealAverages | None, seed: int = 0) -> pd.DataFrame:
    """Ground-truth measures of every class of one iteration.

    Parameters
    ----------
    members : pd.DataFrame
        :func:`member_table` of the iteration.
    averages : np.ndarray
        Class averages (k, box, box) in class-number order of ``class_numbers``.
    class_numbers : array_like
        1-based class numbers, shape (k,).
    pixel_size : float
        Å/px of the class averages.
    diameter_A : float
        Particle diameter, Å.
    ideal : IdealAverages or None
        Noise-free projections; None skips the FRC (resolution NaN).
    seed : int
        For the choice of members in large classes.

    Returns
    -------
    pd.DataFrame
        One row per class: ``class``, ``members``, ``true_members`` (complete particles),
        ``partial_members`` (a domain missing), ``purity`` (both kinds over all members),
        ``misaligned_members`` (complete particles turned away from the class's in-plane
        angle), ``aligned_purity`` (particles less the misaligned ones, over all members),
        ``inplane_err_deg``, ``view_spread_deg``, ``shift_err_A``, ``align_err_A``,
        ``align_rel``, ``frc_resolution_A``, ``match_cc``.
    """
    rng = np.random.default_rng(seed)
    rows = []
    for k, avg in zip(np.asarray(class_numbers, dtype=np.int64), averages):
        mem = members[members["class"] == k]
        true = mem[mem["label"] == "true"]
        # Partial particles count as particles for the purity (module description).
        n, nt, npart = len(mem), len(true), int((mem["label"] == "partial").sum())
        cons = alignment_consistency(true)
        inplane = 0.0 if np.isnan(cons["inplane_err_deg"]) else math.radians(cons["inplane_err_deg"])
        err = math.hypot(cons["shift_err_A"], inplane * diameter_A / 2.0) if nt - cons["misaligned"] > 1 else np.nan
        res, cc = math.inf, np.nan
        if ideal is not None and nt > 0:
            a, b, cc = ideal.match(avg, ideal.ideal(cons["aligned"], rng))
            res = frc_resolution(frc(a, b), ideal.box, pixel_size)
        rows.append({"class": int(k), "members": n, "true_members": nt, "partial_members": npart,
                     "purity": (nt + npart) / n if n else np.nan, "misaligned_members": cons["misaligned"],
                     "aligned_purity": (nt - cons["misaligned"] + npart) / n if n else np.nan,
                     "inplane_err_deg": cons["inplane_err_deg"], "view_spread_deg": cons["view_spread_deg"],
                     "shift_err_A": cons["shift_err_A"], "align_err_A": err, "align_rel": err / diameter_A,
                     "frc_resolution_A": res if ideal is not None else np.nan, "match_cc": cc})
    return pd.DataFrame(rows)
