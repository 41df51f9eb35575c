"""Batched, deterministic inference on RELION, cryoSPARC and plain-stack inputs."""

import numpy as np
import pandas as pd
import pytest
import torch
from tests.test_scoring_data import disc_images, make_cryosparc_job, make_relion_job

from cryosift.errors import InputError
from cryosift.io import read_class_averages, write_stack
from cryosift.scoring import (
    PUBLISHED_CONFIG,
    ModelConfig,
    build_network,
    class_features,
    decode,
    feature_matrix,
    load_classes,
    predict,
    resolution_weight,
    score_classes,
)
from cryosift.scoring.checkpoint import ScoringModel
from cryosift.scoring.inference import mean_output
from cryosift.scoring.preprocess import dihedral_view, preprocess


@pytest.fixture(scope="module")
def relion_job(tmp_path_factory):
    root = tmp_path_factory.mktemp("project")
    return make_relion_job(root, k=6, box=48, empty=(4,))


def published_model(seed=0):
    return ScoringModel(build_network(seed=seed), PUBLISHED_CONFIG)


def test_published_mode_scores_are_the_published_decode_of_the_network(relion_job):
    classes = read_class_averages(relion_job)
    model = published_model()
    table = score_classes(classes, model, batch_size=4)
    feats = feature_matrix(class_features(classes), PUBLISHED_CONFIG.features)
    raw = predict(model, classes.images, classes.pixel_size, feats, batch_size=4)
    np.testing.assert_allclose(table["network_output"], raw, rtol=1e-5, atol=1e-6)
    res = classes.resolution  # class 4 is empty: resolution inf -> 999 Å
    w = resolution_weight(res)
    assert w[3] == pytest.approx((8.0 / 999.0) ** 2) and w[0] == 1.0
    published = 5 - 5 * table["network_output"].to_numpy() + w
    # class 4 holds no particles: never better than 5.0 (cryosift.scoring.empty), whatever the network says
    assert table["empty_class"].tolist() == [False, False, False, True, False, False]
    np.testing.assert_allclose(table["score"], np.where(table["empty_class"], np.maximum(published, 5.0), published),
                               rtol=1e-12)
    np.testing.assert_allclose(table["class_score"], np.clip((5 - table["score"]) / 4, 0, 1))
    assert table["class"].tolist() == [1, 2, 3, 4, 5, 6] and table["particles"][3] == 0


def test_inference_is_deterministic_and_independent_of_batch_size(relion_job):
    classes = read_class_averages(relion_job)
    model = ScoringModel(build_network(seed=3), ModelConfig())
    a = score_classes(classes, model, batch_size=2)["score"].to_numpy()
    b = score_classes(classes, model, batch_size=2)["score"].to_numpy()
    c = score_classes(classes, model, batch_size=64)["score"].to_numpy()
    assert np.array_equal(a, b)
    np.testing.assert_allclose(a, c, rtol=0, atol=1e-5)
    # our decode: no job-dependent term, so a class's score does not change with the others
    sub = read_class_averages(relion_job)
    keep = [0, 2, 5]
    sub.images, sub.class_numbers = sub.images[keep], sub.class_numbers[keep]
    sub.resolution, sub.distribution, sub.particle_count = sub.resolution[keep], sub.distribution[keep], sub.particle_count[keep]
    alone = score_classes(sub, model)
    feats_full = feature_matrix(class_features(classes), model.config.features)
    feats_sub = feature_matrix(class_features(sub), model.config.features)
    # identical features -> identical scores (mass deviations do depend on the job)
    same = np.all(np.isclose(feats_full[keep], feats_sub), axis=1)
    np.testing.assert_allclose(alone["score"][same], a[keep][same], atol=1e-5)


def test_eight_view_output_is_the_mean_over_the_symmetries_of_the_network_input():
    net = build_network(seed=5).eval()
    x = torch.randn(5, 1, 64, 64, generator=torch.Generator().manual_seed(1))
    f = torch.randn(5, 6, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ref = mean_output(net, x, f, 8)
        singles = torch.stack([mean_output(net, dihedral_view(x, v), f, 1) for v in range(8)])
        torch.testing.assert_close(singles.mean(0), ref, rtol=0, atol=1e-6)
        for v in range(8):  # the same eight inputs in another order: equal up to rounding
            torch.testing.assert_close(mean_output(net, dihedral_view(x, v), f, 8), ref, rtol=0, atol=1e-6)
    assert (singles - singles[0]).abs().max() > 1e-4  # one view alone depends on orientation


def test_scores_of_an_eight_view_model_average_its_views(relion_job):
    classes = read_class_averages(relion_job)
    net = build_network(seed=5).eval()
    config = ModelConfig(views=8)
    table = score_classes(classes, ScoringModel(net, config), batch_size=4)
    x = preprocess(torch.from_numpy(np.array(classes.images, dtype=np.float32)), classes.pixel_size, config.preprocessing)
    f = torch.from_numpy(feature_matrix(class_features(classes), config.features))
    with torch.inference_mode():
        views = [net(dihedral_view(x, v), f)[:, 0].double().numpy() for v in range(8)]
    np.testing.assert_allclose(table["network_output"], np.mean(views, axis=0), rtol=0, atol=1e-6)
    assert np.abs(table["network_output"] - views[0]).max() > 1e-5  # not just the first view
    assert "mean of 8 views" in table.attrs["model"]


def test_dihedral_views_are_the_eight_distinct_symmetries():
    img = torch.arange(16.0).reshape(1, 4, 4)
    views = [dihedral_view(img, v) for v in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in views}) == 8
    assert torch.equal(views[0], img) and torch.equal(views[4], img.flip(-1))
    assert torch.equal(views[1], torch.rot90(img, 1, dims=(-2, -1)))
    with pytest.raises(ValueError, match="0-7"):
        dihedral_view(img, 8)


def test_nan_score_is_an_error_naming_the_class(relion_job):
    classes = read_class_averages(relion_job)
    classes.distribution = classes.distribution.copy()
    classes.distribution[1] = np.inf
    net = build_network(seed=0)
    with torch.no_grad():
        net.feat_network[0].weight[0, 4608 + 1] = 0.0  # 0 x inf = NaN for class 2 only
    with pytest.raises(InputError, match=r"class 2: the network's score is not a number"):
        score_classes(classes, ScoringModel(net, ModelConfig()))


def test_cryosparc_job_classes_and_distribution(tmp_path):
    job = make_cryosparc_job(tmp_path, k=5, box=40)
    via_mrc = load_classes(job / "J12_020_class_averages.mrc")
    via_dir = load_classes(job)
    assert via_mrc.class_numbers.tolist() == via_dir.class_numbers.tolist() == [1, 2, 3, 4, 5]
    assert via_dir.distribution.sum() == pytest.approx(1.0)
    table = score_classes(via_dir, ScoringModel(build_network(seed=0), ModelConfig()))
    assert np.isfinite(table["score"]).all() and table["resolution_A"].tolist() == [6, 9, 12, 15, 18]


def test_plain_stack_with_feature_table(tmp_path):
    images, _, _ = disc_images(4, 36)
    write_stack(tmp_path / "avgs.mrcs", images, 1.0)
    pd.DataFrame({"class": [3, 5, 7, 9], "resolution_A": [7.5, 9.0, "inf", 12.0],
                  "particles": [10, 30, 0, 60]}).to_csv(tmp_path / "f.csv", index=False)
    classes = load_classes(tmp_path / "avgs.mrcs", features=tmp_path / "f.csv", pixel_size=2.4)
    assert classes.pixel_size == 2.4 and classes.class_numbers.tolist() == [3, 5, 7, 9]
    np.testing.assert_allclose(classes.distribution, [0.1, 0.3, 0.0, 0.6])
    table = score_classes(classes, ScoringModel(build_network(seed=0), ModelConfig()))
    assert table["class"].tolist() == [3, 5, 7, 9]
    pd.DataFrame({"resolution_A": [7.5, 9.0], "distribution": [0.5, 0.5]}).to_csv(tmp_path / "short.csv", index=False)
    with pytest.raises(InputError, match=r"short.csv: 2 rows but the stack avgs.mrcs holds 4"):
        load_classes(tmp_path / "avgs.mrcs", features=tmp_path / "short.csv")
    pd.DataFrame({"resolution_A": [7.5, "x", 1, 2], "distribution": 0.25}).to_csv(tmp_path / "bad.csv", index=False)
    with pytest.raises(InputError, match=r"row 2: resolution_A 'x' is not a number"):
        load_classes(tmp_path / "avgs.mrcs", features=tmp_path / "bad.csv")
    with pytest.raises(InputError, match="needs a feature table"):
        load_classes(tmp_path / "avgs.mrcs")


def test_decode_of_our_model_ignores_resolution():
    np.testing.assert_allclose(decode([0.2, 0.6], "grade", resolution=[3.0, 30.0]), [4.0, 2.0])
