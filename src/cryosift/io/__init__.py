"""File I/O in the field's units: MRC stacks and maps, RELION STAR, cryoSPARC .cs, conversion."""

from cryosift.io.classes import read_class_averages, read_cryosparc_classes, read_relion_classes
from cryosift.io.convert import (
    cs_to_star,
    dataset_from_particles,
    particles_from_dataset,
    read_particles,
    read_particles_cs,
    star_to_cs,
    write_particles,
)
from cryosift.io.cs import read_cs, write_cs
from cryosift.io.models import ClassAverages, ParticleSet
from cryosift.io.mrc import ImageStack, StackWriter, read_map, read_stack, write_map, write_stack
from cryosift.io.star import (
    last_finished_iteration,
    read_class2d_model,
    read_particles_star,
    read_star,
    write_particles_star,
    write_star,
)

__all__ = [
    "ClassAverages", "ImageStack", "ParticleSet", "StackWriter", "cs_to_star", "dataset_from_particles",
    "last_finished_iteration", "particles_from_dataset", "read_class2d_model", "read_class_averages",
    "read_cryosparc_classes", "read_cs", "read_map", "read_particles", "read_particles_cs",
    "read_particles_star", "read_relion_classes", "read_stack", "read_star", "star_to_cs", "write_cs",
    "write_map", "write_particles", "write_particles_star", "write_stack", "write_star",
]
