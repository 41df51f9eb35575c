"""What to simulate: one dataclass with every setting, readable from YAML and written back as a dict."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from cryosift.errors import InputError, require_file
from cryosift.simulate.atomic_models import get_entry, is_atomic
from cryosift.simulate.orientations import MODES
from cryosift.simulate.pseudoprotein import SHAPES, parse_symmetry

#: Junk pick types, each a label in the ground truth.
JUNK_TYPES = ("empty_ice", "carbon_edge", "ice_blob", "aggregate", "off_centre", "partial")

_PAIRS = ("defocus_range", "phase_shift_range", "bfactor_range", "preferred_direction")


@dataclass
class SimulationSpec:
    """Settings of a simulated dataset (units: Å, Å/px, px, degrees, kV, mm, Å², kDa).

    Attributes
    ----------
    name : str
        Dataset name (written to dataset.json).
    structure : str
        ``"pseudo"`` for a generated pseudo-protein, ``"pdb:ID"`` for an entry of the shipped
        set of real structures (:mod:`cryosift.simulate.atomic_models`), or a PDB/mmCIF path.
    mass_kda, shape, symmetry :
        Pseudo-protein mass (whole particle, kDa), shape (globular, elongated,
        multidomain) and point group (C1, Cn, Dn).
    box : int
        Particle image side (px, even); the map has the same box.
    pixel_size : float
        Å/px of particles and map.
    map_resolution : float or None
        Gaussian low-pass of the true map (Å); at least, and by default, 2 x pixel size.
    n_particles : int
        Images in the stack, junk included.
    snr : float
        Signal-to-noise ratio of the true particles (see docs/simulate.md).
    orientations : {"uniform", "preferred", "views"}
    n_views : int
        Distinct views (views mode); otherwise labels particles with the nearest view.
    views : list of (rot, tilt) or None
        Explicit views in degrees.
    preferred_direction : (rot, tilt)
        Degrees, for ``preferred``.
    preferred_strength : float
        von Mises-Fisher concentration of the preferred-orientation bias.
    voltage, spherical_aberration, amplitude_contrast :
        kV, mm, fraction.
    defocus_range : (min, max)
        Mean defocus per micrograph, Å (positive = underfocus).
    astigmatism : float
        Largest |defocus U - defocus V|, Å.
    phase_shift_range, bfactor_range : (min, max)
        Degrees and Å² (B-factor envelope of the CTF, written as rlnCtfBfactor).
    particles_per_micrograph : int
        Particles sharing one micrograph's CTF.
    shift_sd_A : float
        Standard deviation of the in-plane shift per axis, Å.
    junk : dict
        Junk type -> fraction of all images (see :data:`JUNK_TYPES`).
    binned_box : int or None
        Also write a Fourier-binned copy of the stack at this box.
    seed : int
        Seed of every random step.
    micelle : bool or None
        Detergent micelle around a ``pdb:`` entry: None (default) for the entry's membrane
        proteins only, True or False to force it. Left out of :meth:`to_dict` when None, so
        settings written before it existed stay the same.
    """

    name: str = "simulated"
    structure: str = "pseudo"
    mass_kda: float = 150.0
    shape: str = "globular"
    symmetry: str = "C1"
    box: int = 128
    pixel_size: float = 1.5
    map_resolution: float | None = None
    n_particles: int = 1000
    snr: float = 0.05
    orientations: str = "uniform"
    n_views: int = 0
    views: list | None = None
    preferred_direction: tuple = (0.0, 0.0)
    preferred_strength: float = 4.0
    voltage: float = 300.0
    spherical_aberration: float = 2.7
    amplitude_contrast: float = 0.1
    defocus_range: tuple = (8000.0, 25000.0)
    astigmatism: float = 600.0
    phase_shift_range: tuple = (0.0, 0.0)
    bfactor_range: tuple = (0.0, 0.0)
    particles_per_micrograph: int = 100
    shift_sd_A: float = 2.0
    junk: dict = field(default_factory=dict)
    binned_box: int | None = None
    seed: int = 0
    micelle: bool | None = None

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of all settings."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def from_dict(cls, values: dict, source: str | Path | None = None) -> "SimulationSpec":
        """Build and check a spec from a mapping; unknown or bad settings raise InputError naming ``source``."""
        if not isinstance(values, dict):
            raise InputError(source, "settings must be a mapping of name: value")
        unknown = sorted(set(values) - set(cls.field_names()))
        if unknown:
            raise InputError(source, f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(cls.field_names())})")
        clean = dict(values)
        for key in _PAIRS:
            if key in clean and clean[key] is not None:
                pair = clean[key]
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise InputError(source, f"{key} must be two numbers, not {pair!r}")
                clean[key] = (float(pair[0]), float(pair[1]))
        if clean.get("views") is not None:
            try:
                clean["views"] = [[float(a), float(b)] for a, b in clean["views"]]
            except (TypeError, ValueError):
                raise InputError(source, f"views must be a list of [rot, tilt] pairs, not {clean['views']!r}") from None
        if clean.get("junk") is None:
            clean["junk"] = {}
        spec = cls(**clean)
        spec.validate(source)
        return spec

    @classmethod
    def from_yaml(cls, path: str | Path) -> "SimulationSpec":
        """Read settings from a YAML file; a relative ``structure`` path is taken relative to the file."""
        return cls.from_dict(read_settings(path), source=path)

    def to_dict(self) -> dict:
        """Plain settings (lists instead of tuples), suitable for YAML and JSON."""
        out = dataclasses.asdict(self)
        for key in _PAIRS:
            out[key] = list(out[key])
        out["junk"] = {k: float(v) for k, v in self.junk.items()}
        if out["micelle"] is None:
            del out["micelle"]
        return out

    def to_yaml(self) -> str:
        """The settings as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def replace(self, **changes) -> "SimulationSpec":
        """A checked copy with some settings changed."""
        values = self.to_dict()
        values.update(changes)
        return SimulationSpec.from_dict(values)

    @property
    def junk_fraction(self) -> float:
        """Total fraction of junk images."""
        return float(sum(self.junk.values()))

    def validate(self, source: str | Path | None = None) -> None:
        """Raise InputError (naming ``source``) on the first bad setting."""
        def bad(problem):
            raise InputError(source, problem)

        try:
            parse_symmetry(self.symmetry)
        except ValueError as exc:
            bad(str(exc))
        if is_atomic(self.structure):
            try:
                get_entry(self.structure)
            except InputError as exc:
                bad(exc.problem)
        if self.micelle is not None and not isinstance(self.micelle, bool):
            bad(f"micelle must be true, false or empty, not {self.micelle!r}")
        if self.micelle and not is_atomic(self.structure):
            bad("micelle needs a structure from the shipped set (structure: pdb:ID)")
        if self.shape not in SHAPES:
            bad(f"shape must be one of {', '.join(SHAPES)}, not {self.shape!r}")
        if self.orientations not in MODES:
            bad(f"orientations must be one of {', '.join(MODES)}, not {self.orientations!r}")
        if self.orientations == "views" and not self.views and self.n_views < 1:
            bad("orientations 'views' needs n_views >= 1 or a list of views")
        for key in ("box", "n_particles", "n_views", "particles_per_micrograph", "seed"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int):
                bad(f"{key} must be a whole number, not {value!r}")
        if not (self.box >= 16 and self.box % 2 == 0):
            bad(f"box must be an even number of pixels >= 16, not {self.box!r}")
        if self.binned_box is not None and not (isinstance(self.binned_box, int) and 8 <= self.binned_box < self.box
                                                and self.binned_box % 2 == 0):
            bad(f"binned_box must be even and smaller than box ({self.box}), not {self.binned_box!r}")
        positive = {"pixel_size": self.pixel_size, "snr": self.snr, "mass_kda": self.mass_kda,
                    "voltage": self.voltage, "n_particles": self.n_particles,
                    "particles_per_micrograph": self.particles_per_micrograph}
        for key, value in positive.items():
            if not isinstance(value, (int, float)) or value <= 0:
                bad(f"{key} must be a positive number, not {value!r}")
        if self.map_resolution is not None and self.map_resolution <= 0:
            bad(f"map_resolution must be positive (Å) or empty, not {self.map_resolution!r}")
        for key in ("shift_sd_A", "astigmatism", "preferred_strength", "spherical_aberration", "n_views"):
            if getattr(self, key) < 0:
                bad(f"{key} must not be negative")
        if not 0.0 <= self.amplitude_contrast < 1.0:
            bad(f"amplitude_contrast must be in [0, 1), not {self.amplitude_contrast}")
        lo, hi = self.defocus_range
        if not 0 < lo <= hi:
            bad(f"defocus_range must be 0 < min <= max (Å), not {list(self.defocus_range)}")
        if self.astigmatism / 2 >= lo:
            bad(f"astigmatism ({self.astigmatism} Å) must be under twice the smallest defocus ({lo} Å)")
        for key in ("phase_shift_range", "bfactor_range"):
            a, b = getattr(self, key)
            if a > b:
                bad(f"{key} must be (min, max), not {[a, b]}")
        for kind, frac in self.junk.items():
            if kind not in JUNK_TYPES:
                bad(f"unknown junk type {kind!r} (known: {', '.join(JUNK_TYPES)})")
            if not isinstance(frac, (int, float)) or not 0.0 <= frac <= 1.0:
                bad(f"junk fraction of {kind} must be in [0, 1], not {frac!r}")
        if self.junk_fraction > 1.0 + 1e-9:
            bad(f"junk fractions add up to {self.junk_fraction:.3f} > 1")


def read_settings(path: str | Path) -> dict:
    """The settings written in a YAML file (only those), with ``structure`` made relative to the file's folder.

    Raises
    ------
    InputError
        Missing file, invalid YAML, not a mapping, or unknown setting names.
    """
    p = require_file(path)
    try:
        values = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(p, f"not valid YAML ({exc})") from None
    if not isinstance(values, dict):
        raise InputError(p, "settings must be a mapping of name: value")
    unknown = sorted(set(values) - set(SimulationSpec.field_names()))
    if unknown:
        raise InputError(p, f"unknown setting(s) {', '.join(unknown)} (known: {', '.join(SimulationSpec.field_names())})")
    if values.get("structure", "pseudo") != "pseudo" and not is_atomic(values["structure"]):
        s = Path(str(values["structure"]))
        values["structure"] = str(s if s.is_absolute() else (p.parent / s))
    return values
