"""The builtin engine: maximum-likelihood 2D classification in PyTorch (CPU or CUDA).

Modules: ``preprocess`` (cropping, normalisation, masking, streaming), ``grids`` and
``rotation`` (Fourier sampling), ``search`` (alignment), ``estep``, ``mstep``, ``noise``,
``accuracy`` (resolution and accuracies), ``relion_writer``, ``cs_export``, ``classify``
(the iteration loop).
"""

from __future__ import annotations

import logging
from pathlib import Path

from cryosift.engines.base import (
    RECONSTRUCTION_MAP,
    AbinitResult,
    Class2DResult,
    EngineBase,
    ReconstructionResult,
    Resume,
)
from cryosift.engines.builtin.classify import SettingsChanged, classify2d
from cryosift.engines.builtin.params import BuiltinClass2DParams

log = logging.getLogger(__name__)


class BuiltinEngine(EngineBase):
    """cryosift's own engine: 2D classification here, 3D reconstruction and ab initio from
    :mod:`cryosift.reconstruct`; each operation is a thin call to the library function.

    Parameters
    ----------
    device : str, optional
        ``cuda``, ``cpu`` ...; default the GPU when there is one.
    threads : int, optional
        CPU threads for torch.
    mpi, prefix, gpu
        RELION's program options (see :class:`~cryosift.engines.relion.RelionEngine`): ignored.
    """

    name = "builtin"
    capabilities = frozenset({"classify2d", "reconstruct", "abinit"})
    abinit_half_maps = True

    def __init__(self, device: str | None = None, threads: int | None = None, mpi=None, prefix=None, gpu=None):
        self.device = device
        self.threads = threads

    def classify2d(self, particles, job_dir, resume: Resume | str = Resume.AFRESH,
                   params: BuiltinClass2DParams | None = None, **options) -> Class2DResult:
        """See :func:`cryosift.engines.builtin.classify.classify2d`; ``options`` override fields of ``params``.

        ``resume``: :class:`~cryosift.engines.base.Resume`; with ``IF_SAME`` a job made with other
        settings starts afresh.
        """
        resume = Resume(resume)
        options.setdefault("device", self.device)
        options.setdefault("threads", self.threads)
        if resume is not Resume.IF_SAME:
            return classify2d(particles, job_dir, params, resume=resume is Resume.CONTINUE, **options)
        try:
            return classify2d(particles, job_dir, params, resume=True, **options)
        except SettingsChanged as exc:
            log.info("%s; starting afresh", exc.problem)
            return classify2d(particles, job_dir, params, resume=False, **options)

    def _particles(self, particles):
        from cryosift.io.convert import read_particles
        from cryosift.io.models import ParticleSet

        if self.threads:
            from cryosift.device import set_threads

            set_threads(self.threads)
        return particles if isinstance(particles, ParticleSet) else read_particles(particles)

    def reconstruct(self, particles, job_dir, symmetry: str = "C1", half_maps: bool = True,
                    **options) -> ReconstructionResult:
        """Reconstruct ``job_dir/reconstruction.mrc`` (and half maps) from the particles' poses
        (see :func:`cryosift.reconstruct.write_reconstruction`)."""
        from cryosift.reconstruct import write_reconstruction

        options.setdefault("device", self.device)
        job = Path(job_dir)
        job.mkdir(parents=True, exist_ok=True)
        paths = write_reconstruction(self._particles(particles), job / Path(RECONSTRUCTION_MAP).stem,
                                     symmetry=symmetry, halves=half_maps, **options)
        halves = (paths["half1"], paths["half2"]) if half_maps else None
        return ReconstructionResult(self.name, job, paths["map"], halves)

    def abinit(self, particles, job_dir, **options) -> AbinitResult:
        """Ab initio map and poses in ``job_dir`` (see :func:`cryosift.reconstruct.abinit`; its
        options, of which :data:`~cryosift.engines.base.ABINIT_OPTIONS` are common to all engines)."""
        from cryosift.reconstruct import abinit

        options.setdefault("device", self.device)
        run = abinit(self._particles(particles), job_dir, **options)
        return AbinitResult(self.name, Path(job_dir), run.map_path, run.star_path, (run.half1_path, run.half2_path),
                            seed=options.get("seed", 0),
                            extra={"seconds": run.seconds, "log": run.log_path, "n_particles": len(run.particles)})


__all__ = ["BuiltinEngine", "BuiltinClass2DParams", "classify2d"]
