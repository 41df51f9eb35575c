"""Solvent levelling: masked class averages with a dark ring read as the builtin engine's averages.

The synthetic averages are a two-lobed particle on a weakly noisy solvent at 0 (the builtin
engine's rendering: a soft mask that leaves the outside at the solvent level) and the same
averages masked as RELION stores them (the mean within the mask subtracted, zero beyond it:
the solvent inside sits below the outside). Tolerances, stated before measuring: the levelled
network input differs from the builtin rendering's by at most 0.05 on average and 0.1 within
0.75 of the mask radius (input SD is 1; what remains is the solvent noise beyond 0.9 of the
mask radius, made flat, which moves the image SD a little); untouched averages bit for bit.
"""

import dataclasses

import numpy as np
import pytest
import torch

from cryosift.io.models import ClassAverages
from cryosift.scoring import DEFAULT_PREPROCESSING, PUBLISHED_PREPROCESSING, Preprocessing, preprocess, score_classes
from cryosift.scoring.job import resolve_model
from cryosift.scoring.solvent import level_solvent, mask_radius
from cryosift.scoring.training.render import relion_mask_weights

BOX, RADIUS, EDGE = 64, 26.0, 3.0


def particles(k=6, box=BOX, seed=0):
    """Two-lobed particles (Gaussian lobes of SD 4-7 px) on solvent 0 with noise of SD 0.03-0.06 (peak 1)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:box, :box] - box // 2
    out = np.empty((k, box, box))
    for i in range(k):
        r = rng.uniform(4, 7) * box / BOX
        dx, dy = rng.uniform(-r / 2, r / 2, 2)
        out[i] = np.exp(-((xx - dx) ** 2 + (yy - dy) ** 2) / (2 * r**2)) + 0.7 * np.exp(
            -((xx + dx) ** 2 + (yy + dy) ** 2) / (2 * (0.6 * r) ** 2))
        out[i] += rng.uniform(0.03, 0.06) * rng.standard_normal((box, box))
    return out


def builtin_masked(images, radius=RADIUS):
    """The builtin engine's rendering: beyond the mask, the solvent level (0)."""
    return (images * (1.0 - relion_mask_weights(images.shape[-1], radius, EDGE))).astype(np.float32)


def relion_masked(images, radius=RADIUS):
    """RELION's stored averages: zero beyond the mask, the mean within it subtracted."""
    inside = 1.0 - relion_mask_weights(images.shape[-1], radius, EDGE)
    mean = (images * inside).sum(axis=(1, 2)) / inside.sum()
    return ((images - mean[:, None, None]) * inside).astype(np.float32)


def network_input(images):
    return preprocess(torch.from_numpy(np.asarray(images, np.float32)), 2.0, DEFAULT_PREPROCESSING).numpy()


def test_relion_masked_averages_are_levelled_to_read_as_the_builtin_rendering():
    x = particles()
    relion, builtin = relion_masked(x), builtin_masked(x)
    ref = network_input(builtin)
    assert np.abs(network_input(relion) - ref).mean() > 0.3  # the step the model saw
    levelled, changed = level_solvent(relion)
    assert changed.all()
    diff = np.abs(network_input(levelled) - ref)
    r = np.hypot(*(np.mgrid[:BOX, :BOX] - BOX // 2))
    assert diff.mean() <= 0.05 and diff[..., r < 0.75 * RADIUS].max() <= 0.1


def test_the_mask_radius_is_found_where_the_average_turns_flat():
    relion = relion_masked(particles(k=3))
    for image in relion:
        assert RADIUS <= mask_radius(image) <= RADIUS + EDGE + 1


def test_builtin_renderings_and_unmasked_averages_are_left_alone():
    x = particles()
    for images in (builtin_masked(x), x.astype(np.float32)):
        out, changed = level_solvent(images)
        assert not changed.any()
        np.testing.assert_array_equal(out, images)


def test_a_box_tighter_than_the_mask_is_left_alone():
    relion = relion_masked(particles(), radius=BOX / 2 - 1.5)  # one ring beyond the edge: too few to read
    out, changed = level_solvent(relion)
    assert not changed.any()
    np.testing.assert_array_equal(out, relion)


def test_8bit_previews_are_levelled_as_the_floats():
    relion = relion_masked(particles())
    lo, hi = relion.min(axis=(1, 2), keepdims=True), relion.max(axis=(1, 2), keepdims=True)
    preview = np.round(255 * (relion - lo) / (hi - lo)).astype(np.float32)
    levelled, changed = level_solvent(preview)
    assert changed.all()
    # quantisation adds noise of about 1/255 of the range: the same tolerance as the floats
    diff = np.abs(network_input(levelled) - network_input(level_solvent(relion)[0]))
    assert diff.mean() <= 0.05


def test_scoring_levels_with_our_models_and_not_with_the_published_one():
    assert DEFAULT_PREPROCESSING.level_solvent and not PUBLISHED_PREPROCESSING.level_solvent
    # checkpoints written before the option read back with their mode's default, and write the same dict
    old = {"mode": "fourier", "input_size": 64, "pixel_size": None, "normalisation": "background"}
    assert Preprocessing.from_dict(old).level_solvent and Preprocessing.from_dict(old).to_dict() == old
    assert Preprocessing.from_dict({**old, "level_solvent": False}).to_dict() == {**old, "level_solvent": False}
    assert not Preprocessing.from_dict({**PUBLISHED_PREPROCESSING.to_dict()}).level_solvent


@pytest.fixture(scope="module")
def shipped():
    return resolve_model("default", device="cpu")


def test_the_shipped_model_scores_relion_masked_averages_as_their_levelled_copies(shipped):
    relion = relion_masked(particles(k=4))
    classes = ClassAverages(images=relion, pixel_size=3.0, class_numbers=np.arange(1, 5),
                            resolution=np.full(4, 12.0), distribution=np.full(4, 0.25),
                            particle_count=np.full(4, 100))
    off = dataclasses.replace(shipped.config, preprocessing=dataclasses.replace(
        shipped.config.preprocessing, level_solvent=False))
    unlevelled = dataclasses.replace(shipped, config=off)
    levelled = dataclasses.replace(classes, images=level_solvent(relion)[0])
    on_score = score_classes(classes, shipped)["score"].to_numpy()
    np.testing.assert_allclose(on_score, score_classes(levelled, unlevelled)["score"].to_numpy(), atol=1e-6)
    assert np.abs(on_score - score_classes(classes, unlevelled)["score"].to_numpy()).max() > 0.05
