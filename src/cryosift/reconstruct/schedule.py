"""The ab initio schedule: resolution, minibatch size and temperature per iteration.

The schedule depends on its settings only (never on the particles), so runs with one seed
on different particle subsets ("cloned" runs) follow the same path and start from the
same random map.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AbinitSchedule:
    """Iteration plan of an ab initio run.

    Attributes
    ----------
    initial_resolution : float
        Resolution limit (Å) of the first iterations (cryoSPARC's default is 35 Å).
    final_resolution : float
        Resolution limit (Å) reached at the end (capped at what the box allows).
    initial_batch, final_batch : int
        Minibatch sizes (particles) at the start and at the end.
    initial_iterations : int
        Iterations held at the initial resolution and batch. They are cheap, and a random
        start needs many of them to find the overall shape before the resolution rises
        (with 5, 3,000 simulated particles locked into a wrong map; with 30 they did not).
    ramp_iterations : int
        Iterations over which the resolution (in 1/Å) and the batch grow linearly.
    final_iterations : int
        Iterations held at the final resolution and batch.
    initial_temperature : float
        Divides the log-likelihoods in the first iterations; falls to 1 by the middle of
        the ramp.
    initial_poses : float
        Effective number of poses each particle's posterior spreads over in the first
        iterations (the temperature is raised until it does), falling geometrically to 1
        by the middle of the ramp: broad early posteriors keep the random start from
        locking particles into wrong views. 0 turns this off.
    step : float
        Weight of each minibatch in the running map (1 forgets everything before).
    starts : int
        Random starting maps run through the coarse iterations; the one whose map best
        explains a fixed probe set of particles is carried on.
    select_resolution : float
        Resolution (Å) at which the best start is chosen.
    """

    initial_resolution: float = 35.0
    final_resolution: float = 12.0
    initial_batch: int = 300
    final_batch: int = 1000
    initial_iterations: int = 30
    ramp_iterations: int = 40
    final_iterations: int = 5
    initial_temperature: float = 1.0
    initial_poses: float = 100.0
    step: float = 0.3
    starts: int = 8
    select_resolution: float = 20.0

    def __post_init__(self):
        if not self.initial_resolution >= self.final_resolution > 0:
            raise ValueError(f"resolutions must satisfy initial ({self.initial_resolution} Å) >= final "
                             f"({self.final_resolution} Å) > 0")
        if min(self.initial_batch, self.final_batch) < 1:
            raise ValueError("minibatch sizes must be positive")
        if min(self.initial_iterations, self.ramp_iterations, self.final_iterations) < 0:
            raise ValueError("iteration counts must not be negative")
        if self.iterations < 1:
            raise ValueError("the schedule has no iterations")
        if self.starts < 1:
            raise ValueError("at least one starting map is needed")

    @property
    def iterations(self) -> int:
        """Total number of iterations."""
        return self.initial_iterations + self.ramp_iterations + self.final_iterations

    def _progress(self, it: int) -> float:
        """0 during the initial iterations, rising to 1 at the end of the ramp."""
        if self.ramp_iterations == 0:
            return 0.0 if it < self.initial_iterations else 1.0
        return min(1.0, max(0.0, (it - self.initial_iterations + 1) / self.ramp_iterations))

    def selection_iteration(self) -> int:
        """Iterations every start runs before the best is chosen (all starts reach ``select_resolution``)."""
        for it in range(self.iterations):
            if self.resolution(it) <= self.select_resolution + 1e-9:
                return it + 1
        return self.iterations

    def resolution(self, it: int) -> float:
        """Resolution limit in Å at iteration ``it`` (0-based), linear in 1/Å along the ramp."""
        f = self._progress(it)
        return 1.0 / ((1.0 - f) / self.initial_resolution + f / self.final_resolution)

    def batch(self, it: int) -> int:
        """Minibatch size at iteration ``it``."""
        f = self._progress(it)
        return int(round(self.initial_batch + f * (self.final_batch - self.initial_batch)))

    def _anneal(self, it: int) -> float:
        """1 at the start, 0 from the middle of the ramp on."""
        end = self.initial_iterations + 0.5 * self.ramp_iterations
        return 1.0 - (min(1.0, it / end) if end > 0 else 1.0)

    def poses(self, it: int) -> float | None:
        """Target effective number of poses per particle at iteration ``it`` (None: no target)."""
        if self.initial_poses <= 1.0:
            return None
        return float(self.initial_poses ** self._anneal(it))

    def temperature(self, it: int) -> float:
        """Likelihood temperature at iteration ``it``: initial_temperature falling to 1 by mid-ramp."""
        return 1.0 + (self.initial_temperature - 1.0) * self._anneal(it)
