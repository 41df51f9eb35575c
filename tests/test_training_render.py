"""The rendering augmentation: other boxes and RELION's mask, drawn per example, grades untouched."""

import math

import numpy as np
import torch

from cryosift.scoring.preprocess import DEFAULT_PREPROCESSING, preprocess
from cryosift.scoring.training.data import (RENDER_BOX_RATIO, RENDER_EDGE_PX, RENDER_MASK_RATIO, input_pixel_size, job_examples,
                                            render_augment)
from cryosift.scoring.training.train import TrainSettings

SIZE = 64


def discs(n: int, diameter_px: float, size: int = SIZE) -> torch.Tensor:
    """(n, 1, size, size) soft-edged bright discs of the given diameter on a zero background, preprocessed."""
    c = np.arange(size) - size // 2
    r = np.hypot(c[:, None], c[None, :])
    disc = 1.0 / (1.0 + np.exp((r - diameter_px / 2.0) / 0.7))
    stack = np.repeat(disc[None], n, axis=0).astype(np.float32)
    return preprocess(torch.from_numpy(stack), 2.0, DEFAULT_PREPROCESSING)


def radius_of(image: torch.Tensor) -> float:
    """Radius (px) at which the radial profile falls half way from its centre to its lowest value
    (the solvent just outside the particle once masked, the background before)."""
    x = image[0].to(torch.float64).numpy()
    c = np.arange(x.shape[-1]) - x.shape[-1] // 2
    r = np.hypot(c[:, None], c[None, :])
    profile = np.array([x[(r >= k - 0.5) & (r < k + 0.5)].mean() for k in range(x.shape[-1] // 2)])
    half = (profile[0] + profile.min()) / 2.0
    k = int(np.argmax(profile < half))
    return k - 1 + (profile[k - 1] - half) / (profile[k - 1] - profile[k])


def test_off_by_default_draws_nothing_and_keeps_the_recipe():
    x = discs(4, 20.0)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state().clone()
    assert render_augment(x, torch.full((4,), 20.0), gen, 0.0) is x
    assert torch.equal(gen.get_state(), state)
    assert "render" not in TrainSettings().to_dict()  # the shipped recipe's metadata reads as before
    assert TrainSettings(render=0.5).to_dict()["render"] == 0.5


def test_relion_mask_flat_outside_darker_solvent_inside():
    d = 40.0  # a box of 1.6 diameters: within the drawn ratios, so some images are cut, some not
    x = discs(16, d)
    y = render_augment(x, torch.full((16,), d), torch.Generator().manual_seed(0), 1.0)
    c = np.arange(SIZE) - SIZE // 2
    r = np.hypot(c[:, None], c[None, :])
    for img in y[:, 0].numpy():
        rad = radius_of(torch.from_numpy(img)[None])
        scale = rad / (d / 2.0)  # the disc's own magnification by the cut
        assert 1.0 - 0.05 <= scale <= SIZE / (RENDER_BOX_RATIO[0] * d) + 0.05
        scale_max = max(1.0, SIZE / (RENDER_BOX_RATIO[0] * d))
        mask_r = min(RENDER_MASK_RATIO[1] * d * scale_max, SIZE - 2.0) / 2.0
        outside = img[r > mask_r + RENDER_EDGE_PX[1] + 0.5]
        assert np.ptp(outside) < 1e-5  # flat beyond the mask's soft edge
        ring = img[(r > rad + 1) & (r < rad + 3)]  # within the mask or its soft edge
        assert ring.size and ring.mean() < outside.mean() - 0.1  # solvent next to the particle is darker
        assert img[r < rad - 3].mean() > outside.mean() + 0.5  # the particle stays the brightest
        assert abs(img.std() - 1.0) < 1e-3  # background-normalised again


def test_cut_makes_the_particle_fill_the_box_as_drawn():
    d = 20.0  # a box of 3.2 diameters: every image is cut to 1.2-2.0 diameters
    y = render_augment(discs(24, d), torch.full((24,), d), torch.Generator().manual_seed(1), 1.0)
    ratios = np.array([SIZE / (2.0 * radius_of(img)) for img in y])
    assert ratios.min() >= RENDER_BOX_RATIO[0] - 0.1 and ratios.max() <= RENDER_BOX_RATIO[1] + 0.1
    assert np.ptp(ratios) > 0.3  # drawn, not fixed


def test_unknown_diameter_and_undrawn_images_are_left_alone_reproducibly():
    x = discs(32, 30.0)
    d = torch.full((32,), 30.0)
    d[:4] = float("nan")
    a = render_augment(x, d, torch.Generator().manual_seed(5), 0.5)
    b = render_augment(x, d, torch.Generator().manual_seed(5), 0.5)
    assert torch.equal(a, b)
    same = torch.tensor([torch.equal(a[i], x[i]) for i in range(32)])
    assert same[:4].all()
    assert 4 <= int((~same[4:]).sum()) <= 24  # about half of the 28 drawn at 0.5


def test_examples_carry_the_particle_diameter_in_input_px():
    import pandas as pd

    table = pd.DataFrame({"class": [1, 2], "resolution_A": [8.0, 20.0], "distribution": [0.6, 0.4],
                          "pixel_size_A": [3.0, 3.0], "mass_kDa": [1.0, 1.0], "mass_dmean_kDa": [0.0, 0.0],
                          "mass_dmedian_kDa": [0.0, 0.0], "mass_dmode_kDa": [0.0, 0.0], "particles": [60, 40],
                          "diameter_A": [120.0, 120.0]})
    images = np.zeros((2, 48, 48), dtype=np.float32)
    ex = job_examples(images, table, 3.0, [2.0, 4.0], "s")
    assert input_pixel_size(48, 3.0, DEFAULT_PREPROCESSING) == 48 * 3.0 / 64
    assert torch.allclose(ex.diameter_px, torch.full((2,), 120.0 / (48 * 3.0 / 64)))
    assert math.isnan(float(job_examples(images, table.drop(columns="diameter_A"), 3.0, [2.0, 4.0],
                                         "s").diameter_px[0]))
    assert torch.equal(ex.subset([1]).diameter_px, ex.diameter_px[1:])
