"""Mass estimator, features, decode and preprocessing against hand computations."""

import numpy as np
import pandas as pd
import pytest
import torch

from cryosift.errors import InputError
from cryosift.io.models import ClassAverages
from cryosift.scoring import (
    DEFAULT_FEATURES,
    PUBLISHED_FEATURES,
    PUBLISHED_PREPROCESSING,
    Preprocessing,
    class_features,
    class_score,
    decode,
    encode,
    estimate_mass,
    feature_matrix,
    mass_deviations,
    preprocess,
)
from cryosift.scoring.mass import MASS_CALIBRATION, edge_statistics
from cryosift.scoring.preprocess import area_resize, background_normalise, fourier_resize


def disc(box, radius, height, background=0.0):
    yy, xx = np.mgrid[:box, :box] - box // 2
    inside = (xx**2 + yy**2) <= radius**2
    return background + height * inside, int(inside.sum())


def test_mass_of_noise_free_discs_is_their_integral_times_calibration():
    images, expected = [], []
    for radius, height, bg in [(5, 1.0, 0.0), (9, 2.5, -0.7), (14, 0.3, 4.0)]:
        img, n = disc(64, radius, height, bg)
        images.append(img)
        expected.append(height * n * 1.7**2 * MASS_CALIBRATION)
    mass = estimate_mass(np.stack(images), pixel_size=1.7)
    np.testing.assert_allclose(mass, expected, rtol=1e-12)


def test_mass_of_noisy_disc_within_two_percent():
    rng = np.random.default_rng(3)
    img, n = disc(96, 15, 2.0, 0.5)
    img = img + 0.1 * rng.standard_normal(img.shape)
    mass = estimate_mass(img[None], pixel_size=1.0)[0]
    assert mass == pytest.approx(2.0 * n * MASS_CALIBRATION, rel=0.02)


def test_edge_ring_is_three_pixels_inside_the_border():
    rng = np.random.default_rng(0)
    img = rng.standard_normal((12, 12))
    ring = [img[r, 3] for r in range(3, 9)] + [img[r, 9] for r in range(3, 9)] \
        + [img[3, c] for c in range(3, 9)] + [img[9, c] for c in range(3, 9)]
    mean, sd = edge_statistics(img[None])
    assert mean[0] == pytest.approx(np.mean(ring)) and sd[0] == pytest.approx(np.std(ring))


def test_mass_deviations_mean_median_and_raw_float_mode():
    d = mass_deviations(np.array([1.0, 2.0, 2.0, 5.0]))
    np.testing.assert_allclose(d["dmean"], [1.5, 0.5, 0.5, 2.5])
    np.testing.assert_allclose(d["dmedian"], [1.0, 0.0, 0.0, 3.0])
    np.testing.assert_allclose(d["dmode"], [1.0, 0.0, 0.0, 3.0])  # mode 2 (most frequent)
    d = mass_deviations(np.array([7.5, 3.25, 9.0]))  # all distinct: mode is the minimum
    np.testing.assert_allclose(d["dmode"], [4.25, 0.0, 5.75])


def classes_of(images, resolution, distribution, pixel_size=2.0):
    k = len(images)
    return ClassAverages(images=np.asarray(images, np.float32), pixel_size=pixel_size,
                         class_numbers=np.arange(1, k + 1), resolution=np.asarray(resolution, float),
                         distribution=np.asarray(distribution, float), particle_count=np.arange(k) * 10)


def test_features_match_hand_computation_in_published_and_our_scaling():
    imgs = [disc(32, r, h)[0] for r, h in [(3, 1.0), (5, 1.0), (7, 2.0)]]
    counts = [disc(32, r, h)[1] for r, h in [(3, 1.0), (5, 1.0), (7, 2.0)]]
    mass = np.array([1.0 * counts[0], 1.0 * counts[1], 2.0 * counts[2]]) * 4.0 * MASS_CALIBRATION
    c = classes_of(imgs, [6.0, np.inf, np.nan], [0.5, 0.2, 0.3])
    table = class_features(c)
    np.testing.assert_allclose(table["mass_kDa"], mass, rtol=1e-6)
    np.testing.assert_allclose(table["mass_dmean_kDa"], np.abs(mass - mass.mean()), rtol=1e-6)
    np.testing.assert_allclose(table["mass_dmedian_kDa"], np.abs(mass - np.median(mass)), rtol=1e-6)
    np.testing.assert_allclose(table["mass_dmode_kDa"], mass - mass.min(), rtol=1e-6, atol=1e-9)
    assert table["particles"].tolist() == [0, 10, 20]

    pub = feature_matrix(table, PUBLISHED_FEATURES)
    expected = np.column_stack([[6.0, 999.0, 999.0], [0.5, 0.2, 0.3], [2.0, 2.0, 2.0],
                                np.abs(mass - mass.mean()) * 1e-8, np.abs(mass - np.median(mass)) * 1e-8,
                                (mass - mass.min()) * 1e-8])
    assert pub.dtype == np.float32 and pub.shape == (3, 6)
    np.testing.assert_allclose(pub, expected, rtol=1e-5, atol=1e-12)

    ours = feature_matrix(table, DEFAULT_FEATURES)
    rel = np.abs(mass - mass.mean()) / np.median(mass)
    np.testing.assert_allclose(ours[:, 0], [0.06, 9.99, 9.99], rtol=1e-6)
    np.testing.assert_allclose(ours[:, 2], 0.2, rtol=1e-6)
    np.testing.assert_allclose(ours[:, 3], rel, rtol=1e-5)


def test_published_mass_clip():
    table = pd.DataFrame({"resolution_A": [5.0], "distribution": [1.0], "pixel_size_A": [1.0], "mass_kDa": [3e9],
                          "mass_dmean_kDa": [2e9], "mass_dmedian_kDa": [1.0], "mass_dmode_kDa": [5e8]})
    np.testing.assert_allclose(feature_matrix(table, PUBLISHED_FEATURES)[0, 3:], [10.0, 1e-8, 5.0], rtol=1e-6)


def test_nan_pixels_are_an_error_naming_the_class():
    imgs = np.zeros((3, 32, 32))
    imgs[1, 4, 4] = np.nan
    with pytest.raises(InputError, match=r"class average\(s\) 2 contain NaN"):
        class_features(classes_of(imgs, [5, 6, 7], [0.3, 0.3, 0.4]))


def test_published_decode_formula():
    p = np.array([0.8, 0.5, 0.1, -0.2])
    res = np.array([4.0, 8.0, np.inf, 999.0])
    w = np.array([1.0, 0.25, (4 / 999) ** 2, (4 / 999) ** 2])
    np.testing.assert_allclose(decode(p, "published", res), 5 - 5 * p + w)
    # open-ended: nothing clamped (score 6.0 + w for p = -0.2; below 1 for p > 0.8 + w/5)
    assert decode([-0.2], "published", [4.0])[0] == pytest.approx(7.0)
    assert decode([1.1], "published", [4.0])[0] == pytest.approx(0.5)
    np.testing.assert_allclose(encode([1, 3, 5], "published", [4.0, 8.0, 16.0]), [1.0, 0.45, 0.0125])
    np.testing.assert_allclose(decode(encode([1, 2.5, 5], "published", [3, 6, 9]), "published", [3, 6, 9]), [1, 2.5, 5])


def test_our_decode_has_no_job_dependent_term():
    np.testing.assert_allclose(decode([0.8, 0.0, 1.2], "grade"), [1.0, 5.0, -1.0])
    np.testing.assert_allclose(encode([1, 5], "grade"), [0.8, 0.0])
    np.testing.assert_allclose(class_score([1.0, 3.0, 3.5, 5.0, -2.0, 7.0]), [1.0, 0.5, 0.375, 0.0, 1.0, 0.0])
    with pytest.raises(ValueError, match="unknown decode"):
        decode([0.5], "softmax")


def test_published_preprocessing_minmax_and_centred_padding():
    img = torch.arange(101 * 101, dtype=torch.float32).reshape(1, 101, 101) * 3 - 7
    out = preprocess(img, 1.0, PUBLISHED_PREPROCESSING)
    assert out.shape == (1, 1, 210, 210)
    # 109 px of padding: 54 before, 55 after (odd pixel bottom/right)
    inner = out[0, 0, 54:155, 54:155]
    assert inner.min() == 0 and inner.max() == 1
    assert out[0, 0, :54].abs().sum() == 0 and out[0, 0, 155:].abs().sum() == 0
    assert out[0, 0, :, 155:].abs().sum() == 0 and out[0, 0, 54, 54] == 0 and out[0, 0, 154, 154] == 1
    flat = preprocess(torch.full((1, 40, 40), 3.0), 1.0, PUBLISHED_PREPROCESSING)
    assert flat.abs().sum() == 0


def test_published_preprocessing_area_shrink():
    rng = np.random.default_rng(1)
    img = torch.from_numpy(rng.random((2, 420, 420)))
    blocks = img.reshape(2, 210, 2, 210, 2).mean(dim=(2, 4))
    np.testing.assert_allclose(area_resize(img, 210).numpy(), blocks.numpy(), rtol=1e-12)
    # non-integer factor: a ramp stays a ramp with the right mean, the output is 210 px
    ramp = torch.arange(300, dtype=torch.float64)[None, None, :].expand(1, 300, 300)
    small = area_resize(ramp, 210)
    assert small.shape == (1, 210, 210)
    assert small.mean().item() == pytest.approx(ramp.mean().item(), rel=1e-12)
    # output pixel 0 covers input [0, 10/7): value 0 with weight 1 and value 1 with weight 3/7
    assert small[0, 0, 0].item() == pytest.approx((0 * 1 + 1 * 3 / 7) / (10 / 7), rel=1e-12)
    # output pixel 1 covers [10/7, 20/7): value 1 with weight 4/7, value 2 with weight 6/7
    assert small[0, 0, 1].item() == pytest.approx((1 * 4 / 7 + 2 * 6 / 7) / (10 / 7), rel=1e-12)
    out = preprocess(torch.from_numpy(rng.random((1, 300, 300))).float(), 1.0, PUBLISHED_PREPROCESSING)
    assert out.shape == (1, 1, 210, 210) and out.min() >= 0 and out.max() <= 1


def test_fourier_mode_rescales_and_normalises_against_background():
    # band-limited image survives up- and down-sampling
    yy, xx = np.mgrid[:64, :64]
    img = torch.from_numpy(np.cos(2 * np.pi * 3 * xx / 64) + np.sin(2 * np.pi * 5 * yy / 64)).float()[None]
    back = fourier_resize(fourier_resize(img, 128), 64)
    np.testing.assert_allclose(back.numpy(), img.numpy(), atol=1e-5)
    # background normalisation: outside the 0.9-box circle the mean is 0; overall SD 1
    d, _ = disc(64, 12, 3.0, background=2.0)
    norm = background_normalise(torch.from_numpy(d).float()[None])[0].numpy()
    r2 = (np.mgrid[:64, :64] - 32) ** 2
    outside = r2.sum(0) > (0.9 * 64 / 2) ** 2
    assert abs(norm[outside].mean()) < 1e-6 and norm.std() == pytest.approx(1.0, rel=1e-5)
    # whole box to the input size
    spec = Preprocessing("fourier", 64, None, "background")
    assert preprocess(torch.rand(3, 100, 100), 1.3, spec).shape == (3, 1, 64, 64)
    # to 2 Å/px: a 100 px box at 1 Å/px becomes 50 px, padded with background (0) to 64
    spec = Preprocessing("fourier", 64, 2.0, "background")
    out = preprocess(torch.from_numpy(disc(100, 20, 1.0, 0.5)[0]).float()[None], 1.0, spec)
    assert out.shape == (1, 1, 64, 64)
    assert out[0, 0, :7].abs().max() == 0 and out[0, 0, 57:].abs().max() == 0
    assert out[0, 0, 7:57, 7:57].abs().max() > 0
