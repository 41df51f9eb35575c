"""Scores do not depend on how a stack is scaled: float, affine-rescaled and 8-bit min-max copies.

Real galleries are often 8-bit previews, min-max scaled per image; RELION and cryoSPARC store
floats on their own scales. The network input is normalised per image (background mean, image
SD), so any a x + b (a > 0) of an image gives the same input. Two things are left: the mass
features use stored values (they are compared within a job, so one scale for the whole stack
cancels, but one scale per image does not) and 8-bit rounding adds quantisation noise.
Tolerances, stated before measuring: float precision (1e-4) where the maths is exact; per-image
scales within 0.05 grade (a tenth of the rubric's half-grade step); 8-bit copies within 0.1
grade on average over a job and 0.25 for any class (half a half-grade step).
"""

import numpy as np
import pytest
import torch

from cryosift.io.models import ClassAverages
from cryosift.scoring import DEFAULT_PREPROCESSING, PUBLISHED_PREPROCESSING, preprocess, score_classes
from cryosift.scoring.job import resolve_model


def class_averages(k=12, box=64, seed=0):
    """Blobs of two lobes on a noisy background, as class averages of varying quality look."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:box, :box] - box // 2
    images = np.empty((k, box, box), np.float32)
    for i in range(k):
        r = rng.uniform(5, box / 5)
        dx, dy = rng.uniform(-r, r, 2)
        blob = np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / (2 * r**2)) + 0.7 * np.exp(
            -((xx + dx) ** 2 + (yy + dy) ** 2) / (2 * (0.6 * r) ** 2))
        images[i] = 0.3 * blob + rng.uniform(0.02, 0.3) * rng.standard_normal((box, box)) + 5.0
    return images


def minmax8(images):
    """8-bit copy, min-max scaled per image as preview galleries are."""
    lo = images.min(axis=(1, 2), keepdims=True)
    hi = images.max(axis=(1, 2), keepdims=True)
    return np.round(255 * (images - lo) / (hi - lo)).astype(np.uint8).astype(np.float32)


def per_image_affine(images, seed=1):
    rng = np.random.default_rng(seed)
    a = rng.uniform(0.01, 100.0, (len(images), 1, 1))
    b = rng.uniform(-50.0, 50.0, (len(images), 1, 1))
    return (a * images + b).astype(np.float32)


@pytest.mark.parametrize("spec", [DEFAULT_PREPROCESSING, PUBLISHED_PREPROCESSING], ids=["fourier", "published"])
def test_network_input_is_the_same_for_any_positive_affine_scale_of_each_image(spec):
    x = class_averages(k=6)
    ref = preprocess(torch.from_numpy(x), 2.0, spec)
    out = preprocess(torch.from_numpy(per_image_affine(x)), 2.0, spec)
    np.testing.assert_allclose(out.numpy(), ref.numpy(), atol=2e-4 * float(ref.abs().max()))


@pytest.fixture(scope="module")
def shipped():
    return resolve_model("default", device="cpu")


def scores(images, model):
    k = len(images)
    classes = ClassAverages(images=images, pixel_size=3.54, class_numbers=np.arange(1, k + 1),
                            resolution=np.full(k, 12.0), distribution=np.full(k, 1.0 / k),
                            particle_count=np.zeros(k, np.int64), source=None, engine="stack")
    return score_classes(classes, model)["score"].to_numpy()


def test_shipped_model_scores_float_affine_and_8bit_copies_alike(shipped):
    x = class_averages()
    ref = scores(x, shipped)
    assert ref.max() - ref.min() > 0.3  # the classes differ, so equal scores are not trivial
    np.testing.assert_allclose(scores(3.7 * x - 12.0, shipped), ref, atol=1e-4)  # one scale for the stack
    assert np.abs(scores(per_image_affine(x), shipped) - ref).max() < 0.05  # one scale per image: mass features
    d8 = np.abs(scores(minmax8(x), shipped) - ref)
    assert d8.mean() < 0.1 and d8.max() < 0.25
