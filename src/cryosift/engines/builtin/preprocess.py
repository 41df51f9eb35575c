"""Particles prepared for classification: Fourier-cropped, normalised, masked, cached once.

Images are read from their stacks in bounded chunks, cropped in Fourier space to the
classification box, normalised so the background (outside the mask) has mean 0 and
standard deviation 1, multiplied by a soft circular mask, and kept in memory (or on the
GPU) when they fit, otherwise in a memory-mapped cache file in the job folder, so stacks
larger than memory stream through every iteration.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from cryosift.ctf import ctf_2d
from cryosift.engines.builtin.grids import soft_circle
from cryosift.errors import InputError
from cryosift.fourier import fourier_crop
from cryosift.io.atomic import atomic_path
from cryosift.io.images import check_image_locations, iter_particle_images
from cryosift.io.models import CTF_LABELS, CTF_OPTICS_LABELS, ParticleSet

log = logging.getLogger(__name__)

MAX_AUTO_BOX = 100
DEFAULT_ALIGNMENT_RESOLUTION = 6.0  # Å, when neither box nor resolution limit is given


def classification_box(box: int, pixel_size: float, requested: int = 0, highres_limit: float = 0.0) -> int:
    """Side in px of the classification box (even, <= ``box``).

    Parameters
    ----------
    box : int
        Particle box in px.
    pixel_size : float
        Particle pixel size, Å/px.
    requested : int
        Explicit choice (0: automatic).
    highres_limit : float
        Alignment resolution limit in Å; automatic boxes keep Nyquist at or beyond it
        (6 Å when 0), and never exceed 100 px.
    """
    if requested:
        return int(min(requested, box - box % 2))
    limit = highres_limit if highres_limit > 0 else DEFAULT_ALIGNMENT_RESOLUTION
    need = int(np.ceil(2.0 * box * pixel_size / limit))
    need += need % 2
    return int(max(16, min(box - box % 2, MAX_AUTO_BOX, need)))


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


class ParticleData:
    """Preprocessed particle images and their CTF parameters.

    Parameters
    ----------
    pset : ParticleSet
        The particles (CTF labels required).
    box : int
        Classification box in px (from :func:`classification_box`).
    mask_diameter : float
        Mask diameter in Å (0: 90 % of the box).
    cache_dir : Path
        Where a cache file goes when the images do not fit in memory.
    device : torch.device
        Where the E-step runs; images are kept there when they fit.
    memory_budget : int, optional
        Bytes the cached images may take in RAM (default: half of the available memory).

    Attributes
    ----------
    n, box : int
        Particle count and classification box (px).
    pixel_size : float
        Å/px of the classification box.
    original_box : int
        Box of the input particles, px.
    mask_radius, mask_edge : float
        Mask radius and soft-edge width in classification px.
    initial_offsets : np.ndarray
        float64, shape (n, 2): where each particle sits relative to the box centre, (x, y)
        classification px, from the input origins (0 when absent). RELION's origin is the
        opposite: shifting an image by +origin centres its particle (as relion_project makes them).
    """

    def __init__(self, pset: ParticleSet, box: int, mask_diameter: float, cache_dir: str | Path,
                 device: torch.device, memory_budget: int | None = None):
        pset.require(CTF_LABELS + CTF_OPTICS_LABELS + ("rlnImagePixelSize", "rlnImageSize"), "2D classification with CTF")
        if len(pset) == 0:
            raise InputError(pset.source, "no particles to classify (every particle was rejected before this step)")
        pset.common_pixel_size()  # one pixel size per set, or InputError naming the groups
        self.pset = pset
        self.n = len(pset)
        self.original_box = pset.box
        # Kept to 1e-4 Å, as this engine's job files have always recorded it.
        self.original_pixel_size = float(np.round(pset.pixel_size[0], 4))
        self.box = int(box)
        self.pixel_size = self.original_pixel_size * self.original_box / self.box
        self.device = device
        radius = (mask_diameter / 2.0 / self.pixel_size) if mask_diameter > 0 else 0.45 * self.box
        self.mask_edge = max(2.0, 0.06 * self.box)
        self.mask_radius = float(min(radius, self.box / 2.0 - self.mask_edge))
        self.mask = soft_circle(self.box, self.mask_radius, self.mask_edge)
        df = pset.particles
        self.defocus = np.stack([df[c].to_numpy(np.float64) for c in CTF_LABELS], 1)
        self.phase_shift = df["rlnPhaseShift"].to_numpy(np.float64) if "rlnPhaseShift" in df else np.zeros(self.n)
        self.bfactor = df["rlnCtfBfactor"].to_numpy(np.float64) if "rlnCtfBfactor" in df else np.zeros(self.n)
        self.ctf_scale = df["rlnCtfScalefactor"].to_numpy(np.float64) if "rlnCtfScalefactor" in df else np.ones(self.n)
        self.group = df["rlnOpticsGroup"].to_numpy(np.int64)
        optics = pset.optics.set_index("rlnOpticsGroup")
        self.optics = {int(g): tuple(float(optics.loc[g, c]) for c in CTF_OPTICS_LABELS) for g in np.unique(self.group)}
        offsets = np.zeros((self.n, 2))
        for i, axis in enumerate("XY"):
            if f"rlnOrigin{axis}Angst" in df:
                offsets[:, i] = -df[f"rlnOrigin{axis}Angst"].to_numpy(np.float64) / self.pixel_size
        self.initial_offsets = offsets
        self._images = self._load(Path(cache_dir), memory_budget)
        self._ctf = self._ctf_cache(memory_budget)

    # ------------------------------------------------------------------ images
    def _fingerprint(self) -> dict:
        src = self.pset.source
        return {"source": str(src) if src else None, "mtime": os.path.getmtime(src) if src and Path(src).exists() else None,
                "n": self.n, "box": self.box, "original_box": self.original_box,
                "mask_radius": round(self.mask_radius, 6), "mask_edge": round(self.mask_edge, 6)}

    def _load(self, cache_dir: Path, memory_budget: int | None):
        nbytes = self.n * self.box * self.box * 4
        budget = memory_budget if memory_budget is not None else _available_memory() // 2
        check_image_locations(self.pset)
        if nbytes <= budget:
            out = np.empty((self.n, self.box, self.box), np.float32)
            self._fill(out)
            images = torch.from_numpy(out)
            if self.device.type == "cuda":
                free, _ = torch.cuda.mem_get_info(self.device)
                if nbytes < 0.3 * free:
                    images = images.to(self.device)
            return images
        cache = cache_dir / f".particles_{self.box}px.npy"
        meta = cache.with_suffix(".json")
        if cache.exists() and meta.exists() and json.loads(meta.read_text()) == self._fingerprint():
            log.info("reusing preprocessed particles in %s", cache)
            return np.load(cache, mmap_mode="r")
        log.info("preprocessed particles (%.1f GB) do not fit in memory: caching them in %s", nbytes / 2**30, cache)
        with atomic_path(cache) as tmp:
            out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=(self.n, self.box, self.box))
            self._fill(out)
            out.flush()
            del out
        with atomic_path(meta) as t:
            t.write_text(json.dumps(self._fingerprint()))
        return np.load(cache, mmap_mode="r")

    def _fill(self, out: np.ndarray, chunk: int = 1024) -> None:
        mask = self.mask
        c = torch.arange(self.box, dtype=torch.float32) - self.box // 2
        r = torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
        background = r > self.mask_radius + self.mask_edge
        if background.sum() < 0.1 * self.box * self.box:
            background = r > 0.45 * self.box
        if background.sum() < 16:
            background = torch.ones_like(background)
        for rows, block in iter_particle_images(self.pset, chunk):
            img = fourier_crop(torch.from_numpy(block), self.box)
            bg = img[:, background]
            mean, std = bg.mean(1), bg.std(1)
            std = torch.where(std > 0, std, torch.ones_like(std))
            img = (img - mean[:, None, None]) / std[:, None, None] * mask
            if not torch.isfinite(img).all():
                bad = int(rows[int(torch.nonzero(~torch.isfinite(img).reshape(len(rows), -1).all(1))[0])])
                raise InputError(self.pset.source, f"particle {bad + 1} has NaN or infinite pixel values")
            out[rows[0]:rows[-1] + 1] = img.numpy()

    def images(self, rows: np.ndarray) -> torch.Tensor:
        """Preprocessed images of the given particles, float32, shape (len(rows), box, box), on the device."""
        if isinstance(self._images, torch.Tensor):
            idx = torch.as_tensor(rows, dtype=torch.int64, device=self._images.device)
            return self._images.index_select(0, idx).to(self.device, non_blocking=True)
        order = np.argsort(rows, kind="stable")
        block = np.empty((len(rows), self.box, self.box), np.float32)
        block[order] = self._images[np.asarray(rows)[order]]
        return torch.from_numpy(block).to(self.device)

    def mean_image(self, rows: np.ndarray, batch: int = 4096) -> torch.Tensor:
        """Average of the given particles' images, float32, shape (box, box)."""
        total = torch.zeros((self.box, self.box), dtype=torch.float64, device=self.device)
        for start in range(0, len(rows), batch):
            total += self.images(rows[start:start + batch]).sum(0, dtype=torch.float64)
        return (total / max(len(rows), 1)).to(torch.float32)

    # ------------------------------------------------------------------ CTF
    def _ctf_cache(self, memory_budget: int | None, chunk: int = 4096):
        """All CTFs once, as float16 half planes, where they fit (they are recomputed per batch otherwise)."""
        nbytes = self.n * self.box * (self.box // 2 + 1) * 2
        budget = memory_budget if memory_budget is not None else _available_memory() // 4
        if nbytes > budget:
            return None
        if self.device.type == "cuda" and nbytes > 0.2 * torch.cuda.mem_get_info(self.device)[0]:
            return None
        cache = torch.empty((self.n, self.box, self.box // 2 + 1), dtype=torch.float16, device=self.device)
        for start in range(0, self.n, chunk):
            rows = np.arange(start, min(start + chunk, self.n))
            cache[start:start + len(rows)] = self._compute_ctf(rows).to(torch.float16)
        return cache

    def ctf(self, rows: np.ndarray) -> torch.Tensor:
        """CTF of the given particles on the half plane, float32, shape (len(rows), box, box // 2 + 1)."""
        if self._ctf is not None:
            return self._ctf.index_select(0, torch.as_tensor(rows, dtype=torch.int64, device=self.device)).float()
        return self._compute_ctf(rows)

    def _compute_ctf(self, rows: np.ndarray) -> torch.Tensor:
        rows = np.asarray(rows)
        out = torch.empty((len(rows), self.box, self.box // 2 + 1), dtype=torch.float32, device=self.device)
        groups = self.group[rows]
        for g in np.unique(groups):
            sel = np.flatnonzero(groups == g)
            r = rows[sel]
            voltage, cs, q0 = self.optics[int(g)]
            out[torch.as_tensor(sel, device=self.device)] = ctf_2d(
                self.box, self.pixel_size, self.defocus[r, 0], self.defocus[r, 1], self.defocus[r, 2], voltage, cs, q0,
                phase_shift=self.phase_shift[r], bfactor=self.bfactor[r], scale=self.ctf_scale[r], half=True,
                device=self.device)
        return out
