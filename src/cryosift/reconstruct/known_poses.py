"""Reconstruction of a map from particles whose poses are known (RELION conventions).

Particles are streamed from their stacks in chunks, CTF-weighted and inserted into two
half-set backprojectors (rlnRandomSubset, or a seeded split when a set has none); the
half-set correlation sets a Wiener regulariser per shell, so maps are filtered by what
the data support rather than by a user-chosen resolution.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from cryosift.device import pick_device
from cryosift.errors import InputError
from cryosift.io.images import read_particle_images
from cryosift.io.models import ParticleSet
from cryosift.io.mrc import write_map
from cryosift.logs import ProgressLog
from cryosift.reconstruct.backproject import Backprojector, spectral_snr, wiener_regulariser
from cryosift.reconstruct.particles import (
    assign_half_sets,
    common_pixel_size,
    half_plane_frequencies,
    half_sets,
    image_transforms,
    particle_ctfs,
    particle_poses,
    undo_origin,
)
from cryosift.reconstruct.symmetry import expand_rotations, symmetry_order

log = logging.getLogger(__name__)

#: Particles read, transformed and inserted at a time.
DEFAULT_CHUNK = 256


def _rows(pset: ParticleSet, subset) -> np.ndarray:
    if subset is None:
        return np.arange(len(pset))
    sel = np.asarray(subset)
    if sel.dtype == bool:
        if sel.shape != (len(pset),):
            raise ValueError(f"subset mask has {sel.shape[0]} entries for {len(pset)} particles")
        return np.flatnonzero(sel)
    return sel.astype(np.int64)


def _halves_of(pset: ParticleSet) -> np.ndarray:
    if "rlnRandomSubset" in pset.particles:
        return half_sets(pset)
    # A seeded split only drives the Wiener filter; it never reaches the output.
    return assign_half_sets(len(pset), seed=0)


def backproject_particles(pset: ParticleSet, rows: np.ndarray, halves: np.ndarray, symmetry: str = "C1",
                          device=None, chunk: int = DEFAULT_CHUNK, progress: bool = False,
                          ctf: bool = True) -> tuple[Backprojector, Backprojector]:
    """Insert the selected particles into one backprojector per half set.

    Parameters
    ----------
    pset : ParticleSet
        Particles with rlnAngleRot/Tilt/Psi (origins and CTF labels used when present).
    rows : np.ndarray
        Particle positions to use, int64, shape (m,).
    halves : np.ndarray
        Half set (1 or 2) of every particle of ``pset``, shape (n,).
    symmetry : str
        Point group imposed (C1, Cn, Dn).
    device : torch.device, optional
        Default: GPU when present.
    chunk : int
        Particles per chunk.
    progress : bool
        Show a progress bar.
    ctf : bool
        Weight by the particles' CTFs.

    Returns
    -------
    (Backprojector, Backprojector)
        Accumulators of half set 1 and half set 2.
    """
    device = pick_device(None if device is None else str(device))
    box = pset.box
    if box % 2:
        raise InputError(pset.source, f"box of {box} px is odd; reconstruction needs an even box")
    pixel_size = common_pixel_size(pset)
    rotations, origins = particle_poses(pset)
    order = symmetry_order(symmetry)
    rotations = expand_rotations(rotations, symmetry).reshape(-1, order, 3, 3)
    bps = (Backprojector(box, device=device), Backprojector(box, device=device))
    index, freqs, mult = half_plane_frequencies(box, box // 2 - 1, device=device)
    starts = range(0, len(rows), chunk)
    if progress:
        from tqdm import tqdm

        starts = tqdm(starts, total=(len(rows) + chunk - 1) // chunk, unit="chunk", desc="backprojecting")
    done = ProgressLog(log, "backprojected particles", len(rows), every=30.0)
    for s in starts:
        sel = rows[s:s + chunk]
        images = read_particle_images(pset, sel)
        x = image_transforms(images, device).reshape(len(sel), -1)[:, index]
        x = undo_origin(x, freqs, torch.as_tensor(origins[sel], device=device), box)
        c = particle_ctfs(pset, sel, box, pixel_size, device, ctf).reshape(len(sel), -1)[:, index]
        values, weights = c * x * mult, c * c * mult
        for h, bp in zip((1, 2), bps):
            pick = np.flatnonzero(halves[sel] == h)
            if len(pick) == 0:
                continue
            t = torch.as_tensor(pick, device=device)
            rot = torch.as_tensor(rotations[sel[pick]].reshape(-1, 3, 3), device=device)
            bp.insert(freqs, values[t].repeat_interleave(order, 0), weights[t].repeat_interleave(order, 0), rot)
        done.step(n=len(sel))
    return bps


def regularised_maps(half1: Backprojector, half2: Backprojector, wiener: bool = True) -> tuple[torch.Tensor, ...]:
    """Half maps and full map from two half-set backprojectors.

    Returns
    -------
    half1, half2, full : torch.Tensor
        float32, shape (box, box, box), indexed [z, y, x].
    """
    full = Backprojector(half1.box, half1.pad, half1.device)
    full.add(half1)
    full.add(half2)
    both = bool(half1.weight.any() and half2.weight.any())
    if not (wiener and both):
        return half1.volume(), half2.volume(), full.volume()
    fsc = spectral_snr(half1, half2)
    maps = [bp.volume(regulariser=wiener_regulariser(fsc, bp.shell_mean_weight(), full=False)) for bp in (half1, half2)]
    maps.append(full.volume(regulariser=wiener_regulariser(fsc, full.shell_mean_weight(), full=True)))
    return tuple(maps)


def reconstruct_particles(pset: ParticleSet, symmetry: str = "C1", subset=None, device=None,
                          chunk: int = DEFAULT_CHUNK, progress: bool = False, ctf: bool = True,
                          wiener: bool = True) -> tuple[np.ndarray, float]:
    """Reconstruct one map from particles with known poses.

    Parameters
    ----------
    pset : ParticleSet
        Particles with rlnAngleRot/Tilt/Psi, rlnOriginX/YAngst (0 when absent) and CTF
        labels; one pixel size and an even box.
    symmetry : str
        Point group imposed: C1, Cn or Dn (RELION axes).
    subset : array_like, optional
        Boolean mask (n,) or positions of the particles to use; default all.
    device : str or torch.device, optional
        Default: GPU when present, else CPU.
    chunk : int
        Particles read and inserted at a time (bounds memory).
    progress : bool
        Show a progress bar.
    ctf : bool
        Correct for the CTF (False for CTF-free data).
    wiener : bool
        Regularise each shell by the spectral SNR between the half sets (rlnRandomSubset,
        or a seeded split); False divides by the CTF^2 sum only.

    Returns
    -------
    volume : np.ndarray
        float32, shape (box, box, box), indexed [z, y, x]; rotation centre at voxel box // 2.
    pixel_size : float
        Voxel size in Å (the particles' pixel size).
    """
    rows = _rows(pset, subset)
    if len(rows) == 0:
        raise InputError(pset.source, "no particles selected for reconstruction")
    h1, h2 = backproject_particles(pset, rows, _halves_of(pset), symmetry, device, chunk, progress, ctf)
    full = regularised_maps(h1, h2, wiener)[2]
    return full.cpu().numpy().astype(np.float32), common_pixel_size(pset)


def reconstruct_half_maps(pset: ParticleSet, symmetry: str = "C1", device=None, subset=None,
                          chunk: int = DEFAULT_CHUNK, progress: bool = False, ctf: bool = True,
                          wiener: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reconstruct the two gold-standard half maps (rlnRandomSubset 1 and 2) and the full map.

    Parameters are those of :func:`reconstruct_particles`; ``pset`` must carry rlnRandomSubset.

    Returns
    -------
    half1, half2, full : np.ndarray
        float32, shape (box, box, box), indexed [z, y, x]; voxel size = the particles' pixel size.
    """
    rows = _rows(pset, subset)
    halves = half_sets(pset)
    if not (np.isin(1, halves[rows]) and np.isin(2, halves[rows])):
        raise InputError(pset.source, "the selected particles do not cover both half sets")
    h1, h2 = backproject_particles(pset, rows, halves, symmetry, device, chunk, progress, ctf)
    return tuple(m.cpu().numpy().astype(np.float32) for m in regularised_maps(h1, h2, wiener))


def write_reconstruction(pset: ParticleSet, out: str | Path, symmetry: str = "C1", halves: bool = True,
                         device=None, chunk: int = DEFAULT_CHUNK, progress: bool = False, ctf: bool = True,
                         wiener: bool = True) -> dict:
    """Reconstruct and write ``OUT.mrc`` (and ``OUT_half1.mrc``, ``OUT_half2.mrc``), atomically.

    Parameters
    ----------
    out : str or Path
        Output name; a trailing ``.mrc`` is optional.
    halves : bool
        Also write the half maps (needs rlnRandomSubset).

    Returns
    -------
    dict
        Paths written: ``map`` and, with ``halves``, ``half1`` and ``half2``.
    """
    out = Path(out)
    stem = out.with_suffix("") if out.suffix == ".mrc" else out
    pixel_size = common_pixel_size(pset)
    paths = {"map": stem.with_name(stem.name + ".mrc")}
    if halves:
        maps = reconstruct_half_maps(pset, symmetry, device, None, chunk, progress, ctf, wiener)
        paths["half1"] = stem.with_name(stem.name + "_half1.mrc")
        paths["half2"] = stem.with_name(stem.name + "_half2.mrc")
        write_map(paths["half1"], maps[0], pixel_size)
        write_map(paths["half2"], maps[1], pixel_size)
        write_map(paths["map"], maps[2], pixel_size)
    else:
        volume, _ = reconstruct_particles(pset, symmetry, None, device, chunk, progress, ctf, wiener)
        write_map(paths["map"], volume, pixel_size)
    return paths
