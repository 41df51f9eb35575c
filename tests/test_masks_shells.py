"""Soft masks and Fourier shells: one implementation each, equal bit for bit to what every caller computed before.

The ``_old_*`` functions are the callers' former code, kept here as the reference the shared
functions must reproduce exactly (same dtype, same values, same rounding).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cryosift.engines.builtin.grids import half_plane_shells, soft_circle
from cryosift.fourier import shell_index
from cryosift.masks import raised_cosine, soft_disc
from cryosift.reconstruct.sgd import soft_sphere
from cryosift.scoring.training.render import relion_mask_weights
from cryosift.scoring.training.truth import _soft_mask as truth_mask
from cryosift.scoring.training.truth import frc
from cryosift.validate.fsc import shell_index as fsc_shell_index
from cryosift.validate.masks import soft_sphere_mask, threshold_mask


def _old_soft_sphere(box, radius_px, edge_px):  # reconstruct/sgd.py
    c = torch.arange(box, dtype=torch.float32) - box // 2
    r = torch.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    t = ((r - radius_px) / max(edge_px, 1e-6)).clamp(0.0, 1.0)
    return 0.5 + 0.5 * torch.cos(math.pi * t)


def _old_soft_circle(box, radius_px, edge_px):  # engines/builtin/grids.py
    c = torch.arange(box, dtype=torch.float32) - box // 2
    r = torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
    x = ((r - radius_px) / max(edge_px, 1e-6)).clamp(0.0, 1.0)
    return 0.5 + 0.5 * torch.cos(math.pi * x)


def _old_raised_cosine(distance, edge):  # validate/masks.py
    if edge <= 0:
        return (distance <= 0).astype(np.float32)
    d = np.clip(distance / edge, 0.0, 1.0)
    return (0.5 + 0.5 * np.cos(np.pi * d)).astype(np.float32)


def _old_soft_sphere_mask(box, radius_px=None, edge_px=None):  # validate/masks.py
    radius = 0.425 * box if radius_px is None else float(radius_px)
    edge = 0.075 * box if edge_px is None else float(edge_px)
    ax = np.arange(box, dtype=np.float64) - box // 2
    r = np.sqrt(ax[:, None, None] ** 2 + ax[None, :, None] ** 2 + ax[None, None, :] ** 2)
    return _old_raised_cosine(r - radius, edge)


def _old_relion_mask_weights(box, radius_px, edge_px=5.0):  # scoring/training/render.py
    c = np.arange(box, dtype=np.float64) - box // 2
    r = np.hypot(c[:, None], c[None, :])
    t = np.clip((r - radius_px) / max(edge_px, 1e-6), 0.0, 1.0)
    return 0.5 - 0.5 * np.cos(np.pi * t)


def _old_truth_mask(box, radius):  # scoring/training/truth.py
    c = torch.arange(box, dtype=torch.float32) - box // 2
    r = torch.sqrt(c[:, None] ** 2 + c[None, :] ** 2)
    edge = max(2.0, 0.06 * box)
    x = ((r - radius) / edge).clamp(0.0, 1.0)
    return 0.5 + 0.5 * torch.cos(math.pi * x)


def _old_frc(a, b):  # scoring/training/truth.py
    box = a.shape[-1]
    fa, fb = torch.fft.fft2(a.double()), torch.fft.fft2(b.double())
    k = torch.fft.fftfreq(box, d=1.0 / box, dtype=torch.float64)
    ring = torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2).round().long().reshape(-1)
    keep = ring < box // 2
    ring = ring[keep]
    num = torch.zeros(box // 2, dtype=torch.float64).index_add_(0, ring, (fa * fb.conj()).real.reshape(-1)[keep])
    da = torch.zeros(box // 2, dtype=torch.float64).index_add_(0, ring, (fa.abs() ** 2).reshape(-1)[keep])
    db = torch.zeros(box // 2, dtype=torch.float64).index_add_(0, ring, (fb.abs() ** 2).reshape(-1)[keep])
    return num, da, db


def _old_fsc_shells(box):  # validate/fsc.py
    k = np.fft.fftfreq(box) * box
    kx = np.fft.rfftfreq(box) * box
    r2 = k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2
    return np.rint(np.sqrt(r2)).astype(np.int64)


def _old_half_plane_shells(box):  # engines/builtin/grids.py
    ky = torch.fft.fftfreq(box, d=1.0 / box, dtype=torch.float64)
    kx = torch.fft.rfftfreq(box, d=1.0 / box, dtype=torch.float64)
    gy, gx = torch.meshgrid(ky, kx, indexing="ij")
    return torch.round(torch.sqrt(gy**2 + gx**2)).to(torch.int64), (gx > 0) | (gy >= 0)


def _old_backproject_shells(b, pad):  # reconstruct/backproject.py (centred z, y; x from 0)
    c = b // 2
    zy = torch.arange(b, dtype=torch.float32) - c
    x = torch.arange(b // 2 + 1, dtype=torch.float32)
    r2 = zy[:, None, None] ** 2 + zy[None, :, None] ** 2 + x[None, None, :] ** 2
    return torch.round(torch.sqrt(r2) / pad).to(torch.int64)


def _same(new, old):
    if isinstance(old, torch.Tensor):
        assert isinstance(new, torch.Tensor) and new.dtype == old.dtype and new.shape == old.shape
        assert torch.equal(new, old)
    else:
        assert new.dtype == old.dtype and new.shape == old.shape
        np.testing.assert_array_equal(new, old, strict=True)


# Boxes odd and even, radii on and off the pixel grid, edges thin and wide.
CASES = [(box, radius, edge) for box in (8, 15, 32, 63, 64, 100) for radius, edge in
         ((0.3 * box, 2.0), (box / 2 - max(2.0, 0.06 * box), max(2.0, 0.06 * box)), (0.45 * box, 0.08 * box), (3.0, 5.0))]


@pytest.mark.parametrize("box, radius, edge", CASES)
def test_masks_equal_the_former_code_bit_for_bit(box, radius, edge):
    _same(soft_sphere(box, radius, edge), _old_soft_sphere(box, radius, edge))
    _same(soft_circle(box, radius, edge), _old_soft_circle(box, radius, edge))
    _same(soft_sphere_mask(box, radius, edge), _old_soft_sphere_mask(box, radius, edge))
    _same(relion_mask_weights(box, radius, edge), _old_relion_mask_weights(box, radius, edge))
    _same(soft_sphere_mask(box), _old_soft_sphere_mask(box))
    _same(soft_sphere_mask(box, radius, 0.0), _old_soft_sphere_mask(box, radius, 0.0))
    _same(truth_mask(box, radius), _old_truth_mask(box, radius))


def test_threshold_mask_equals_the_former_code_bit_for_bit():
    from scipy import ndimage

    rng = np.random.default_rng(4)
    volume = ndimage.gaussian_filter(rng.normal(size=(24, 24, 24)), 2.0)
    for px, dilate, edge in ((1.3, 3.0, 6.0), (0.8, 0.0, 2.5), (2.0, 4.0, 0.0)):
        threshold = float(np.quantile(volume, 0.9))
        distance = ndimage.distance_transform_edt(~(volume > threshold)) * px
        _same(threshold_mask(volume, px, threshold, dilate, edge), _old_raised_cosine(distance - dilate, edge))


def test_raised_cosine_values():
    d = np.array([-1.0, 0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(raised_cosine(d, 2.0), [1.0, 1.0, 0.5, 0.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(raised_cosine(d, 2.0, rising=True), [0.0, 0.0, 0.5, 1.0, 1.0], atol=1e-15)
    assert raised_cosine(d, 0.0).tolist() == [1.0, 1.0, 0.0, 0.0, 0.0]
    t = raised_cosine(torch.tensor(d, dtype=torch.float32), 2.0)
    assert t.dtype == torch.float32 and torch.allclose(t, torch.tensor([1.0, 1.0, 0.5, 0.0, 0.0]), atol=1e-7)
    disc = soft_disc(9, 2, 2.0, 1.0)
    assert disc.shape == (9, 9) and disc[4, 4] == 1.0 and disc[4, 7] == 0.0 and disc[0, 0] == 0.0


@pytest.mark.parametrize("box", [2, 3, 8, 15, 16, 63, 64, 100, 127, 256])
def test_shell_index_equals_the_former_code_bit_for_bit(box):
    _same(fsc_shell_index(box), _old_fsc_shells(box))
    shell, independent = half_plane_shells(box)
    old_shell, old_independent = _old_half_plane_shells(box)
    _same(shell, old_shell)
    _same(independent, old_independent)
    for pad in (p for p in (1, 2, 3) if p * box <= 256):  # the padded grids of ab initio
        _same(shell_index(pad * box, 3, centred=True, pad=pad, tensor=True), _old_backproject_shells(pad * box, pad))


@pytest.mark.parametrize("box", [8, 15, 64])
def test_frc_equals_the_former_code_bit_for_bit(box):
    gen = torch.Generator().manual_seed(box)
    a, b = torch.randn((box, box), generator=gen), torch.randn((box, box), generator=gen)
    num, da, db = _old_frc(a, b)
    old = (num / torch.sqrt(da * db).clamp(min=1e-30)).numpy()
    new = frc(a, b)
    assert new.shape == old.shape
    np.testing.assert_array_equal(new, old)


def test_shell_index_values():
    s = shell_index(8, 2)
    assert s.dtype == np.int64 and s.shape == (8, 5)
    assert s[0, 0] == 0 and s[0, 4] == 4 and s[4, 0] == 4 and s[1, 1] == 1 and s[3, 3] == 4  # round(sqrt(18))
    assert shell_index(8, 2, half=False).shape == (8, 8) and shell_index(8, 2, half=False)[0, 7] == 1
