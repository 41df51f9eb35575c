"""Ab initio reconstruction: a map and per-particle poses from particles with no poses.

Starting from a random map that depends on the seed alone, minibatch expectation-
maximisation with a coarse-to-fine pose search over SO(3) x shifts refines the map from
the initial to the final resolution (:mod:`cryosift.reconstruct.sgd`); every particle is
then aligned to the final map, split into seeded half sets, and the half maps and full
map are reconstructed from those poses at the particles' full box. Outputs, in
``out_dir`` and written atomically:

``abinit.mrc``, ``abinit_half1.mrc``, ``abinit_half2.mrc``
    Full map and half maps (voxel size = pixel size in the header).
``abinit_particles.star``
    The particles with rlnAngleRot/Tilt/Psi, rlnOriginX/YAngst, rlnRandomSubset and
    rlnMaxValueProbDistribution (RELION 3.1), ready for reconstruction and ResLog.
``abinit_log.csv``
    One row per iteration: resolution, minibatch, temperature, mean best-pose
    probability, seconds.

The same seed on another particle subset follows the same schedule from the same
random map ("cloned" runs, as used to compare score cutoffs).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from cryosift.device import pick_device
from cryosift.errors import InputError
from cryosift.io.atomic import atomic_path
from cryosift.io.models import ParticleSet, project_relative_image_names
from cryosift.io.mrc import write_map
from cryosift.io.rotations import matrix_to_euler
from cryosift.io.star import write_particles_star
from cryosift.reconstruct.known_poses import reconstruct_half_maps
from cryosift.reconstruct.particles import assign_half_sets, common_pixel_size
from cryosift.reconstruct.prepared import Disc, prepare_particles
from cryosift.reconstruct.schedule import AbinitSchedule
from cryosift.reconstruct.sgd import AbinitOptimiser, SearchSettings

log = logging.getLogger(__name__)


@dataclass
class AbinitRun:
    """What an ab initio run produced, in memory and on disk (the builtin engine turns it into
    the engine protocol's :class:`cryosift.engines.base.AbinitResult`).

    Attributes
    ----------
    map_path, half1_path, half2_path : Path
        The full map and half maps (MRC).
    star_path : Path
        Particles with their poses and half sets (RELION 3.1 STAR).
    log_path : Path
        Per-iteration table (CSV).
    volume : np.ndarray
        The full map, float32, shape (box, box, box), indexed [z, y, x].
    pixel_size : float
        Voxel size in Å.
    particles : ParticleSet
        The particles as written to ``star_path``.
    history : pd.DataFrame
        The per-iteration table.
    seconds : float
        Wall time of the run.
    """

    map_path: Path
    half1_path: Path
    half2_path: Path
    star_path: Path
    log_path: Path
    volume: np.ndarray
    pixel_size: float
    particles: ParticleSet
    history: pd.DataFrame = field(default_factory=pd.DataFrame)
    seconds: float = 0.0


def posed_particles(pset: ParticleSet, rotations: np.ndarray, origins_px: np.ndarray, max_probability: np.ndarray,
                    pixel_size: float, seed: int) -> ParticleSet:
    """A copy of ``pset`` carrying new poses, seeded half sets and image names valid from anywhere.

    Parameters
    ----------
    rotations : np.ndarray
        RELION rotation matrices, shape (n, 3, 3).
    origins_px : np.ndarray
        (x, y) origins in px, shape (n, 2).
    max_probability : np.ndarray
        Posterior of each particle's best pose, shape (n,).
    pixel_size : float
        Å/px.
    seed : int
        Seed of the half-set split.
    """
    parts = pset.particles.copy()
    parts["rlnImageName"] = project_relative_image_names(pset)
    rot, tilt, psi = matrix_to_euler(rotations)
    parts["rlnAngleRot"], parts["rlnAngleTilt"], parts["rlnAnglePsi"] = rot, tilt, psi
    parts["rlnOriginXAngst"] = origins_px[:, 0] * pixel_size
    parts["rlnOriginYAngst"] = origins_px[:, 1] * pixel_size
    parts["rlnRandomSubset"] = assign_half_sets(len(parts), seed)
    parts["rlnMaxValueProbDistribution"] = max_probability
    return ParticleSet(parts, pset.optics.copy(), pset.source, dict(pset.extra))


def default_search(box: int, pixel_size: float, mask_diameter: float | None, max_shift: float | None) -> SearchSettings:
    """Search settings for a box: mask 85 % of the box and shifts up to 8 % of it unless given (Å)."""
    extent = box * pixel_size
    return SearchSettings(mask_diameter=float(mask_diameter) if mask_diameter else 0.85 * extent,
                          max_shift=float(max_shift) if max_shift is not None else 0.08 * extent)


def abinit(pset: ParticleSet, out_dir: str | Path, seed: int = 0, initial_resolution: float = 35.0,
           final_resolution: float = 12.0, initial_batch: int = 300, final_batch: int = 1000,
           iterations: tuple[int, int, int] | None = None, symmetry: str = "C1", device=None,
           progress: bool = False, mask_diameter: float | None = None, max_shift: float | None = None,
           ctf: bool = True, starts: int = 8, select_resolution: float = 20.0,
           schedule: AbinitSchedule | None = None, search: SearchSettings | None = None) -> AbinitRun:
    """Ab initio map and poses from particles without poses.

    Parameters
    ----------
    pset : ParticleSet
        Particles (CTF labels needed unless ``ctf`` is False), one pixel size, even box.
    out_dir : str or Path
        Output folder (created).
    seed : int
        Random seed: initial map, minibatches, half sets.
    initial_resolution, final_resolution : float
        Resolution limits in Å at the start and the end of the schedule (the final one is
        capped at what the box allows).
    initial_batch, final_batch : int
        Minibatch sizes (particles) at the start and the end.
    iterations : (int, int, int), optional
        Iterations at the initial settings, along the ramp, and at the final settings
        (default :class:`AbinitSchedule`'s).
    symmetry : str
        Point group imposed: C1 (default), Cn or Dn.
    device : str or torch.device, optional
        Default: GPU when present, else CPU.
    progress : bool
        Show progress bars.
    mask_diameter : float, optional
        Soft spherical mask in Å (default 85 % of the box).
    max_shift : float, optional
        Largest particle origin searched in Å (default 8 % of the box).
    ctf : bool
        Model the particles' CTFs.
    starts : int
        Random starting maps tried through the coarse iterations (the best is kept).
    select_resolution : float
        Resolution in Å at which the best start is chosen.
    schedule, search : optional
        Full settings objects; when given they override the arguments above.

    Returns
    -------
    AbinitRun
    """
    t0 = time.perf_counter()
    if len(pset) < 2:
        raise InputError(pset.source, f"ab initio needs particles; found {len(pset)}")
    box = pset.box
    if box % 2:
        raise InputError(pset.source, f"box of {box} px is odd; reconstruction needs an even box")
    pixel_size = common_pixel_size(pset)
    if schedule is None:
        counts = {} if iterations is None else dict(zip(("initial_iterations", "ramp_iterations", "final_iterations"),
                                                         (int(i) for i in iterations)))
        schedule = AbinitSchedule(initial_resolution=float(initial_resolution), final_resolution=float(final_resolution),
                                  initial_batch=int(initial_batch), final_batch=int(final_batch), starts=int(starts),
                                  select_resolution=float(select_resolution), **counts)
    search = search or default_search(box, pixel_size, mask_diameter, max_shift)
    dev = pick_device(None if device is None else str(device))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    max_radius = min(box * pixel_size / schedule.final_resolution, box / 2 - 2)
    disc = Disc.build(max_radius, device=dev)
    log.info("ab initio: %d particles, %d px at %.3f Å/px, %.1f -> %.1f Å, %d iterations, seed %d, %s",
             len(pset), box, pixel_size, schedule.initial_resolution, box * pixel_size / max_radius,
             schedule.iterations, seed, dev)
    prepared = prepare_particles(pset, disc, pixel_size, dev, search.mask_diameter, ctf=ctf, progress=progress)
    optimiser = AbinitOptimiser(prepared, disc, schedule, search, seed, symmetry)
    optimiser.run(progress=progress)
    rotations, origins, max_prob = optimiser.final_poses(progress=progress)
    history = pd.DataFrame(optimiser.history)
    del prepared, optimiser
    if dev.type == "cuda":
        torch.cuda.empty_cache()

    posed = posed_particles(pset, rotations, origins, max_prob, pixel_size, seed)
    star_path = out / "abinit_particles.star"
    write_particles_star(star_path, posed)
    posed = ParticleSet(posed.particles, posed.optics, star_path.resolve(), posed.extra)
    half1, half2, full = reconstruct_half_maps(posed, symmetry=symmetry, device=dev, progress=progress, ctf=ctf)
    paths = {name: out / f"abinit{suffix}.mrc" for name, suffix in (("map", ""), ("half1", "_half1"), ("half2", "_half2"))}
    for name, vol in (("half1", half1), ("half2", half2), ("map", full)):
        write_map(paths[name], vol, pixel_size)
    log_path = out / "abinit_log.csv"
    with atomic_path(log_path) as tmp:
        history.to_csv(tmp, index=False)
    seconds = time.perf_counter() - t0
    log.info("ab initio finished in %.0f s: %s", seconds, paths["map"])
    return AbinitRun(paths["map"], paths["half1"], paths["half2"], star_path, log_path, full, pixel_size, posed,
                        history, seconds)


def write_empty_abinit(pset: ParticleSet, out: str | Path) -> Path:
    """Outputs of a score cutoff that kept no particles, so its branch completes.

    Writes ``abinit_particles.star`` (no particles, ``pset``'s optics) and ``abinit.mrc``,
    an all-zero map of the optics' box and pixel size; removes stale half maps.
    Validation then reports ``no particles kept``. Returns the map's path.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    empty = pset.subset(np.arange(0))
    with atomic_path(out / "abinit_particles.star") as tmp:
        write_particles_star(tmp, empty)
    for name in ("abinit_half1.mrc", "abinit_half2.mrc"):
        (out / name).unlink(missing_ok=True)
    box = int(pset.optics["rlnImageSize"].iloc[0])
    write_map(out / "abinit.mrc", np.zeros((box,) * 3, dtype=np.float32), float(pset.optics["rlnImagePixelSize"].iloc[0]))
    return out / "abinit.mrc"

