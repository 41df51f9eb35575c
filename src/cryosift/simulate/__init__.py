"""Ground-truth simulation: pseudo-proteins or user models -> particle stacks with CTF, noise and junk.

Typical use::

    from cryosift.simulate import SimulationSpec, simulate_dataset, preset
    ds = simulate_dataset(preset("demo"), "sim/demo", progress=True)
    ds.ground_truth.label.value_counts()
"""

from cryosift.simulate.dataset import SimulatedDataset, load_simulated_dataset, simulate_dataset
from cryosift.simulate.junk import junk_counts
from cryosift.simulate.orientations import draw_orientations
from cryosift.simulate.particles import Simulator, simulate_particles
from cryosift.simulate.presets import PRESETS, preset
from cryosift.simulate.pseudoprotein import PseudoProtein, build_pseudoprotein
from cryosift.simulate.renderer import ParticleRenderer
from cryosift.simulate.spec import JUNK_TYPES, SimulationSpec
from cryosift.simulate.structure import TrueStructure, load_true_structure
from cryosift.simulate.table import COLUMNS, draw_table

__all__ = [
    "COLUMNS", "JUNK_TYPES", "PRESETS", "ParticleRenderer", "PseudoProtein", "SimulatedDataset", "SimulationSpec",
    "Simulator", "TrueStructure", "build_pseudoprotein", "draw_orientations", "draw_table", "junk_counts",
    "load_simulated_dataset", "load_true_structure", "preset", "simulate_dataset", "simulate_particles",
]
