"""Particle images with CTF and noise at a target SNR, true particles and junk alike.

SNR is defined on the true particles: the mean, over particles, of the variance of the
noiseless CTF-modulated image inside the particle's circular mask (diameter = particle
diameter, centred on the box), divided by the variance of the white Gaussian noise.
The noise level is set once per dataset from a pilot of up to 512 true particles spread
over the dataset, and
images are scaled so that the noise has unit variance (RELION's normalisation).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryosift.io.rotations import euler_to_matrix
from cryosift.simulate.junk import REAL_SPACE_TYPES, render_junk
from cryosift.simulate.renderer import ParticleRenderer, circular_mask, masked_variance, unique_ctf
from cryosift.simulate.spec import SimulationSpec
from cryosift.simulate.table import draw_table

PILOT = 512


def projection_pad(box: int) -> int:
    """Oversampling of the map's transform: 3 for boxes up to 64 px (line integrals within 1 %), else 2 (2-3 %)."""
    return 3 if box <= 64 else 2


def noise_images(seed: int, indices, box: int) -> torch.Tensor:
    """Unit-variance Gaussian noise per image, float32 (n, box, box); image i's noise depends only on (seed, i)."""
    gen = torch.Generator()
    out = torch.empty((len(indices), box, box))
    for k, i in enumerate(indices):
        gen.manual_seed(int(np.random.SeedSequence([int(seed), 13, int(i)]).generate_state(1, np.uint64)[0] >> 1))
        out[k] = torch.randn((box, box), generator=gen)
    return out


class Simulator:
    """Renders images of ground-truth rows: projection, junk, CTF, noise.

    Parameters
    ----------
    volume : np.ndarray
        True map, float32 (box, box, box), [z, y, x].
    spec : SimulationSpec
        Optics, SNR and seed.
    diameter_A : float
        Particle diameter (Å): SNR mask and junk geometry.
    partial_volumes : sequence of np.ndarray
        Maps with a domain missing, indexed by the table's ``variant``.
    device : torch.device, optional
    apply_ctf : bool
        False leaves the CTF out (plain projections).
    """

    def __init__(self, volume, spec: SimulationSpec, diameter_A: float, partial_volumes=(), device=None,
                 apply_ctf: bool = True):
        self.spec = spec
        self.apply_ctf = apply_ctf
        self.renderer = ParticleRenderer(volume, spec.pixel_size, device=device, pad=projection_pad(spec.box))
        # Partial particles are junk: above 64 px a smaller transform (pad 1) keeps memory low.
        pad = projection_pad(spec.box) if spec.box <= 64 else 1
        self.partials = [ParticleRenderer(v, spec.pixel_size, device=device, pad=pad) for v in partial_volumes]
        self.device = self.renderer.device
        self.box = self.renderer.box
        self.diameter_px = min(float(diameter_A) / spec.pixel_size, float(self.box))
        self.mask = circular_mask(self.box, self.diameter_px, device=self.device)
        self.noise_sigma: float | None = None
        self.ref_peak: float | None = None
        self.signal_variance: float | None = None

    def _ctf_params(self, rows: pd.DataFrame) -> np.ndarray:
        return rows[["defocus_u_A", "defocus_v_A", "defocus_angle", "phase_shift", "bfactor"]].to_numpy(np.float64)

    def _ctf(self, rows: pd.DataFrame) -> torch.Tensor:
        s = self.spec
        if not self.apply_ctf:
            return torch.ones((len(rows), self.renderer.n_coefficients), device=self.device)
        return self.renderer.ctf(self._ctf_params(rows), s.voltage, s.spherical_aberration, s.amplitude_contrast)

    def _rotations(self, rows: pd.DataFrame) -> np.ndarray:
        return euler_to_matrix(rows["rot"].to_numpy(), rows["tilt"].to_numpy(), rows["psi"].to_numpy())

    def _shifts_px(self, rows: pd.DataFrame) -> np.ndarray:
        """Displacement of each particle from the box centre, px: minus the RELION origin."""
        return -rows[["origin_x_A", "origin_y_A"]].to_numpy(np.float64) / self.spec.pixel_size

    @staticmethod
    def pilot(table: pd.DataFrame) -> pd.DataFrame:
        """Up to 512 true particles spread evenly over the dataset (so over many micrographs and defoci)."""
        true = table[table["label"] == "true"]
        if true.empty:
            true = table
        pick = np.unique(np.linspace(0, len(true) - 1, min(PILOT, len(true))).round().astype(np.int64))
        return true.iloc[pick]

    def calibrate(self, table: pd.DataFrame) -> float:
        """Set the noise level from a pilot of true particles; returns the noise sigma (map units)."""
        pilot = self.pilot(table)
        packed = self.renderer.shift(self.renderer.slices(self._rotations(pilot)), self._shifts_px(pilot))
        self.ref_peak = float(self.renderer.to_images(packed).amax(dim=(1, 2)).mean())
        clean = self.renderer.to_images(packed * self._ctf(pilot))
        self.signal_variance = float(masked_variance(clean, self.mask).double().mean())
        self.noise_sigma = float(np.sqrt(self.signal_variance / self.spec.snr))
        return self.noise_sigma

    def signal(self, rows: pd.DataFrame) -> torch.Tensor:
        """Noiseless CTF-modulated images in map units, float32 (n, box, box), in the rows' order."""
        rows = rows.reset_index(drop=True)
        n = len(rows)
        packed = torch.zeros((n, self.renderer.n_coefficients), dtype=torch.complex64, device=self.device)
        label = rows["label"].to_numpy()
        sel = np.flatnonzero(label == "true")
        if len(sel):
            packed[sel] = self.renderer.shift(self.renderer.slices(self._rotations(rows.iloc[sel])),
                                              self._shifts_px(rows.iloc[sel]))
        for v, rend in enumerate(self.partials):
            sel = np.flatnonzero((label == "partial") & (rows["variant"].to_numpy() == v))
            if len(sel):
                packed[sel] = rend.shift(rend.slices(self._rotations(rows.iloc[sel])), self._shifts_px(rows.iloc[sel]))
        junk = np.isin(label, REAL_SPACE_TYPES)
        if not junk.any():
            return self.renderer.to_images(packed * self._ctf(rows))
        out = torch.empty((n, self.box, self.box), dtype=torch.float32, device=self.device)
        keep = np.flatnonzero(~junk)
        if len(keep):
            out[keep] = self.renderer.to_images(packed[keep] * self._ctf(rows.iloc[keep]))
        sel = np.flatnonzero(junk)
        out[sel] = self._junk_signal(rows.iloc[sel])
        return out

    def _junk_signal(self, rows: pd.DataFrame) -> torch.Tensor:
        """Real-space junk drawn on a canvas twice the box, CTF applied there, centre cropped."""
        if self.ref_peak is None:
            raise RuntimeError("calibrate() must run before junk is rendered")
        canvas, box = 2 * self.box, self.box
        imgs = render_junk(rows, self.renderer, self.spec.seed, self.ref_peak, self.diameter_px, canvas)
        if self.apply_ctf:
            s = self.spec
            ctfs, inverse = unique_ctf(canvas, s.pixel_size, self._ctf_params(rows), s.voltage, s.spherical_aberration,
                                       s.amplitude_contrast, device=self.device)
            ft = torch.fft.rfft2(torch.fft.ifftshift(imgs, dim=(-2, -1))) * ctfs[inverse]
            imgs = torch.fft.fftshift(torch.fft.irfft2(ft, s=(canvas, canvas)), dim=(-2, -1))
        o = canvas // 2 - box // 2
        return imgs[:, o:o + box, o:o + box]

    def render(self, rows: pd.DataFrame, noise: bool = True) -> np.ndarray:
        """Final images, float32 (n, box, box): signal / noise sigma + unit Gaussian noise."""
        if self.noise_sigma is None:
            raise RuntimeError("calibrate() must run before images are rendered")
        img = (self.signal(rows) / self.noise_sigma).cpu()
        if noise:
            img += noise_images(self.spec.seed, rows["index"].to_numpy(), self.box)
        return img.numpy()


def estimate_diameter(volume: np.ndarray, pixel_size: float, threshold: float = 0.05) -> float:
    """Particle diameter in Å from a map: twice the farthest voxel above ``threshold`` x max from the centre, + 2 px."""
    vol = np.asarray(volume)
    box = vol.shape[-1]
    z, y, x = np.nonzero(vol > threshold * vol.max())
    r = np.sqrt((x - box // 2) ** 2 + (y - box // 2) ** 2 + (z - box // 2) ** 2).max() if len(x) else box / 2
    return float(min(2 * r + 2, box) * pixel_size)


def simulate_particles(volume, pixel_size: float, n: int, seed: int = 0, snr: float | None = 0.1, ctf: bool = True,
                       diameter_A: float | None = None, device=None, return_signal: bool = False, **settings):
    """Simulate particle images of a map in memory (no files).

    Parameters
    ----------
    volume : np.ndarray
        Map, float32 (box, box, box), [z, y, x]; rotation centre voxel box // 2.
    pixel_size : float
        Å/px.
    n : int
        Number of images.
    seed : int
        Seed of every random step.
    snr : float or None
        Target SNR (see module docstring); None gives noiseless images in map units.
    ctf : bool
        Apply the CTF; False gives plain line-integral projections, each particle
        centred at the box centre minus its origin (RELION's convention).
    diameter_A : float, optional
        Particle diameter for the SNR mask (default: estimated from the map).
    device : torch.device or str, optional
    return_signal : bool
        Also return the noiseless images on the same scale as the noisy ones.
    **settings
        Other :class:`SimulationSpec` settings (orientations, n_views, views,
        preferred_direction, preferred_strength, defocus_range, astigmatism, voltage,
        spherical_aberration, amplitude_contrast, phase_shift_range, bfactor_range,
        particles_per_micrograph, shift_sd_A, junk without ``partial``).

    Returns
    -------
    images : np.ndarray
        float32 (n, box, box); unit noise variance when ``snr`` is given.
    ground_truth : pd.DataFrame
        Columns of :data:`cryosift.simulate.table.COLUMNS`.
    signal : np.ndarray
        float32 (n, box, box), only with ``return_signal``.
    """
    vol = np.asarray(volume, dtype=np.float32)
    spec = SimulationSpec.from_dict({"box": int(vol.shape[-1]), "pixel_size": float(pixel_size), "n_particles": int(n),
                                     "seed": int(seed), "snr": float(snr or 1.0), **settings})
    table = draw_table(spec)
    if diameter_A is None:
        diameter_A = estimate_diameter(vol, pixel_size)
    sim = Simulator(vol, spec, diameter_A, device=device, apply_ctf=ctf)
    sim.calibrate(table)
    if snr is None:
        sim.noise_sigma = 1.0
    signal = (sim.signal(table) / sim.noise_sigma).cpu()
    images = signal + noise_images(seed, table["index"].to_numpy(), sim.box) if snr is not None else signal.clone()
    out = (images.numpy(), table)
    return (*out, signal.numpy()) if return_signal else out
