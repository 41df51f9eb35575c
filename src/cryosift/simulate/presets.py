"""Named settings for common simulations: a tiny test set, the demo, and the speed benchmark."""

from __future__ import annotations

from cryosift.errors import InputError
from cryosift.simulate.spec import SimulationSpec, read_settings

_ALL_JUNK = ("empty_ice", "carbon_edge", "ice_blob", "aggregate", "off_centre", "partial")

PRESETS = {
    # Seconds to make; for tests and dry runs of the workflow.
    "tiny": {"name": "tiny", "mass_kda": 60.0, "box": 40, "pixel_size": 3.0, "n_particles": 240, "snr": 0.1,
             "defocus_range": [10000.0, 20000.0], "shift_sd_A": 3.0, "particles_per_micrograph": 40,
             "junk": {k: 0.04 for k in _ALL_JUNK}, "seed": 1},
    # The demo: about 3,000 particles, 2D-classifiable at 64 px, a third of them junk.
    "demo": {"name": "demo", "mass_kda": 250.0, "box": 64, "pixel_size": 3.0, "n_particles": 3000, "snr": 0.05,
             "defocus_range": [8000.0, 25000.0], "shift_sd_A": 4.0, "particles_per_micrograph": 100,
             "junk": {"empty_ice": 0.08, "carbon_edge": 0.04, "ice_blob": 0.05, "aggregate": 0.05,
                      "off_centre": 0.05, "partial": 0.05}, "seed": 2025},
    # Speed benchmark at 128 px.
    "benchmark": {"name": "benchmark", "mass_kda": 150.0, "box": 128, "pixel_size": 1.5, "n_particles": 20000,
                  "snr": 0.05, "junk": {"empty_ice": 0.05, "carbon_edge": 0.03, "ice_blob": 0.03, "aggregate": 0.03,
                                        "off_centre": 0.03, "partial": 0.03}, "seed": 7},
}


def preset(name: str, **changes) -> SimulationSpec:
    """The settings of a named preset, with some settings changed.

    Raises
    ------
    InputError
        Unknown preset name or bad changed setting.
    """
    if name not in PRESETS:
        raise InputError(None, f"unknown preset {name!r} (known: {', '.join(PRESETS)})")
    return SimulationSpec.from_dict({**PRESETS[name], **changes}, source=f"preset {name}")


def resolve_spec(preset_name: str | None = None, config=None, overrides: dict | None = None) -> SimulationSpec:
    """Settings from a preset, then a YAML file, then explicit overrides (later ones win).

    Parameters
    ----------
    preset_name : str, optional
        A name from :data:`PRESETS`.
    config : str or Path, optional
        YAML settings file.
    overrides : dict, optional
        Setting -> value; None values are ignored; ``junk`` fractions are merged per type.
    """
    if preset_name and preset_name not in PRESETS:
        raise InputError(None, f"unknown preset {preset_name!r} (known: {', '.join(PRESETS)})")
    values: dict = dict(PRESETS[preset_name]) if preset_name else {}
    source = f"preset {preset_name}" if preset_name else None
    if config is not None:
        values.update(read_settings(config))
        source = config
    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if "junk" in overrides:  # junk fractions are merged type by type
        overrides["junk"] = {**(values.get("junk") or {}), **overrides["junk"]}
    values.update(overrides)
    return SimulationSpec.from_dict(values, source=source)
