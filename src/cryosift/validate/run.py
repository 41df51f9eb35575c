"""Validate one reconstruction against its atomic model, and write the results.

Outputs in the output folder (each written atomically):

``validation.json``
    Dataset, cutoff, particle counts, resolutions, Q-scores, ResLog and the alignment.
``fsc_model.csv``
    Map against model map per shell, unmasked and inside a soft model mask.
``fsc_half.csv``
    Half maps per shell (unmasked, masked, phase-randomisation corrected), with half maps.
``qscore_atoms.csv``, ``qscore_residues.csv``
    Q-score per atom and per residue.
``model_fitted.cif``, ``model_map.mrc``
    The model placed in the map (in the map's corrected hand) and its 8 Å model map on
    the map's grid; ``map_hand_corrected.mrc`` too when the map had the wrong hand.
``reslog.csv``, ``reslog.png``, ``reslog.svg``
    With ResLog.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd

from cryosift import __version__
from cryosift.density import model_coordinates, read_model
from cryosift.errors import InputError
from cryosift.io.atomic import atomic_path
from cryosift.io.mrc import write_map
from cryosift.records import write_validation
from cryosift.validate.align import align_maps
from cryosift.validate.fsc import HALF_MAP_THRESHOLD, MODEL_THRESHOLD, corrected_fsc, fsc_curve, resolution_at
from cryosift.validate.masks import model_mask, soft_sphere_mask
from cryosift.validate.modelmap import (
    MODEL_MAP_RESOLUTION_A,
    centred_model_map,
    model_map_on_grid,
    read_map_with_origin,
    with_coordinates,
    write_model,
)
from cryosift.validate.qscore import expected_qscore, qscores

log = logging.getLogger(__name__)


def _finite(value):
    """JSON has no inf/NaN: write them as null."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def write_csv(path: Path, table: pd.DataFrame) -> None:
    """Write a table atomically (full float precision)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")


def _read_half_maps(paths, shape, pixel_size):
    halves = []
    for p in paths:
        vol, apix, _ = read_map_with_origin(p)
        if vol.shape != shape:
            raise InputError(p, f"half map is {vol.shape[0]}^3 voxels but the map is {shape[0]}^3")
        if abs(apix - pixel_size) > 1e-3 * pixel_size:
            raise InputError(p, f"half map voxel size {apix:.4f} Å differs from the map's {pixel_size:.4f} Å")
        halves.append(vol)
    return halves


def _count(particles) -> int | None:
    if particles is None:
        return None
    if isinstance(particles, (int, np.integer)):
        return int(particles)
    from cryosift.io.convert import read_particles

    return len(read_particles(particles))


def validate_map(map_path, model_path=None, out_dir=".", *, half_maps=None, particles=None, total_particles=None,
                 dataset: str | None = None, cutoff: float | None = None, align: bool = True,
                 model_resolution: float | None = MODEL_MAP_RESOLUTION_A, sigma: float = 0.6,
                 run_reslog: bool = False, reslog_sizes=None, symmetry: str = "C1", seed: int = 0,
                 device=None) -> dict:
    """Validate a reconstruction (against an atomic model when there is one) and write the results.

    Parameters
    ----------
    map_path : str or Path
        The reconstruction (MRC); its voxel size and header origin define the grid.
    model_path : str or Path, optional
        Atomic model (PDB/mmCIF). Without one, only the half-map FSC, ResLog and the
        particle counts are reported.
    out_dir : str or Path
        Output folder.
    half_maps : pair of paths, optional
        Half maps of the reconstruction (same grid) for the half-map FSC.
    particles : str or Path or int, optional
        Particles of the reconstruction (STAR/.cs), or their number. A file with poses is
        needed for ResLog.
    total_particles : str or Path or int, optional
        All particles before selection (file or number), for the fraction kept.
    dataset : str, optional
        Dataset name (default: the map's parent folder name).
    cutoff : float, optional
        The score cutoff that selected the particles.
    align : bool
        Superpose the map on the model first (rotation, translation and hand); turn off
        when the model already fits the map.
    model_resolution : float or None
        Gaussian low-pass in Å of the model map written out and used for the mask (8 Å as
        the paper). The FSC itself is computed against a model map blurred only to 2 voxels:
        a radial filter does not change an FSC, and a strong one leaves only rounding noise
        at high resolution.
    sigma : float
        Q-score reference width in Å.
    run_reslog : bool
        Run ResLog on ``particles`` (needs a particle file with poses).
    reslog_sizes : sequence of int, optional
        ResLog subset sizes (default: halving from all particles down to 100).
    symmetry : str
        Point group for the ResLog reconstructions.
    seed : int
        Seed of ResLog subsets and phase randomisation.
    device : str or torch.device, optional
        Compute device for alignment and reconstruction.

    Returns
    -------
    dict
        The content of ``validation.json``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    volume, pixel_size, origin = read_map_with_origin(map_path)
    if pixel_size <= 0:
        raise InputError(map_path, "the header has no voxel size")
    halves = _read_half_maps(half_maps, volume.shape, pixel_size) if half_maps else None
    kept, total = _count(particles), _count(total_particles)
    result = {
        "dataset": dataset or Path(map_path).resolve().parent.name,
        "cutoff": _finite(cutoff),
        "map": str(map_path),
        "model": str(model_path) if model_path else None,
        "half_maps": [str(p) for p in half_maps] if half_maps else None,
        "box": int(volume.shape[0]),
        "pixel_size_A": float(pixel_size),
        "particles_kept": kept,
        "particles_total": total,
        "fraction_kept": (kept / total) if kept is not None and total else None,
        "fsc05_model_A": None,
        "fsc05_model_masked_A": None,
        "fsc0143_half_A": None,
        "fsc0143_half_masked_A": None,
        "model_map_resolution_A": model_resolution,
        "qscore_mean": None,
        "qscore_sigma_A": sigma,
        "atoms_scored": None,
        "expected_qscore": None,
        "expected_qscore_linear": None,
        "reslog": None,
        "alignment": None,
        "files": {},
        "cryosift_version": __version__,
    }
    if kept == 0:  # the cutoff kept nothing: there is no reconstruction to measure
        result["status"] = "no particles kept"
        write_validation(out / "validation.json", result)
        return result
    result["status"] = "validated"
    mask = None
    if model_path:
        mask = _model_metrics(volume, pixel_size, origin, halves, model_path, out, result, align,
                              model_resolution, sigma, device)
    if halves:
        if mask is None:
            mask = soft_sphere_mask(volume.shape[0])
        fsc_half = corrected_fsc(halves[0], halves[1], pixel_size, mask, seed=seed)
        write_csv(out / "fsc_half.csv", fsc_half)
        result["files"]["fsc_half_csv"] = "fsc_half.csv"
        unmasked = fsc_half.assign(fsc=fsc_half["fsc_unmasked"])
        result["fsc0143_half_A"] = _finite(resolution_at(unmasked, HALF_MAP_THRESHOLD))
        result["fsc0143_half_masked_A"] = _finite(resolution_at(fsc_half, HALF_MAP_THRESHOLD))
    if run_reslog:
        if particles is None or isinstance(particles, (int, np.integer)):
            raise InputError(map_path, "ResLog needs the reconstruction's particle file (with poses)")
        result["reslog"] = _run_reslog(particles, out, result, reslog_sizes, symmetry, seed, device)
        result["files"].update({"reslog_csv": "reslog.csv", "reslog_png": "reslog.png", "reslog_svg": "reslog.svg"})
    write_validation(out / "validation.json", result)
    return result


def _model_metrics(volume, pixel_size, origin, halves, model_path, out: Path, result: dict, align: bool,
                   model_resolution, sigma, device) -> np.ndarray:
    """Fit the model (alignment and hand), then FSC against its map and Q-scores; returns the model mask.

    When the map has the other hand, ``volume`` and ``halves`` are mirrored in place.
    """
    files = result["files"]
    structure = read_model(model_path)
    box = volume.shape[0]
    xyz = model_coordinates(structure)
    if align:
        reference, ref_origin = centred_model_map(structure, box, pixel_size, 2.0 * pixel_size)
        alignment = align_maps(reference, volume, pixel_size, resample=False, device=device)
        log.info("aligned: %.1f° rotation, hand %s, score %.3f (other hand %.3f)", alignment.rotation_angle_deg,
                 "mirrored" if alignment.flipped else "kept", alignment.score, alignment.score_other_hand)
        result["alignment"] = alignment.to_dict()
        volume[...] = alignment.moving_frame_map(volume)
        for h in halves or []:
            h[...] = alignment.moving_frame_map(h)
        xyz = alignment.reference_to_moving(xyz, ref_origin, origin)
        if alignment.flipped:
            write_map(out / "map_hand_corrected.mrc", volume, pixel_size, origin_A=origin)
            files["map_hand_corrected"] = "map_hand_corrected.mrc"
    fitted = with_coordinates(structure, xyz)
    write_model(out / "model_fitted.cif", fitted)
    files["model_fitted"] = "model_fitted.cif"

    model_vol = model_map_on_grid(fitted, box, pixel_size, origin, model_resolution)
    write_map(out / "model_map.mrc", model_vol, pixel_size, origin_A=origin)
    files["model_map"] = "model_map.mrc"
    mask = model_mask(model_vol, pixel_size)
    # A radial low-pass of the model map leaves the FSC unchanged in exact arithmetic, but a
    # strong blur leaves only rounding noise at high resolution; the FSC uses a map blurred
    # just enough (to 2 voxels) to avoid aliasing.
    sharp = model_map_on_grid(fitted, box, pixel_size, origin, 2.0 * pixel_size)
    fsc_model = fsc_curve(volume, sharp, pixel_size)
    fsc_model["fsc_masked"] = fsc_curve(volume, sharp, pixel_size, mask)["fsc"]
    write_csv(out / "fsc_model.csv", fsc_model)
    files["fsc_model_csv"] = "fsc_model.csv"
    fsc05 = resolution_at(fsc_model, MODEL_THRESHOLD)
    result["fsc05_model_A"] = _finite(fsc05)
    masked = fsc_model.assign(fsc=fsc_model["fsc_masked"])
    result["fsc05_model_masked_A"] = _finite(resolution_at(masked, MODEL_THRESHOLD))

    q = qscores(volume, pixel_size, fitted, origin_A=origin, sigma=sigma)
    write_csv(out / "qscore_atoms.csv", q.atoms)
    write_csv(out / "qscore_residues.csv", q.residues())
    files["qscore_atoms_csv"], files["qscore_residues_csv"] = "qscore_atoms.csv", "qscore_residues.csv"
    result["qscore_mean"] = _finite(q.mean)
    result["atoms_scored"] = int(q.atoms["q"].notna().sum())
    if sigma in (0.4, 0.6):
        result["expected_qscore"] = _finite(expected_qscore(fsc05, sigma))
        result["expected_qscore_linear"] = _finite(expected_qscore(fsc05, sigma, "linear"))
    return mask


def _run_reslog(particles, out: Path, result: dict, sizes, symmetry, seed, device) -> dict:
    from cryosift.io.convert import read_particles
    from cryosift.validate.reslog import reslog
    from cryosift.validate.reslog_plot import plot_reslog

    series = reslog(read_particles(particles), sizes=sizes, seed=seed, symmetry=symmetry, device=device)
    write_csv(out / "reslog.csv", series.table)
    label = f"{result['dataset']}" + (f", cutoff {result['cutoff']:g}" if result["cutoff"] is not None else "")
    plot_reslog({label: series.fit}, out / "reslog")
    return series.fit.to_dict()
