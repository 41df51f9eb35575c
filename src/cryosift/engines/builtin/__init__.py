"""The builtin engine: maximum-likelihood 2D classification in PyTorch (CPU or CUDA).

Modules: ``preprocess`` (cropping, normalisation, masking, streaming), ``grids`` and
``rotation`` (Fourier sampling), ``search`` (alignment), ``estep``, ``mstep``, ``noise``,
``accuracy`` (resolution and accuracies), ``relion_writer``, ``cs_export``, ``classify``
(the iteration loop).
"""

from cryosift.engines.base import EngineBase
from cryosift.engines.builtin.classify import classify2d
from cryosift.engines.builtin.params import Class2DParams


class BuiltinEngine(EngineBase):
    """cryosift's own engine: 2D classification here, 3D reconstruction and ab initio from
    :mod:`cryosift.reconstruct`; each operation is a thin call to the library function.

    Parameters
    ----------
    device : str, optional
        ``cuda``, ``cpu`` ...; default the GPU when there is one.
    threads : int, optional
        CPU threads for torch.
    """

    name = "builtin"
    capabilities = frozenset({"classify2d", "reconstruct", "abinit"})

    def __init__(self, device: str | None = None, threads: int | None = None):
        self.device = device
        self.threads = threads

    def classify2d(self, particles, job_dir, params: Class2DParams | None = None, **options):
        """See :func:`cryosift.engines.builtin.classify.classify2d`."""
        options.setdefault("device", self.device)
        options.setdefault("threads", self.threads)
        return classify2d(particles, job_dir, params, **options)

    def _particles(self, particles):
        from cryosift.io.convert import read_particles
        from cryosift.io.models import ParticleSet

        if self.threads:
            from cryosift.device import set_threads

            set_threads(self.threads)
        return particles if isinstance(particles, ParticleSet) else read_particles(particles)

    def reconstruct(self, particles, job_dir, symmetry: str = "C1", half_maps: bool = True, **options) -> dict:
        """Reconstruct ``job_dir/reconstruction.mrc`` (and half maps) from the particles' poses; returns
        the written paths (see :func:`cryosift.reconstruct.write_reconstruction`)."""
        from pathlib import Path

        from cryosift.reconstruct import write_reconstruction

        options.setdefault("device", self.device)
        Path(job_dir).mkdir(parents=True, exist_ok=True)
        return write_reconstruction(self._particles(particles), Path(job_dir) / "reconstruction", symmetry=symmetry,
                                    halves=half_maps, **options)

    def abinit(self, particles, job_dir, **options):
        """Ab initio map and poses in ``job_dir`` (see :func:`cryosift.reconstruct.abinit`)."""
        from cryosift.reconstruct import abinit

        options.setdefault("device", self.device)
        return abinit(self._particles(particles), job_dir, **options)


__all__ = ["BuiltinEngine", "Class2DParams", "classify2d"]
