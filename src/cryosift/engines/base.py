"""The engine protocol: one interface for the builtin, RELION and cryoSPARC back ends.

An engine turns a particle set into results on disk in the form its peers can read:
2D classification writes a RELION Class2D job folder (``run_itNNN_model.star``,
``_data.star``, ``_classes.mrcs``) that :func:`cryosift.io.read_class_averages` reads,
whichever engine made it. Engines are looked up by name with :func:`get_engine`; an engine
lists what it can do in ``capabilities``, and asking for anything else raises
:class:`UnsupportedOperation` instead of returning a made-up result.

Common keyword options (each engine maps them onto its own settings): ``classes``,
``iterations``, ``particle_diameter`` (mask diameter, Å), ``tau2_fudge``, ``psi_step`` (deg),
``offset_range`` and ``offset_step`` (px), ``highres_limit`` (Å, 0 = none), ``seed``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

from cryosift.io.models import ClassAverages, ParticleSet

#: What an engine may be able to do.
OPERATIONS = ("classify2d", "reconstruct", "abinit", "extract")


class UnsupportedOperation(NotImplementedError):
    """The engine cannot do this (yet); the message names the engine and the operation."""

    def __init__(self, engine: str, operation: str):
        self.engine, self.operation = engine, operation
        super().__init__(f"the {engine} engine does not provide {operation}")


@dataclass
class Class2DResult:
    """Where a finished 2D classification lies on disk.

    Attributes
    ----------
    engine : str
        The engine's name.
    job_dir : Path
        The job folder (RELION Class2D layout).
    iteration : int
        The last iteration written.
    model_star, data_star, classes_mrcs : Path
        That iteration's ``run_itNNN_model.star``, ``_data.star`` and ``_classes.mrcs``.
    extra : dict
        Engine-specific outputs and figures (e.g. ``particles_cs``, ``wall_s``).
    """

    engine: str
    job_dir: Path
    iteration: int
    model_star: Path
    data_star: Path
    classes_mrcs: Path
    extra: dict = field(default_factory=dict)

    def class_averages(self) -> ClassAverages:
        """The class averages with their per-class numbers (read back from ``model_star``)."""
        from cryosift.io.classes import read_relion_classes

        averages = read_relion_classes(self.model_star)
        averages.engine = self.engine
        return averages

    def particles(self) -> ParticleSet:
        """The classified particles (class, in-plane angle and offsets) from ``data_star``."""
        from cryosift.io.star import read_particles_star

        return read_particles_star(self.data_star)


@runtime_checkable
class Engine(Protocol):
    """What every engine provides; see the module docstring for the common options."""

    name: str
    capabilities: frozenset

    def classify2d(self, particles: ParticleSet | str | Path, job_dir: str | Path, **options: Any) -> Class2DResult:
        """2D classification of ``particles`` into the RELION Class2D folder ``job_dir``."""

    def reconstruct(self, particles: ParticleSet | str | Path, job_dir: str | Path, **options: Any) -> Any:
        """3D reconstruction from the particles' known poses."""

    def abinit(self, particles: ParticleSet | str | Path, job_dir: str | Path, **options: Any) -> Any:
        """Ab initio 3D model(s) from particles without poses."""

    def extract(self, particles: ParticleSet | str | Path, job_dir: str | Path, **options: Any) -> Any:
        """Re-extract particles (e.g. at full box) from their micrographs."""


class EngineBase:
    """Shared behaviour: operations outside ``capabilities`` raise UnsupportedOperation.

    Subclasses set ``name`` and ``capabilities`` and override the operations they provide,
    typically as thin methods that delegate to library functions.
    """

    name = "base"
    capabilities: frozenset = frozenset()

    def supports(self, operation: str) -> bool:
        """Whether this engine provides ``operation`` (one of :data:`OPERATIONS`)."""
        return operation in self.capabilities

    def classify2d(self, particles, job_dir, **options):
        raise UnsupportedOperation(self.name, "classify2d")

    def reconstruct(self, particles, job_dir, **options):
        raise UnsupportedOperation(self.name, "reconstruct")

    def abinit(self, particles, job_dir, **options):
        raise UnsupportedOperation(self.name, "abinit")

    def extract(self, particles, job_dir, **options):
        raise UnsupportedOperation(self.name, "extract")


# --------------------------------------------------------------------------- registry

#: name -> factory (a callable returning an engine, or "module:attribute" imported on first use).
_REGISTRY: dict[str, Callable[..., Engine] | str] = {
    "builtin": "cryosift.engines.builtin:BuiltinEngine",
    "relion": "cryosift.engines.relion:RelionEngine",
    "cryosparc": "cryosift.engines.cryosparc:CryosparcEngine",
}


def register_engine(name: str, factory: Callable[..., Engine] | str) -> None:
    """Make ``get_engine(name)`` build engines with ``factory`` (or a ``"module:attribute"`` path)."""
    _REGISTRY[name.lower()] = factory


def available_engines() -> list[str]:
    """Registered engine names (an engine may still be unusable here, e.g. RELION not installed)."""
    return sorted(_REGISTRY)


def _resolve(name: str, factory) -> Callable[..., Engine]:
    if not isinstance(factory, str):
        return factory
    module_name, _, attribute = factory.partition(":")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"engine {name!r} is not available in this installation ({exc})") from None


def get_engine(name: str = "builtin", **kwargs: Any) -> Engine:
    """Build the engine called ``name``.

    Parameters
    ----------
    name : str
        ``builtin``, ``relion``, ``cryosparc`` or any name given to :func:`register_engine`.
    **kwargs
        Passed to the engine's constructor (e.g. ``device`` or ``threads`` for builtin).

    Raises
    ------
    ValueError
        Unknown name, or an engine whose module is missing.
    """
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown engine {name!r}; known engines: {', '.join(available_engines())}")
    return _resolve(key, _REGISTRY[key])(**kwargs)
