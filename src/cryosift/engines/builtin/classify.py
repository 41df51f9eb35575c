"""Reference-free 2D classification by maximum likelihood, RELION's formulation, in PyTorch.

Each iteration: expectation over classes x in-plane angles x offsets for every particle
(or a random mini-batch early on, cryoSPARC-style online EM for large sets), then the
class update, noise spectrum, class fractions and offset prior (M-step). The first
iteration aligns every particle to the unaligned average and puts it into a random class
(random-subset seeds, as RELION does); later ones classify freely. Iteration files are
written in RELION Class2D form, so a run can be continued from its last finished iteration.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np
import torch

from cryosift.device import pick_device, set_threads
from cryosift.engines.base import Class2DResult
from cryosift.engines.builtin.accuracy import alignment_accuracy, estimated_resolution, next_radius
from cryosift.engines.builtin.cs_export import export_cs
from cryosift.engines.builtin.estep import Sums, expectation
from cryosift.engines.builtin.grids import coefficients, psi_angles
from cryosift.engines.builtin.mstep import class_frame_sums, finish_averages, split_largest, tau2_spectrum, wiener_update
from cryosift.engines.builtin.noise import initial_noise, update_noise
from cryosift.engines.builtin.params import BuiltinClass2DParams
from cryosift.engines.builtin.preprocess import ParticleData, classification_box
from cryosift.engines.builtin.relion_writer import (
    data_tables,
    iteration_stem,
    remove_iteration,
    write_iteration,
)
from cryosift.engines.builtin.search import ReferenceBank, SearchGrid
from cryosift.engines.builtin.state import ModelState, empty_assignments, load_state
from cryosift.errors import InputError
from cryosift.io.atomic import write_text_atomic
from cryosift.io.convert import read_particles
from cryosift.io.models import NO_RESOLUTION, ParticleSet, project_relative
from cryosift.io.star import last_finished_iteration, particles_from_blocks

log = logging.getLogger(__name__)

SUCCESS_MARKER = "RELION_JOB_EXIT_SUCCESS"
MIN_SIGMA2_OFFSET = 2.0  # Å^2, RELION's --min_sigma2_offset
NOISE_SAMPLE = 10000  # particles used for the first noise estimate
#: Settings that must match when a run is continued.
RESUME_KEYS = ("classes", "box", "n_particles", "mask_diameter", "psi_step", "offset_range", "offset_step",
               "oversampling", "tau2_fudge", "seed", "hard", "highres_limit", "center_classes", "adaptive_fraction",
               "max_significant", "minibatch", "full_iterations", "batch_size", "precision", "reseed_fraction")


class SettingsChanged(InputError):
    """The job folder holds a run made with other settings: it cannot be continued."""


# --------------------------------------------------------------------------- schedule

def minibatch_size(params: BuiltinClass2DParams, n: int) -> int:
    """Particles per mini-batch iteration (0: every iteration uses all particles)."""
    if params.minibatch < 0:
        return 0
    size = params.minibatch or params.classes * params.minibatch_per_class
    if params.minibatch == 0 and n < 4 * size:
        return 0
    return int(min(size, n))


def iteration_rows(params: BuiltinClass2DParams, n: int, iteration: int) -> np.ndarray:
    """The particles an iteration processes, sorted (int64)."""
    size = minibatch_size(params, n)
    if size == 0 or iteration > params.iterations - params.full_iterations:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([params.seed, iteration, 17])
    return np.sort(rng.choice(n, size, replace=False)).astype(np.int64)


def reseeding_iteration(params: BuiltinClass2DParams, iteration: int) -> bool:
    """Whether near-empty classes are re-seeded after this iteration (all but the last few)."""
    last = params.iterations - params.full_iterations - 1
    return params.reseed_fraction > 0 and params.classes > 1 and 2 <= iteration <= last


def coarse_precision(params: BuiltinClass2DParams, device: torch.device) -> str:
    """Precision of the coarse product: fp32 on CPU; TF32 by default on CUDA."""
    if device.type != "cuda":
        return "fp32"
    return "tf32" if params.precision == "auto" else params.precision


def coarse_radius(data: ParticleData, params: BuiltinClass2DParams) -> int:
    """Shells the coarse pass needs (RELION's coarse image size / 2).

    A coarse angular step moves the particle's edge by step x pi x diameter / 360; detail
    finer than that / 1.5 cannot tell coarse samples apart, so the first pass stops there.
    """
    diameter = 2.0 * data.mask_radius * data.pixel_size
    resolution = (360.0 / len(psi_angles(params.psi_step))) / 360.0 * np.pi * diameter / 1.5
    return int(np.ceil(data.box * data.pixel_size / resolution))


def batch_size(params: BuiltinClass2DParams, n_refs: int, grid: SearchGrid, m: int, device: torch.device) -> int:
    """Particles per E-step batch, from the memory one particle's search needs."""
    if params.batch_size:
        return int(params.batch_size)
    t, pc, ns, st = len(grid.trans), len(grid.psi), len(grid.dpsi), len(grid.dtrans)
    per_particle = 4 * t * (6 * m + 3 * n_refs * pc) + params.max_significant * ns * (m * 8 * 5 + st * 16)
    budget = (2 << 30) if device.type == "cuda" else (96 << 20)
    return int(np.clip(budget // per_particle, 8, 8192))


# --------------------------------------------------------------------------- state

def initial_state(data: ParticleData, params: BuiltinClass2DParams, max_radius: int) -> ModelState:
    """Iteration 0: noise from unaligned particles, every class = their average."""
    rng = np.random.default_rng([params.seed, 0, 3])
    size = minibatch_size(params, data.n) or data.n
    sample = np.sort(rng.choice(data.n, min(data.n, max(size, NOISE_SAMPLE)), replace=False))
    sigma2, mean = initial_noise(data, sample)
    mask = data.mask.to(data.device)
    k = params.classes
    references = (mean * mask)[None].repeat(k, 1, 1)
    n_shells = data.box // 2 + 1
    tau2 = tau2_spectrum(references, n_shells)
    prior = torch.full((k,), 1.0 / k, dtype=torch.float64, device=data.device)
    # RELION's first estimate of the spectral SNR: N pi_k / sigma^2 against the prior 1 / (T tau2).
    dvp = len(sample) * prior[:, None] / sigma2[None] * params.tau2_fudge * tau2
    return ModelState(
        iteration=0, references=references, sigma2=sigma2, tau2=tau2, class_prior=prior,
        prior_offsets=torch.zeros((k, 2), dtype=torch.float64, device=data.device),
        sigma2_offset=float(params.sigma_offset**2), radius=next_radius(dvp, prior, data.box, max_radius),
        data_vs_prior=dvp, coverage=torch.zeros_like(dvp),
        resolution=torch.full((k,), NO_RESOLUTION, dtype=torch.float64),
        acc_rotations=torch.full((k,), NO_RESOLUTION, dtype=torch.float64),
        acc_translations=torch.full((k,), NO_RESOLUTION, dtype=torch.float64), log_likelihood=0.0, ave_pmax=0.0,
        **empty_assignments(data.n, data.initial_offsets))


def run_iteration(data: ParticleData, state: ModelState, params: BuiltinClass2DParams, iteration: int, grid: SearchGrid,
                  max_radius: int, precision: str) -> ModelState:
    """One EM iteration; returns the new state (the input is not modified)."""
    dev = data.device
    k = params.classes
    n_shells = data.box // 2 + 1
    coef = coefficients(data.box, state.radius, dev)
    rows = iteration_rows(params, data.n, iteration)
    seeding = state.iteration == 0
    refs = state.references.to(dev)
    coarse_dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    bank = ReferenceBank.build(refs[:1] if seeding else refs, coef, grid, coarse_dtype)
    fixed = np.random.default_rng([params.seed, 1, 5]).integers(0, k, data.n) if seeding else None
    apix = data.pixel_size
    sigma2_offset_px = state.sigma2_offset / apix**2
    with np.errstate(divide="ignore"):
        log_prior = torch.as_tensor(np.log(state.class_prior.cpu().numpy()), dtype=torch.float32, device=dev)
    prior_offsets = state.prior_offsets.to(dev, torch.float32)
    sums = Sums.zeros(k, len(grid.psi), len(grid.psi) * len(grid.dpsi), coef, dev)
    bsize = batch_size(params, bank.fine.shape[0], grid, coef.m, dev)
    coarse_m = int((coef.shell < coarse_radius(data, params)).sum()) if params.oversampling > 0 else None
    updates = expectation(data, rows, bsize, coef, grid, bank, state.sigma2.to(dev), state.offsets.cpu().numpy(),
                          log_prior, prior_offsets, sigma2_offset_px, params, sums, fixed, precision, coarse_m)

    # ---- M-step
    num, den = class_frame_sums(sums.weighted_images, sums.weighted_ctf2, grid.fine_psi, coef, state.sigma2.to(dev))
    num_c, den_c = class_frame_sums(sums.coarse_images, sums.coarse_ctf2, grid.psi, coef, state.sigma2.to(dev))
    num, den = num + num_c, den + den_c
    averages, dvp, coverage = wiener_update(num, den, state.tau2.to(dev), params.tau2_fudge, coef, n_shells)
    references, _ = finish_averages(averages, coef, data.mask.to(dev), params.center_classes, params.offset_range)
    class_weight = sums.class_weight
    class_prior = class_weight / class_weight.sum().clamp_min(1e-300)
    safe = class_weight.clamp_min(1e-300)[:, None]
    prior_offsets_new = torch.where(class_weight[:, None] > 0, sums.offset_sum / safe, torch.zeros_like(sums.offset_sum))
    sigma2_offset = max(sums.offset_d2 * apix**2 / (2.0 * max(sums.n, 1e-12)), MIN_SIGMA2_OFFSET)
    copies = k if seeding else 1  # the seeding iteration used one reference for every class
    parts = [(bank.fine_flat.repeat(copies, 1), sums.weighted_images.reshape(-1, coef.m), sums.weighted_ctf2.reshape(-1, coef.m)),
             (bank.coarse.repeat(copies, 1), sums.coarse_images.reshape(-1, coef.m), sums.coarse_ctf2.reshape(-1, coef.m))]
    sigma2 = update_noise(sums.power, sums.n, coef, state.sigma2.to(dev), parts, float((data.mask**2).mean()))

    if reseeding_iteration(params, iteration):
        threshold = params.reseed_fraction / k
        done = split_largest(references, class_prior, prior_offsets_new, dvp, data.mask.to(dev), threshold,
                             np.random.default_rng([params.seed, iteration, 23]))
        for small, big in done:
            log.info("iteration %d: class %d was nearly empty; re-seeded it by splitting class %d", iteration,
                     small + 1, big + 1)

    # ---- per-particle assignments
    new = {name: getattr(state, name).clone().cpu() for name in
           ("offsets", "psi", "classes", "max_prob", "particle_log_likelihood", "n_significant")}
    for u in updates:
        r = torch.as_tensor(u.rows)
        new["offsets"][r] = torch.as_tensor(u.offsets)
        new["psi"][r] = torch.as_tensor(u.psi, dtype=torch.float64)
        new["classes"][r] = torch.as_tensor(u.classes, dtype=torch.int64)
        new["max_prob"][r] = torch.as_tensor(u.max_prob)
        new["particle_log_likelihood"][r] = torch.as_tensor(u.log_likelihood)
        new["n_significant"][r] = torch.as_tensor(u.n_significant, dtype=torch.int64)

    # ---- reported figures
    resolution = estimated_resolution(dvp, data.box, apix, class_prior)
    rng = np.random.default_rng([params.seed, iteration, 11])
    test = np.sort(rng.choice(rows, min(10, len(rows)), replace=False))
    test_ctf = coef.gather(data.ctf(test))
    acc_rot, acc_trans = alignment_accuracy(
        references, class_prior, coef, sigma2, test_ctf, new["psi"][test].to(dev),
        torch.as_tensor(rng.integers(0, 2, len(test)), device=dev), apix)
    return ModelState(
        iteration=iteration, references=references.cpu(), sigma2=sigma2.cpu(), tau2=tau2_spectrum(references, n_shells).cpu(),
        class_prior=class_prior.cpu(), prior_offsets=prior_offsets_new.cpu(), sigma2_offset=float(sigma2_offset),
        radius=next_radius(dvp, class_prior, data.box, max_radius), data_vs_prior=dvp.cpu(), coverage=coverage.cpu(),
        resolution=torch.as_tensor(resolution), acc_rotations=torch.as_tensor(acc_rot),
        acc_translations=torch.as_tensor(acc_trans), log_likelihood=sums.log_likelihood,
        ave_pmax=sums.max_prob / max(sums.n, 1e-12), **new)


# --------------------------------------------------------------------------- job folder

_ITER_FILE = re.compile(r"^run_it(\d{3,})_")


def _clear_iterations(job: Path, after: int = -1) -> None:
    """Remove iteration files numbered above ``after`` (all by default) and the success marker."""
    (job / SUCCESS_MARKER).unlink(missing_ok=True)
    numbers = {int(m[1]) for f in job.iterdir() if (m := _ITER_FILE.match(f.name))}
    for it in sorted(numbers, reverse=True):
        if it > after:
            remove_iteration(job, it)


def _settings(params: BuiltinClass2DParams, data: ParticleData) -> dict:
    values = {name: getattr(params, name) for name in RESUME_KEYS if hasattr(params, name)}
    values.update(box=data.box, n_particles=data.n, mask_diameter=2.0 * data.mask_radius * data.pixel_size,
                  pixel_size=data.pixel_size)
    return values


def _resume(job: Path, settings: dict, device) -> ModelState | None:
    try:
        found = last_finished_iteration(job)
    except InputError:
        return None
    state, saved = load_state(Path(f"{iteration_stem(job, found['iteration'])}_state.pt"))
    changed = [k for k in RESUME_KEYS if k in saved and saved[k] != settings.get(k)]
    if changed:
        raise SettingsChanged(found["optimiser"], "cannot continue: the run was made with different settings ("
                         + ", ".join(f"{k}={saved[k]!r}, now {settings.get(k)!r}" for k in changed) + ")")
    return state


def classify2d(particles: ParticleSet | str | Path, job_dir: str | Path, params: BuiltinClass2DParams | None = None, *,
               device: str | torch.device | None = None, threads: int | None = None, resume: bool = False,
               memory_budget: int | None = None, export: bool = True, **options) -> Class2DResult:
    """Classify particles into 2D class averages; write a RELION Class2D job folder.

    Parameters
    ----------
    particles : ParticleSet, str or Path
        Particles (RELION STAR or cryoSPARC .cs) with CTF parameters.
    job_dir : str or Path
        Output folder (created).
    params : BuiltinClass2DParams, optional
        Settings; ``options`` override single fields (e.g. ``classes=50``).
    device : str or torch.device, optional
        ``cuda``, ``cpu`` ...; default the GPU when there is one.
    threads : int, optional
        CPU threads for torch during the run (default: the caller's setting, which is restored).
    resume : bool
        Continue from the job's last finished iteration (same settings; ``iterations`` may grow).
    memory_budget : int, optional
        Bytes of RAM the preprocessed particles may take before they are cached on disk.
    export : bool
        Also write the final iteration as cryoSPARC .cs files.

    Returns
    -------
    Class2DResult
        Paths of the last iteration's files; ``extra`` holds ``particles_cs``,
        ``class_averages_cs``, ``wall_s`` and per-iteration seconds ``iteration_s``.

    Raises
    ------
    InputError
        Unreadable particles, missing CTF labels, or (:class:`SettingsChanged`) a resume with
        changed settings.
    """
    t_start = time.perf_counter()
    params = (params or BuiltinClass2DParams()).updated(**options)
    params.check()
    dev = pick_device(str(device) if device is not None else None)
    previous = torch.get_num_threads()
    if threads:
        set_threads(threads)
    try:
        return _classify(particles, job_dir, params, dev, resume, memory_budget, export, t_start)
    finally:
        torch.set_num_threads(previous)  # the caller's setting is theirs


def _classify(particles, job_dir, params: BuiltinClass2DParams, dev: torch.device, resume: bool, memory_budget: int | None,
              export: bool, t_start: float) -> Class2DResult:
    pset = particles if isinstance(particles, ParticleSet) else read_particles(particles)
    apix = pset.common_pixel_size() if len(pset) else 1.0
    job = Path(job_dir)
    job.mkdir(parents=True, exist_ok=True)
    box = classification_box(pset.box, apix, params.box, params.highres_limit)
    data = ParticleData(pset, box, params.particle_diameter, job, dev, memory_budget)
    settings = _settings(params, data)
    max_radius = data.box // 2 if params.highres_limit <= 0 else \
        int(min(data.box // 2, np.floor(data.box * data.pixel_size / params.highres_limit)))
    state = _resume(job, settings, dev) if resume else None
    if state is None:
        _clear_iterations(job)
        state = initial_state(data, params, max_radius)
    else:
        log.info("continuing from iteration %d", state.iteration)
        _clear_iterations(job, after=state.iteration)
    grid = SearchGrid.make(params.psi_step, params.offset_range, params.offset_step, params.oversampling).to(dev)
    precision = coarse_precision(params, dev)
    log.info("2D classification: %d particles, %d px at %.3f Å/px (input %d px), K=%d, %s", data.n, data.box,
             data.pixel_size, data.original_box, params.classes, dev)
    timings, paths = [], None
    for it in range(state.iteration + 1, params.iterations + 1):
        t0 = time.perf_counter()
        state = run_iteration(data, state, params, it, grid, max_radius, precision)
        if it % params.write_every == 0 or it == params.iterations:
            paths = write_iteration(job, it, state, data, params, settings)
        timings.append(time.perf_counter() - t0)
        best = float(state.resolution.min())
        log.info("iteration %d/%d: %.1f s, best class %.1f Å, next search to %.1f Å, <Pmax> %.3f", it, params.iterations,
                 timings[-1], best, data.box * data.pixel_size / max(state.radius - 1, 1), state.ave_pmax)
    if paths is None:  # nothing left to do: the job had already reached params.iterations
        found = last_finished_iteration(job)
        paths = {"model": found["model"], "data": found["data"], "classes": found["classes"]}
    extra = {"box": data.box, "pixel_size": data.pixel_size, "iteration_s": timings, "device": str(dev)}
    if export:
        classified = particles_from_blocks(paths["data"], data_tables(state, data))
        extra.update(export_cs(iteration_stem(job, state.iteration), classified, project_relative(paths["classes"]),
                               data.box, data.pixel_size, state.resolution.numpy(), params.seed))
    for cache in job.glob(".particles_*px.*"):  # the disk cache is only needed to continue an unfinished run
        cache.unlink(missing_ok=True)
    write_text_atomic(job / SUCCESS_MARKER, "")
    extra["wall_s"] = time.perf_counter() - t_start
    return Class2DResult("builtin", job, state.iteration, Path(paths["model"]), Path(paths["data"]),
                         Path(paths["classes"]), extra)
