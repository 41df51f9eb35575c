"""Map superposition: known rotation, shift and hand recovered; moving a model instead of a map."""

from __future__ import annotations

import numpy as np
import pytest

from cryosift.density import model_coordinates, model_map
from cryosift.io.rotations import angular_distance
from cryosift.validate import align_maps, mirror_map, with_coordinates
from tests.test_validate_support import transformed_pair

BOX, APIX = 48, 2.5


@pytest.mark.parametrize("flipped, seed", [(True, 11), (False, 12)])
def test_recovers_rotation_shift_and_hand(flipped, seed):
    # An ab-initio-like map: the model moved, maybe mirrored, blurred to 8 Å and noisy.
    case = transformed_pair(40.0, BOX, APIX, seed=seed, flipped=flipped, noise=1.0, resolution=8.0)
    al = align_maps(case["reference"], case["moving"], APIX)
    assert al.flipped is flipped
    assert al.score > al.score_other_hand + 0.05
    assert angular_distance(al.rotation, case["rotation"])[0] < 2.0
    assert np.abs(al.shift_A - case["shift_A"]).max() < APIX  # within one pixel
    # The resampled map overlays the reference.
    assert np.corrcoef(al.aligned.ravel(), case["reference"].ravel())[0, 1] > 0.5
    d = al.to_dict()
    assert d["flipped"] is flipped and len(d["rotation"]) == 3 and d["hand"] in ("flipped", "as reconstructed")


def test_moving_the_model_instead_of_the_map():
    case = transformed_pair(40.0, BOX, APIX, seed=13, flipped=True)
    al = align_maps(case["reference"], case["moving"], APIX, resample=False)
    assert al.aligned is None and al.flipped
    # Carry the model into the (mirrored) reconstruction's frame and simulate it there:
    # it must overlay the reconstruction without any resampling of the map.
    map_origin = case["origin"] + np.array([10.0, -20.0, 5.0])  # the reconstruction's own header origin
    xyz = al.reference_to_moving(model_coordinates(case["structure"]), case["origin"], map_origin)
    fitted = model_map(with_coordinates(case["structure"], xyz), BOX, APIX, origin_A=tuple(map_origin))
    target = al.moving_frame_map(case["moving"])
    np.testing.assert_array_equal(target, mirror_map(case["moving"]))
    assert np.corrcoef(fitted.ravel(), target.ravel())[0, 1] > 0.95


def test_identical_maps_give_the_identity():
    case = transformed_pair(40.0, BOX, APIX, seed=14)
    al = align_maps(case["reference"], case["reference"], APIX, both_hands=False)
    assert not al.flipped and np.isnan(al.score_other_hand)
    assert al.rotation_angle_deg < 0.5
    assert np.abs(al.shift_A).max() < 0.2 * APIX
    assert al.score > 0.99


def test_thread_setting_is_restored():
    import torch

    before = torch.get_num_threads()
    case = transformed_pair(20.0, 32, 4.0, seed=15)
    align_maps(case["reference"], case["moving"], 4.0, step_deg=30.0)
    assert torch.get_num_threads() == before


def test_rejects_maps_of_different_shape():
    with pytest.raises(ValueError, match="same shape"):
        align_maps(np.zeros((16, 16, 16)), np.zeros((18, 18, 18)), 1.0)
