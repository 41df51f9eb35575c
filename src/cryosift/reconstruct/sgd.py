"""The ab initio optimisation loop: projected stochastic gradient descent from random maps.

Each iteration takes a minibatch of particles and scores it against projections of the
current map. While the resolution is coarser than the global-search limit, every particle
is spread over the whole orientation x shift grid by its posterior (marginalisation, as in
RELION's and cryoSPARC's SGD); beyond it, a global search is refined locally and each
particle is inserted at its best poses. The minibatch reconstruction (Wiener-filtered with
the particles' own signal and noise spectra) pulls the map a step towards it, and the map is
kept positive inside a soft mask. Several random starting maps are run through the coarse
iterations and the one that explains a fixed probe set of particles best (marginal
log-likelihood) is carried on. Resolution, minibatch size, temperature and starts follow an
:class:`~cryosift.reconstruct.schedule.AbinitSchedule`.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch

from cryosift.logs import ProgressLog
from cryosift.masks import soft_disc
from cryosift.reconstruct.backproject import Backprojector
from cryosift.reconstruct.particles import undo_origin
from cryosift.reconstruct.posesearch import (
    DiscProjector,
    global_search,
    marginal_log_likelihood,
    marginal_search,
    local_search,
    project_disc,
)
from cryosift.reconstruct.sampling import shift_grid, so3_grid
from cryosift.reconstruct.prepared import Disc, PreparedParticles
from cryosift.reconstruct.schedule import AbinitSchedule
from cryosift.reconstruct.symmetry import expand_rotations, symmetry_order

log = logging.getLogger(__name__)


@dataclass
class SearchSettings:
    """Pose-search settings of an ab initio run.

    Attributes
    ----------
    grid_step : float
        Spacing in degrees of the global orientation grid (15: ~4,400 orientations).
    global_resolution : float
        Resolution in Å up to which particles are spread over the whole global grid; past
        it, the global search stops here and local refinement goes on.
    max_shift : float
        Largest particle origin searched, in Å.
    mask_diameter : float
        Diameter in Å of the soft spherical mask applied to the map each iteration.
    candidates : int
        Poses kept per particle after the global search and each refinement.
    inserted : int
        Best poses per particle inserted into the map, weighted by their posterior.
    """

    grid_step: float = 15.0
    global_resolution: float = 18.0
    max_shift: float = 10.0
    mask_diameter: float = 0.0
    candidates: int = 3
    inserted: int = 1


def soft_sphere(box: int, radius_px: float, edge_px: float, device=None) -> torch.Tensor:
    """Soft spherical mask, 1 inside ``radius_px``, cosine edge ``edge_px`` wide, float32, shape (box,)*3."""
    return soft_disc(box, 3, radius_px, edge_px, tensor=True, device=device)


def random_map(box: int, radius_px: float, resolution_px: float, seed: int, device=None) -> torch.Tensor:
    """A smooth random starting map that depends on the seed and the box only.

    A Gaussian blob filling about half the mask, modulated by random density at half the
    starting resolution: featureless enough that the first poses follow the particles,
    not the map, yet not spherical (a sphere is a fixed point of the iterations).

    Parameters
    ----------
    box : int
        Map side in voxels.
    radius_px : float
        Mask radius in voxels.
    resolution_px : float
        Starting resolution as a radius in Fourier px.
    seed : int
        Random seed.

    Returns
    -------
    torch.Tensor
        float32, shape (box, box, box), non-negative, unit maximum.
    """
    gen = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((box, box, box), generator=gen, dtype=torch.float32).to(device)
    k = torch.fft.fftfreq(box, d=1.0 / box, device=device)
    kx = torch.fft.rfftfreq(box, d=1.0 / box, device=device)
    r = torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)
    smooth = torch.fft.irfftn(torch.fft.rfftn(noise) * torch.exp(-0.5 * (r / max(0.5 * resolution_px, 1.0)) ** 2),
                              s=(box,) * 3)
    smooth = smooth / smooth.std().clamp_min(1e-12)
    c = torch.arange(box, device=device, dtype=torch.float32) - box // 2
    r2 = c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2
    blob = torch.exp(-0.5 * r2 / (0.5 * radius_px) ** 2)
    vol = (blob * (1.0 + 0.5 * smooth)).clamp_min(0.0)
    return vol / vol.max().clamp_min(1e-12)


def even_box(radius: float, limit: int) -> int:
    """Smallest even box whose transform holds ``radius`` Fourier px with a margin, at most ``limit``."""
    b = int(math.ceil(2.0 * radius)) + 6
    return min(limit, b + (b % 2))


class AbinitOptimiser:
    """Runs the schedule on prepared particles.

    The running map V lives in real space at ``work_box`` voxels. Each iteration
    reconstructs the minibatch at its posterior poses (Wiener-filtered with the signal
    and noise spectra measured from the particles) and moves the map a step towards it,
    V <- (1 - step) V + step V_batch, then keeps it positive inside the soft mask
    (projected stochastic gradient descent, as in cryoSPARC and RELION's SGD).

    Parameters
    ----------
    particles : PreparedParticles
        Particle transforms and CTFs on ``disc``.
    disc : Disc
        Coefficients up to the final resolution.
    schedule : AbinitSchedule
        Resolution, batch and temperature per iteration.
    search : SearchSettings
        Pose-search settings (mask and shift range in Å).
    seed : int
        Random seed (initial map, minibatches).
    symmetry : str
        Point group imposed on the map.
    """

    def __init__(self, particles: PreparedParticles, disc: Disc, schedule: AbinitSchedule, search: SearchSettings,
                 seed: int, symmetry: str = "C1"):
        self.p, self.disc, self.schedule, self.search = particles, disc, schedule, search
        self.seed, self.symmetry = int(seed), symmetry
        self.device = particles.values.device
        self.box, self.pixel_size = particles.box, particles.pixel_size
        self.max_radius = float(disc.radius[-1])
        self.work_box = even_box(self.max_radius, self.box)
        self.grid = torch.as_tensor(so3_grid(search.grid_step), dtype=torch.float32, device=self.device)
        self.n_shell = int(disc.shell.max()) + 1
        self.data_power, self.ctf_power = particles.power, particles.ctf_power
        self.noise = particles.noise.clone()
        voxel = self.pixel_size * self.box / self.work_box
        self.mask = soft_sphere(self.work_box, 0.5 * search.mask_diameter / voxel, max(2.0, 0.05 * self.work_box),
                                self.device)
        self.history = []
        self.progress: ProgressLog | None = None  # one log line per iteration while run() runs
        self.phase = "start 1"
        self.selected_start = 0
        self.volume = self.initial_map(0)

    # ------------------------------------------------------------------ map
    def scale_for(self, vol: torch.Tensor, radius: float) -> float:
        """Scale a map so its CTF-modulated projections carry the particles' signal power (data minus noise)."""
        k = self.disc.count(radius)
        proj = project_disc(DiscProjector(vol), self.grid[::97], self.disc.freqs[:k])
        shell = self.disc.shell[:k]
        model = self.ctf_power[shell] * (proj[:, :k] ** 2 + proj[:, k:] ** 2).mean(0)
        signal = (self.data_power - self.noise).clamp_min(0.0)[shell]
        keep = self.disc.radius[:k] > 0
        return float(torch.sqrt(signal[keep].sum() / model[keep].sum().clamp_min(1e-30)))

    def regulariser(self) -> torch.Tensor:
        """Wiener term noise / signal per shell of the working box, from the particles' spectra."""
        signal = ((self.data_power - self.noise) / self.ctf_power).clamp_min(1e-2 * self.noise / self.ctf_power)
        reg = torch.full((self.work_box // 2 + 1,), float("inf"), device=self.device)
        n = min(len(reg), self.n_shell)
        reg[:n] = (self.noise / signal)[:n]
        reg[:2] = 0.0
        return reg

    def update_map(self, batch: Backprojector, radius: float, step: float) -> None:
        """Move the map a step towards the minibatch reconstruction; keep it positive and masked."""
        target = batch.volume(regulariser=self.regulariser(), max_radius=radius)
        # Protein is dense against the solvent (white, RELION's CTF sign): positivity is a strong prior.
        self.volume = ((1.0 - step) * self.volume + step * target).clamp_min(0.0) * self.mask

    # ------------------------------------------------------------------ poses
    def search_poses(self, rows: torch.Tensor, radius: float, projector: DiscProjector, temperature: float,
                     keep: int, rounds: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Global then local search for the given particles; returns rotations, shifts, scores, K used."""
        s = self.search
        k, weight, _, _, x, c = self.search_setup(rows, radius)
        freqs = self.disc.freqs[:k]
        kg, _, step_g, shifts, _, _ = self.search_setup(rows[:0], min(radius, self.global_radius()))
        proj = project_disc(projector, self.grid, freqs[:kg])
        o, t, _ = global_search(x[:, :kg], c[:, :kg], weight[:kg], proj, freqs[:kg], shifts, self.box, temperature, s.candidates)
        rot, sh = self.grid[o], shifts[t]
        step, sstep = s.grid_step, step_g
        for r in range(rounds):
            step, sstep = step / 2.0, sstep / 2.0
            last = r == rounds - 1
            rot, sh, score = local_search(projector, x, c, weight, freqs, self.box, rot, sh, step, sstep,
                                          temperature, keep if last else s.candidates)
        return rot, sh, score, k

    def global_radius(self) -> float:
        """Fourier radius (px) of the global search."""
        return self.box * self.pixel_size / self.search.global_resolution

    def search_setup(self, rows: torch.Tensor, radius: float):
        """Particles, weights and the global shift grid at ``radius`` Fourier px."""
        k = self.disc.count(radius)
        weight = self.disc.mult[:k] / self.noise[self.disc.shell[:k]]
        weight[self.disc.radius[:k] == 0] = 0.0  # the mean density is not a pose signal
        step = self.box / (3.0 * max(float(self.disc.radius[k - 1]), 1.0))
        shifts = torch.as_tensor(shift_grid(self.search.max_shift / self.pixel_size, step), dtype=torch.float32,
                                 device=self.device)
        return k, weight, step, shifts, self.p.values[rows, :k], self.p.ctf[rows, :k]

    def marginalise(self, bp: Backprojector, rows: torch.Tensor, radius: float, projector: DiscProjector,
                    temperature: float, target_poses: float | None = None):
        """Coarse-phase E and M steps: every particle spread over the global grid by its posterior."""
        k, weight, _, shifts, x, c = self.search_setup(rows, radius)
        freqs = self.disc.freqs[:k]
        proj = project_disc(projector, self.grid, freqs)
        data, wsum, o, t, p, temperature = marginal_search(x, c, weight, self.disc.mult[:k], proj, freqs, shifts,
                                                           self.box, temperature, target_poses)
        order = symmetry_order(self.symmetry)
        rots = torch.as_tensor(expand_rotations(self.grid.cpu().numpy(), self.symmetry), dtype=torch.float32,
                               device=self.device)
        bp.insert(freqs, data.repeat_interleave(order, 0), wsum.repeat_interleave(order, 0), rots)
        return self.grid[o][:, None], shifts[t][:, None], p[:, None], k, temperature

    def insert(self, bp: Backprojector, rows: torch.Tensor, rot: torch.Tensor, sh: torch.Tensor,
               prob: torch.Tensor, k: int) -> None:
        """Insert each particle at its kept poses, weighted by their probabilities."""
        m, keep = prob.shape
        freqs, mult = self.disc.freqs[:k], self.disc.mult[:k]
        x = self.p.values[rows, :k].repeat_interleave(keep, 0)
        c = self.p.ctf[rows, :k].repeat_interleave(keep, 0)
        z = undo_origin(x, freqs, sh.reshape(-1, 2), self.box)
        w = prob.reshape(-1, 1) * mult
        order = symmetry_order(self.symmetry)
        rots = torch.as_tensor(expand_rotations(rot.reshape(-1, 3, 3).cpu().numpy(), self.symmetry),
                               dtype=torch.float32, device=self.device)
        bp.insert(freqs, (w * c * z).repeat_interleave(order, 0), (w * c * c).repeat_interleave(order, 0), rots)

    # ------------------------------------------------------------------ loop
    def initial_map(self, start: int) -> torch.Tensor:
        """Random starting map number ``start``: a function of the seed, the start and the box only."""
        seed = int(np.random.SeedSequence([self.seed, 5, start]).generate_state(1)[0])
        voxel = self.pixel_size * self.box / self.work_box
        radius = self.box * self.pixel_size / self.schedule.resolution(0)
        vol = random_map(self.work_box, 0.5 * self.search.mask_diameter / voxel, radius, seed, self.device)
        return vol * self.scale_for(vol, radius)

    def step(self, it: int, stream: int = 0, callback=None) -> None:
        """One iteration on the running map; ``stream`` separates the minibatches of different starts."""
        t0 = time.perf_counter()
        sched, n = self.schedule, len(self.p.values)
        radius = min(self.max_radius, self.box * self.pixel_size / sched.resolution(it))
        projector = DiscProjector(self.volume)
        m = min(n, sched.batch(it))
        rng = np.random.default_rng([self.seed, 1, it, stream])
        rows = torch.as_tensor(np.sort(rng.choice(n, m, replace=False)), device=self.device)
        temp = sched.temperature(it)
        batch = Backprojector(self.work_box, device=self.device)
        if radius <= self.global_radius():
            rot, sh, prob, k, temp = self.marginalise(batch, rows, radius, projector, temp, sched.poses(it))
        else:
            rot, sh, score, k = self.search_poses(rows, radius, projector, temp, self.search.inserted)
            prob = torch.softmax(score, dim=1)
            self.insert(batch, rows, rot, sh, prob, k)
        self.update_map(batch, radius, sched.step)
        self.history.append({"iteration": it + 1, "start": stream, "resolution_A": self.box * self.pixel_size / radius,
                             "batch": m, "temperature": temp, "mean_max_probability": float(prob.max(1).values.mean()),
                             "log_likelihood": math.nan, "seconds": time.perf_counter() - t0})
        if self.progress is not None:
            self.progress.step("iteration {iteration} ({phase}): {resolution_A:.1f} Å, {batch} particles, "
                               "T={temperature:.2f}, <max p>={mean_max_probability:.3f}, {seconds:.1f} s"
                               .format(phase=self.phase, **self.history[-1]))
        if callback is not None:
            callback(it, rows, rot[:, 0], sh[:, 0])

    def log_likelihood(self, radius: float, probe: int = 500) -> float:
        """Mean marginal log-likelihood of a fixed probe set of particles under the running map."""
        n = len(self.p.values)
        rows = torch.as_tensor(np.sort(np.random.default_rng([self.seed, 3]).choice(n, min(n, probe), replace=False)),
                               device=self.device)
        k, weight, _, shifts, x, c = self.search_setup(rows, radius)
        proj = project_disc(DiscProjector(self.volume), self.grid, self.disc.freqs[:k])
        return float(marginal_log_likelihood(x, c, weight, proj, self.disc.freqs[:k], shifts, self.box).mean())

    def run(self, progress: bool = False, callback=None) -> None:
        """Run the schedule: every start through the coarse iterations, then the best one to the end.

        Parameters
        ----------
        progress : bool
            Show a progress bar.
        callback : callable, optional
            Called after each iteration as ``callback(iteration, rows, rotations, shifts_px)``
            with the minibatch's best poses (for monitoring).
        """
        sched = self.schedule
        select = sched.selection_iteration() if sched.starts > 1 else 0
        total = sched.starts * select + sched.iterations - select
        self.progress = ProgressLog(log, "ab initio", total)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=total, unit="it", desc="ab initio")
        best = None
        for start in range(sched.starts if select else 0):
            self.volume = self.initial_map(start)
            self.phase = f"start {start + 1} of {sched.starts}"
            for it in range(select):
                self.step(it, start, callback)
                if bar is not None:
                    bar.update()
            radius = min(self.max_radius, self.box * self.pixel_size / sched.resolution(select - 1))
            score = self.log_likelihood(radius)
            self.history[-1]["log_likelihood"] = score
            log.info("ab initio start %d: log-likelihood %.2f at %.1f Å", start + 1, score,
                     self.box * self.pixel_size / radius)
            if best is None or score > best[0]:
                best = (score, start, self.volume)
        if best is not None:
            self.volume, self.selected_start = best[2], best[1]
        else:
            self.volume, self.selected_start = self.initial_map(0), 0
        self.phase = f"start {self.selected_start + 1}" + (" selected" if select else "")
        for it in range(select, sched.iterations):
            self.step(it, 0, callback)
            if bar is not None:
                bar.update()
        if bar is not None:
            bar.close()
        self.progress = None

    def final_poses(self, chunk: int = 500, progress: bool = False):
        """Best pose of every particle against the final map (temperature 1, three local rounds).

        Returns
        -------
        rotations : np.ndarray
            Shape (n, 3, 3).
        shifts_px : np.ndarray
            (x, y) origins in px, shape (n, 2).
        max_probability : np.ndarray
            Posterior of the best pose among the poses kept, shape (n,).
        """
        n = len(self.p.values)
        radius = self.max_radius
        projector = DiscProjector(self.volume)
        rots, shifts, probs = [], [], []
        starts = range(0, n, chunk)
        done = ProgressLog(log, "final poses (particles)", n, every=30.0)
        if progress:
            from tqdm import tqdm

            starts = tqdm(starts, unit="chunk", desc="final poses")
        for a in starts:
            rows = torch.arange(a, min(n, a + chunk), device=self.device)
            rot, sh, score, _ = self.search_poses(rows, radius, projector, 1.0, self.search.candidates, rounds=3)
            rots.append(rot[:, 0].cpu())
            shifts.append(sh[:, 0].cpu())
            probs.append(torch.softmax(score, 1)[:, 0].cpu())
            done.step(n=len(rows))
        return (torch.cat(rots).double().numpy(), torch.cat(shifts).double().numpy(), torch.cat(probs).double().numpy())
