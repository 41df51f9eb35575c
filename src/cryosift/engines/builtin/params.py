"""Settings of the builtin 2D classification, named as RELION names them where they overlap."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class BuiltinClass2DParams:
    """Settings of maximum-likelihood 2D classification.

    Attributes
    ----------
    classes : int
        K, number of classes.
    iterations : int
        EM iterations (each one full pass, or a mini-batch early on; see ``minibatch``).
    particle_diameter : float
        Diameter of the circular mask in Å applied to particles and class averages
        (0: 90 % of the box).
    tau2_fudge : float
        Regularisation T: larger values trust the data more (sharper, noisier averages).
    psi_step : float
        In-plane angular step of the first (coarse) search pass, degrees.
    offset_range : float
        Translational search radius around each particle's previous offset, px of the
        classification box.
    offset_step : float
        Translational step of the coarse pass, px of the classification box.
    oversampling : int
        Adaptive oversampling order: the most probable coarse samples are refined on a
        grid 2**oversampling times finer in psi and in x, y (RELION's ``--oversampling``).
    highres_limit : float
        Highest resolution used in alignment, Å (0: up to Nyquist of the classification box).
    box : int
        Classification box in px: particles are Fourier-cropped to it (0: automatic,
        at most 100 px and no finer than needed for ``highres_limit``, or 6 Å).
    center_classes : bool
        Re-centre each class average on its centre of mass after every iteration.
    hard : bool
        Hard assignment (each particle counts only at its best class and pose).
    reseed_fraction : float
        In all but the last ``full_iterations`` + 1 iterations, a class holding less than
        ``reseed_fraction / classes`` of the particles is re-seeded by splitting the largest
        class (0: never, as in RELION 3.1).
    adaptive_fraction : float
        Fraction of the coarse posterior mass whose samples are refined (RELION's 0.999).
    max_significant : int
        Most coarse samples refined per particle; the rest of a broader posterior is used at
        coarse sampling.
    minibatch : int
        Particles per iteration in the mini-batch (online EM) phase; 0: automatic (used
        when there are more than 20 x ``minibatch_per_class`` x K particles), -1: never.
    minibatch_per_class : int
        Automatic mini-batch size per class.
    full_iterations : int
        Final iterations that always use every particle.
    sigma_offset : float
        Initial standard deviation of the offset prior in Å (RELION's ``--offset``).
    seed : int
        Random seed: initial class seeds, mini-batches, accuracy particles.
    batch_size : int
        Particles per E-step batch (0: chosen from the problem size and device).
    precision : str
        ``auto``, ``fp32``, ``tf32`` or ``bf16``: precision of the coarse search on CUDA
        (the refined pass and all sums are always float32 or better; CPU runs fp32).
    write_every : int
        Write iteration files every n iterations (the last one is always written).
    """

    classes: int = 20
    iterations: int = 20
    particle_diameter: float = 0.0
    tau2_fudge: float = 2.0
    psi_step: float = 12.0
    offset_range: float = 5.0
    offset_step: float = 2.0
    oversampling: int = 1
    highres_limit: float = 0.0
    box: int = 0
    center_classes: bool = True
    hard: bool = False
    reseed_fraction: float = 0.25
    adaptive_fraction: float = 0.999
    max_significant: int = 32
    minibatch: int = 0
    minibatch_per_class: int = 200
    full_iterations: int = 2
    sigma_offset: float = 10.0
    seed: int = 1
    batch_size: int = 0
    precision: str = "auto"
    write_every: int = 1

    def updated(self, **options) -> "BuiltinClass2DParams":
        """A copy with ``options`` applied; unknown names raise TypeError."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(options) - names)
        if unknown:
            raise TypeError(f"unknown 2D classification option(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **options)

    def check(self) -> None:
        """Raise ValueError on settings that cannot work."""
        if self.classes < 1:
            raise ValueError("classes must be >= 1")
        if self.iterations < 1:
            raise ValueError("iterations must be >= 1")
        if not 0 < self.psi_step <= 180:
            raise ValueError("psi_step must lie in (0, 180] degrees")
        if self.offset_range < 0 or self.offset_step <= 0:
            raise ValueError("offset_range must be >= 0 and offset_step > 0 (px)")
        if self.tau2_fudge <= 0:
            raise ValueError("tau2_fudge must be > 0")
        if self.oversampling not in (0, 1, 2):
            raise ValueError("oversampling must be 0, 1 or 2")
        if not 0 < self.adaptive_fraction <= 1:
            raise ValueError("adaptive_fraction must lie in (0, 1]")
        if self.precision not in ("auto", "fp32", "tf32", "bf16"):
            raise ValueError("precision must be auto, fp32, tf32 or bf16")
        if self.box and (self.box < 16 or self.box % 2):
            raise ValueError("box must be an even number of px >= 16")
