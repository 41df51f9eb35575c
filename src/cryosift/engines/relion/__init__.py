"""The RELION engine: drives relion_refine, relion_reconstruct and relion_preprocess.

Outputs stay in RELION's own layout and are read back through :mod:`cryosift.io`
(the last finished iteration, never a partial one). A rerun in the same folder resumes:
a finished job is returned as it is, an interrupted one continues from the
``run_itNNN_optimiser.star`` of its last iteration whose files are all written
(sampling.star, RELION's last), or starts again when there is none.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, fields
from pathlib import Path

import numpy as np

from cryosift.engines.base import (
    BUILTIN_TUNING_2D,
    AbinitResult,
    Class2DResult,
    EngineBase,
    ExtractionResult,
    ReconstructionResult,
    Resume,
    abinit_paths,
    known_options,
    reconstruction_paths,
)
from cryosift.engines.relion.commands import (
    InitialModelParams,
    RelionClass2DParams,
    class2d_command,
    initial_model_command,
    reconstruct_command,
    reextract_command,
)
from cryosift.engines.relion.detect import RelionInstall, find_relion
from cryosift.engines.relion.runner import clear_markers, job_status, run_relion
from cryosift.errors import EngineError, InputError
from cryosift.io.atomic import atomic_path
from cryosift.io.convert import read_particles
from cryosift.io.models import ParticleSet, join_image_names
from cryosift.io.star import last_finished_iteration, read_particles_star, write_particles_star

log = logging.getLogger(__name__)

__all__ = ["RelionEngine", "RelionInstall", "find_relion", "RelionClass2DParams", "InitialModelParams"]


#: Ab initio options with a RELION counterpart (the rest of :data:`~cryosift.engines.base.ABINIT_OPTIONS`
#: are translated in :meth:`RelionEngine.abinit`); the builtin engine's search settings are ignored.
_ABINIT_IGNORED = ("max_shift", "ctf", "starts", "select_resolution", "progress", "device")


def _params(cls, options: dict):
    return cls(**known_options("RELION", options, {f.name for f in fields(cls)}))


def _initial_model_options(options: dict, pset: ParticleSet) -> dict:
    """The engine protocol's ab initio options as :class:`InitialModelParams` fields.

    The mask defaults to 85 % of the box, and the final resolution is capped at Nyquist
    (RELION refuses finer), as the builtin engine caps it.
    """
    options = dict(options)
    apix = float(pset.pixel_size[0])
    out = {}
    mask = options.pop("mask_diameter", None)
    if "particle_diameter" not in options:
        out["particle_diameter"] = mask or 0.85 * pset.box * apix
    for common, relion in (("initial_resolution", "sgd_ini_resol"), ("initial_batch", "sgd_ini_subset"),
                           ("final_batch", "sgd_fin_subset")):
        value = options.pop(common, None)
        if value is not None:
            out[relion] = value
    final = options.pop("final_resolution", None)
    if final is not None:
        out["sgd_fin_resol"] = max(final, 2 * apix)
    iterations = options.pop("iterations", None)
    if iterations:
        out.update(zip(("sgd_ini_iter", "sgd_inbetween_iter", "sgd_fin_iter"), iterations))
    return {**out, **options}


def prepare_input(particles: ParticleSet | str | Path, job_dir: Path) -> Path:
    """Write the particles as a RELION 3.1 STAR with absolute stack paths (RELION resolves names
    against its working folder, which is not where the STAR file lies)."""
    pset = particles if isinstance(particles, ParticleSet) else read_particles(particles)
    if len(pset) == 0:
        raise InputError(pset.source, "no particles (every particle was rejected before this step)")
    index, paths = pset.image_locations()
    missing = sorted({str(p) for p in paths if not Path(p).exists()})
    if missing:
        raise InputError(pset.source, f"image stack {missing[0]} not found")
    out = pset.subset(np.arange(len(pset)))
    out.particles["rlnImageName"] = join_image_names(index, [str(Path(p).resolve()) for p in paths])
    target = job_dir / "input_particles.star"
    write_particles_star(target, out)
    return target


class RelionEngine(EngineBase):
    """RELION behind the engine protocol.

    Parameters
    ----------
    threads : int
        ``--j`` for relion_refine.
    mpi : int
        MPI ranks (``mpirun -n``); 1 runs the threaded program.
    prefix : str
        Folder holding RELION's programs (default: PATH).
    gpu : bool
        Pass ``--gpu`` to relion_refine: it then uses the GPUs the job is given (CUDA_VISIBLE_DEVICES).
    """

    name = "relion"
    capabilities = frozenset({"classify2d", "abinit", "reconstruct", "extract"})

    #: The builtin engine's search settings, which relion_refine chooses itself.
    class2d_ignored = frozenset(BUILTIN_TUNING_2D)

    def __init__(self, threads: int | None = 1, mpi: int = 1, prefix: str | None = "", gpu: bool = False,
                 **_ignored):
        install = find_relion(prefix or "")
        if install is None:
            raise EngineError("relion", "finding RELION", None, "relion_refine is not on PATH: install RELION "
                              "(Debian/Ubuntu: apt-get install relion) or give its folder (config relion.prefix, --relion-prefix)")
        self.relion: RelionInstall = install
        self.threads, self.mpi = int(threads or 1), int(mpi)
        # relion_refine's --gpu takes an optional device list; empty: every GPU it can see.
        self.gpu_args = ["--gpu", ""] if gpu else []

    # ----------------------------------------------------------------- 2D classification
    def classify2d(self, particles, job_dir, resume: Resume | str = Resume.AFRESH, **options) -> Class2DResult:
        """relion_refine 2D classification into ``job_dir`` (options: :class:`RelionClass2DParams` fields;
        the builtin engine's search settings are ignored).

        A finished job is returned as it is and an interrupted one continues whatever ``resume``
        says (RELION's iteration files carry the settings); ``particle_diameter`` 0 keeps RELION's
        default mask.
        """
        job = Path(job_dir)
        Resume(resume)  # checked; RELION decides from its own files
        options = {k: v for k, v in options.items() if k not in self.class2d_ignored}
        if options.get("particle_diameter", 1) <= 0:
            options.pop("particle_diameter")
        params = _params(RelionClass2DParams, options)
        job.mkdir(parents=True, exist_ok=True)
        status = job_status(job)
        if status != "success":
            resumable = self._resumable(job)
            if resumable is not None:
                cmd = self._continue_command(resumable, job, params.iterations)
            else:
                star = prepare_input(particles, job)
                cmd = class2d_command(self.relion, star, job, params, self.threads, self.mpi) + self.gpu_args
            clear_markers(job)
            run_relion(cmd, job, "relion_refine (2D classification)")
        found = last_finished_iteration(job)
        return Class2DResult(self.name, job, found["iteration"], found["model"], found["data"], found["classes"],
                             extra={"relion": self.relion.describe(), "params": asdict(params)})

    def _resumable(self, job: Path) -> Path | None:
        """The last optimiser.star of an interrupted run that RELION can continue from, or None.

        ``--continue`` reads the iteration's sampling.star too, which RELION writes last and
        not at all for iteration 0; without it the run starts again (same seed, same result).
        """
        try:
            found = last_finished_iteration(job)
        except InputError:
            return None
        if found["optimiser"].exists() and found["sampling"].exists():
            return found["optimiser"]
        return None

    def _continue_command(self, optimiser: Path, job: Path, iterations: int) -> list[str]:
        log.info("continuing %s from %s", job, optimiser.name)
        return [self.relion.refine, "--continue", str(optimiser), "--o", str(job / "run"), "--iter", str(iterations),
                "--j", str(self.threads), "--pipeline_control", f"{job}/"] + self.gpu_args

    # ----------------------------------------------------------------- initial model
    def abinit(self, particles, job_dir, **options) -> AbinitResult:
        """De novo initial model (SGD on RELION 3.x, VDAM on 4+), run in ``job_dir/relion``; its last
        iteration's map and particles are copied to ``abinit.mrc`` and ``abinit_particles.star``.

        Options: :data:`~cryosift.engines.base.ABINIT_OPTIONS` (translated: ``mask_diameter``
        defaults to 85 % of the box, ``final_resolution`` is capped at Nyquist) or
        :class:`InitialModelParams` fields; the builtin engine's search settings are ignored.
        RELION makes no half maps here.
        """
        out = Path(job_dir)
        job = out / "relion"
        pset = particles if isinstance(particles, ParticleSet) else read_particles(particles)
        options = {k: v for k, v in options.items() if k not in _ABINIT_IGNORED}
        params = _params(InitialModelParams, _initial_model_options(options, pset))
        job.mkdir(parents=True, exist_ok=True)
        if job_status(job) != "success":
            star = prepare_input(pset, job)
            clear_markers(job)
            cmd = initial_model_command(self.relion, star, job, params, self.threads, self.mpi) + self.gpu_args
            run_relion(cmd, job, "relion_refine (initial model)")
        iteration, relion_map, data_star = last_finished_iteration_3d(job)
        map_path, star_path, halves = abinit_paths(out)
        for half in halves:  # none from RELION: stale ones from another engine must not be validated
            half.unlink(missing_ok=True)
        for source, target in ((data_star, star_path), (relion_map, map_path)):
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
        return AbinitResult(self.name, out, map_path, star_path, None, seed=params.seed,
                            extra={"iteration": iteration, "relion_job": job, "relion_map": relion_map,
                                   "relion_data": data_star})

    # ----------------------------------------------------------------- reconstruction
    def reconstruct(self, particles, job_dir, symmetry: str = "C1", half_maps: bool = True,
                    **_options) -> ReconstructionResult:
        """relion_reconstruct of the full set and (``half_maps``) of each rlnRandomSubset half."""
        job = Path(job_dir)
        job.mkdir(parents=True, exist_ok=True)
        star = prepare_input(particles, job)
        pset = read_particles_star(star)
        full, halves = reconstruction_paths(job)
        outputs = {"full": full}
        if half_maps:
            if "rlnRandomSubset" not in pset.particles:
                raise InputError(pset.source, "half maps need rlnRandomSubset")
            outputs.update(half1=halves[0], half2=halves[1])
        for key, out in outputs.items():
            if out.exists():
                continue
            subset = {"half1": 1, "half2": 2}.get(key)
            with atomic_path(out) as tmp:
                run_relion(reconstruct_command(self.relion, star, tmp, symmetry, subset), job,
                           f"relion_reconstruct ({key})", log_name="reconstruct.log")
        return ReconstructionResult(self.name, job, full, halves if half_maps else None)

    # ----------------------------------------------------------------- re-extraction
    def extract(self, particles, job_dir, box: int | None = None, background_radius: int | None = None,
                invert_contrast: bool = False, **_options) -> ExtractionResult:
        """Re-extract from micrographs with relion_preprocess (needs rlnMicrographName and coordinates)."""
        job = Path(job_dir)
        pset = particles if isinstance(particles, ParticleSet) else read_particles(particles)
        pset.require(("rlnMicrographName", "rlnCoordinateX", "rlnCoordinateY"), "re-extraction from micrographs")
        missing = [m for m in pset.particles["rlnMicrographName"].unique() if not Path(m).exists()]
        if missing:
            raise InputError(pset.source, f"micrograph {missing[0]} not found (re-extraction needs the micrographs)")
        box = box or pset.box
        radius = background_radius or int(box * 0.375)
        job.mkdir(parents=True, exist_ok=True)
        star = job / "input_particles.star"
        write_particles_star(star, pset)
        if job_status(job) != "success":
            clear_markers(job)
            run_relion(reextract_command(self.relion, star, job, box, radius, invert_contrast), job,
                       "relion_preprocess (re-extraction)")
        return ExtractionResult(self.name, job, job / "particles.star", len(pset))


def last_finished_iteration_3d(job: Path) -> tuple[int, Path, Path]:
    """(iteration, class001 map, data.star) of the last complete initial-model iteration."""
    best = None
    for data in job.glob("run_it*_data.star"):
        stem = data.name[: -len("_data.star")]
        mrc = job / f"{stem}_class001.mrc"
        if mrc.exists():
            it = int(stem.rsplit("_it", 1)[1])
            if best is None or it > best[0]:
                best = (it, mrc, data)
    if best is None:
        raise InputError(job, "no finished initial-model iteration (run_itNNN_class001.mrc with _data.star)")
    return best
