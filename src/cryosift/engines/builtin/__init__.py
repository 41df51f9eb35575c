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
    """cryosift's own engine; 3D reconstruction and ab initio are added by delegating to
    :mod:`cryosift.reconstruct` in the same way ``classify2d`` delegates.

    Parameters
    ----------
    device : str, optional
        ``cuda``, ``cpu`` ...; default the GPU when there is one.
    threads : int, optional
        CPU threads for torch.
    """

    name = "builtin"
    capabilities = frozenset({"classify2d"})

    def __init__(self, device: str | None = None, threads: int | None = None):
        self.device = device
        self.threads = threads

    def classify2d(self, particles, job_dir, params: Class2DParams | None = None, **options):
        """See :func:`cryosift.engines.builtin.classify.classify2d`."""
        options.setdefault("device", self.device)
        options.setdefault("threads", self.threads)
        return classify2d(particles, job_dir, params, **options)


__all__ = ["BuiltinEngine", "Class2DParams", "classify2d"]
