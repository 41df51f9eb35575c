"""3D reconstruction: from particles with known poses (half maps, symmetry) and ab initio."""

from cryosift.reconstruct.abinit import AbinitRun, abinit
from cryosift.reconstruct.known_poses import reconstruct_half_maps, reconstruct_particles, write_reconstruction
from cryosift.reconstruct.schedule import AbinitSchedule
from cryosift.reconstruct.sgd import SearchSettings
from cryosift.reconstruct.symmetry import symmetry_operators

__all__ = ["AbinitRun", "AbinitSchedule", "SearchSettings", "abinit", "reconstruct_half_maps",
           "reconstruct_particles", "symmetry_operators", "write_reconstruction"]
