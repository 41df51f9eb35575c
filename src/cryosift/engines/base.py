"""The engine protocol: one interface for the builtin, RELION and cryoSPARC back ends.

An engine turns a particle set into results on disk in one layout, whichever engine made
them, and returns a typed record naming those files:

=====================  ============================  ==================================================
operation              record                        files in ``job_dir``
=====================  ============================  ==================================================
``classify2d``         :class:`Class2DResult`        ``run_itNNN_model.star``, ``_data.star``,
                                                     ``_classes.mrcs`` (RELION Class2D layout)
``abinit``             :class:`AbinitResult`         ``abinit.mrc``, ``abinit_particles.star`` (3D
                                                     poses), ``abinit_half1.mrc``/``_half2.mrc`` if made
``reconstruct``        :class:`ReconstructionResult` ``reconstruction.mrc``,
                                                     ``reconstruction_half1.mrc``/``_half2.mrc``
``extract``            :class:`ExtractionResult`     ``particles.star`` (and ``particles.cs`` on cryoSPARC)
=====================  ============================  ==================================================

An engine that works in its own layout (RELION's ``run_itNNN_class001.mrc``, cryoSPARC's
exports) renames or copies into this one inside the engine, so commands and the workflow
never look at an engine's name. :func:`cryosift.io.read_class_averages` reads the Class2D
folder of any engine. Engines are looked up by name with :func:`get_engine`; an engine
lists what it can do in ``capabilities``, and asking for anything else raises
:class:`UnsupportedOperation` instead of returning a made-up result.

Common keyword options of ``classify2d`` (each engine maps them onto its own settings):
``classes``, ``iterations``, ``particle_diameter`` (mask diameter, Å; 0 = the engine's
default), ``tau2_fudge``, ``psi_step`` (deg), ``offset_range`` and ``offset_step`` (px),
``highres_limit`` (Å, 0 = none), ``center_classes``, ``seed``; the builtin engine's search
settings (:data:`BUILTIN_TUNING_2D`) are accepted by every engine and ignored by those that
choose them themselves. ``resume`` (:class:`Resume`) says what to do with an unfinished job.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from enum import Enum
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


#: Settings of the builtin engine's 2D search that RELION and cryoSPARC choose themselves
#: (``box`` is the classification box the particles are Fourier-cropped to).
BUILTIN_TUNING_2D = ("oversampling", "box", "hard", "minibatch", "full_iterations", "precision", "write_every")


def known_options(engine: str, options: dict, accepted, ignored=()) -> dict:
    """``options`` less those in ``ignored``; any not in ``accepted`` is an error.

    Raises
    ------
    ValueError
        Naming the engine and the unknown option(s).
    """
    unknown = set(options) - set(accepted) - set(ignored)
    if unknown:
        raise ValueError(f"unknown {engine} option(s): {', '.join(sorted(unknown))}")
    return {k: v for k, v in options.items() if k not in set(ignored)}


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


#: File names of the common layout (see the module docstring).
ABINIT_MAP = "abinit.mrc"
ABINIT_PARTICLES = "abinit_particles.star"
ABINIT_HALVES = ("abinit_half1.mrc", "abinit_half2.mrc")
RECONSTRUCTION_MAP = "reconstruction.mrc"
RECONSTRUCTION_HALVES = ("reconstruction_half1.mrc", "reconstruction_half2.mrc")
EXTRACTED_PARTICLES = "particles.star"


class Resume(str, Enum):
    """What to do with an unfinished job in the job folder (``classify2d``'s ``resume``).

    Engines that track their jobs themselves (RELION's iteration files, cryoSPARC's job
    titles) always continue unfinished work and finished jobs are returned as they are; the
    builtin engine follows this setting.
    """

    #: Start afresh, removing earlier iterations.
    AFRESH = "afresh"
    #: Continue from the last finished iteration; changed settings are an error.
    CONTINUE = "continue"
    #: Continue when the settings are the same, else start afresh (what workflow reruns use).
    IF_SAME = "if-same"


@dataclass
class AbinitResult:
    """An ab initio map and the particles with the 3D poses it assigned, in the common layout.

    Attributes
    ----------
    engine : str
        The engine's name.
    job_dir : Path
        The folder holding the files below.
    map : Path
        ``abinit.mrc``: the map (MRC, voxel size = the particles' pixel size).
    particles : Path
        ``abinit_particles.star``: the particles with rlnAngleRot/Tilt/Psi and origins (RELION 3.1 STAR).
    half_maps : tuple of Path, or None
        ``abinit_half1.mrc``, ``abinit_half2.mrc`` when the engine made half maps on the map's grid.
    seed : int or None
        The seed the run used (cryoSPARC may draw one).
    extra : dict
        Engine-specific figures and paths (e.g. ``seconds``, ``iteration``, ``job``).
    """

    engine: str
    job_dir: Path
    map: Path
    particles: Path
    half_maps: tuple[Path, Path] | None = None
    seed: int | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class ReconstructionResult:
    """A map reconstructed from known poses, in the common layout.

    Attributes
    ----------
    engine : str
        The engine's name.
    job_dir : Path
        The folder holding the maps.
    map : Path
        ``reconstruction.mrc``.
    half_maps : tuple of Path, or None
        ``reconstruction_half1.mrc``, ``reconstruction_half2.mrc`` (None when not asked for).
    extra : dict
        Engine-specific details (e.g. the cryoSPARC ``job``).
    """

    engine: str
    job_dir: Path
    map: Path
    half_maps: tuple[Path, Path] | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class ExtractionResult:
    """Particles cut again from their micrographs, in the common layout.

    Attributes
    ----------
    engine : str
        The engine's name.
    job_dir : Path
        The folder holding the particles.
    particles : Path or None
        ``particles.star`` (RELION 3.1 STAR with the new stacks); None when the engine
        exported no STAR (a cryoSPARC output without particles).
    n_particles : int or None
        Particles extracted, when the engine reports it.
    extra : dict
        Engine-specific outputs (e.g. cryoSPARC's ``cs`` file and ``job``).
    """

    engine: str
    job_dir: Path
    particles: Path | None
    n_particles: int | None = None
    extra: dict = field(default_factory=dict)


def abinit_paths(job_dir: str | Path) -> tuple[Path, Path, tuple[Path, Path]]:
    """(map, particles, half maps) of the common ab initio layout in ``job_dir``."""
    job = Path(job_dir)
    return job / ABINIT_MAP, job / ABINIT_PARTICLES, (job / ABINIT_HALVES[0], job / ABINIT_HALVES[1])


def reconstruction_paths(job_dir: str | Path) -> tuple[Path, tuple[Path, Path]]:
    """(map, half maps) of the common reconstruction layout in ``job_dir``."""
    job = Path(job_dir)
    return job / RECONSTRUCTION_MAP, (job / RECONSTRUCTION_HALVES[0], job / RECONSTRUCTION_HALVES[1])


@runtime_checkable
class Engine(Protocol):
    """What every engine provides; see the module docstring for the common options."""

    name: str
    capabilities: frozenset

    def classify2d(self, particles: ParticleSet | str | Path, job_dir: str | Path, resume: Resume = Resume.AFRESH,
                   **options: Any) -> Class2DResult:
        """2D classification of ``particles`` into the RELION Class2D folder ``job_dir``.

        Options the engine has no counterpart for are listed in its ``class2d_ignored`` and
        dropped; any other unknown option is an error.
        """

    def reconstruct(self, particles: ParticleSet | str | Path, job_dir: str | Path,
                    **options: Any) -> ReconstructionResult:
        """3D reconstruction from the particles' known poses (``symmetry``, ``half_maps``)."""

    def abinit(self, particles: ParticleSet | str | Path, job_dir: str | Path, **options: Any) -> AbinitResult:
        """Ab initio 3D map from particles without poses (options: :data:`ABINIT_OPTIONS`)."""

    def extract(self, particles: ParticleSet | str | Path, job_dir: str | Path, **options: Any) -> ExtractionResult:
        """Re-extract particles (e.g. at full box) from their micrographs."""


#: Ab initio options of the engine protocol (each engine maps them onto its own settings, or
#: ignores those it has no counterpart for): ``seed``, ``symmetry``, ``initial_resolution``
#: and ``final_resolution`` (Å), ``initial_batch`` and ``final_batch`` (particles per
#: minibatch), ``iterations`` (initial, ramp, final), ``mask_diameter`` (Å).
ABINIT_OPTIONS = ("seed", "symmetry", "initial_resolution", "final_resolution", "initial_batch", "final_batch",
                  "iterations", "mask_diameter")


class EngineBase:
    """Shared behaviour: operations outside ``capabilities`` raise UnsupportedOperation.

    Subclasses set ``name`` and ``capabilities`` and override the operations they provide,
    typically as thin methods that delegate to library functions.
    """

    name = "base"
    capabilities: frozenset = frozenset()
    #: Whether ``abinit`` always writes ``abinit_half1.mrc``/``abinit_half2.mrc`` (so a workflow
    #: can declare them as outputs and validation as inputs).
    abinit_half_maps: bool = False

    def supports(self, operation: str) -> bool:
        """Whether this engine provides ``operation`` (one of :data:`OPERATIONS`)."""
        return operation in self.capabilities

    #: 2D classification options this engine accepts but has no counterpart for.
    class2d_ignored: frozenset = frozenset()

    def classify2d(self, particles, job_dir, resume=Resume.AFRESH, **options):
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


def makes_abinit_half_maps(name: str) -> bool:
    """Whether the engine called ``name`` always writes ab initio half maps (its class's
    ``abinit_half_maps``; the engine is not built, so this needs none of its programs)."""
    key = name.lower()
    if key not in _REGISTRY:
        raise ValueError(f"unknown engine {name!r}; known engines: {', '.join(available_engines())}")
    return bool(getattr(_resolve(key, _REGISTRY[key]), "abinit_half_maps", False))


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
