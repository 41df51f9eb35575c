"""CryoSift network layout, published-checkpoint compatibility, input sizes, our checkpoint format."""

import numpy as np
import pytest
import torch

from cryosift.errors import InputError
from cryosift.scoring import (
    MIN_INPUT_SIZE,
    PUBLISHED_CONFIG,
    ModelConfig,
    Preprocessing,
    build_network,
    load_checkpoint,
    save_checkpoint,
)
from cryosift.scoring.network import count_parameters


def published_keys():
    """The published state_dict layout, written out from the method description."""
    # index: (kind, in, out, downsample) for residual blocks, stride convs; each followed by BN at +1.
    layout = {0: ("rb", 1, 16, True), 3: ("rb", 16, 16, True), 6: ("conv", 16, 16, None),
              9: ("rb", 16, 32, True), 12: ("rb", 32, 32, True), 15: ("conv", 32, 32, None),
              18: ("rb", 32, 64, True), 21: ("rb", 64, 64, False), 24: ("rb", 64, 64, False),
              27: ("conv", 64, 64, None), 30: ("rb", 64, 128, True), 33: ("rb", 128, 128, False),
              36: ("rb", 128, 128, False), 39: ("conv", 128, 128, None)}
    keys = {}
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    for i, (kind, cin, cout, ds) in layout.items():
        p = f"cnn_network.{i}"
        if kind == "rb":
            keys[f"{p}.layer1.0.weight"] = (cout, cin, 3, 3)
            keys[f"{p}.layer1.0.bias"] = (cout,)
            keys[f"{p}.layer2.0.weight"] = (cout, cout, 3, 3)
            keys[f"{p}.layer2.0.bias"] = (cout,)
            if ds:
                keys[f"{p}.downsampler.0.weight"] = (cout, cin, 3, 3)
                keys[f"{p}.downsampler.0.bias"] = (cout,)
            for name in bn:
                keys[f"{p}.batchnorm.0.{name}"] = () if name == "num_batches_tracked" else (cout,)
        else:
            keys[f"{p}.weight"] = (cout, cin, 3, 3)
            keys[f"{p}.bias"] = (cout,)
        for name in bn:
            keys[f"cnn_network.{i + 1}.{name}"] = () if name == "num_batches_tracked" else (cout,)
    keys["feat_network.0.weight"] = (1, 4614)
    keys["feat_network.0.bias"] = (1,)
    return keys


def test_state_dict_has_published_keys_shapes_and_parameter_count():
    net = build_network(seed=0)
    sd = net.state_dict()
    expected = published_keys()
    assert len(sd) == 182 == len(expected)
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert count_parameters(net) == 1_366_999


def published_checkpoint(path, seed=5):
    """A file shaped like the published final_model_cont.pth (no cryosift metadata)."""
    net = build_network(seed=seed)
    for m in net.modules():  # non-trivial running statistics, as after training
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    opt = torch.optim.Adam(net.parameters(), lr=1e-4, weight_decay=1e-4)
    torch.save({"epoch": 200, "train_ind": list(range(9)), "val_ind": [9], "model_state_dict": net.state_dict(),
                "optimizer_state_dict": opt.state_dict()}, path)
    return net


def test_published_checkpoint_loads_strictly_with_published_settings(tmp_path):
    net = published_checkpoint(tmp_path / "final_model_cont.pth")
    model = load_checkpoint(tmp_path / "final_model_cont.pth")
    assert model.config == PUBLISHED_CONFIG
    assert model.config.preprocessing.mode == "published" and model.config.preprocessing.input_size == 210
    assert model.config.decode == "published"
    assert not model.network.training
    for k, v in net.state_dict().items():
        assert torch.equal(model.network.state_dict()[k], v), k


def test_dataparallel_prefix_is_accepted(tmp_path):
    net = build_network(seed=1)
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}, tmp_path / "dp.pth")
    model = load_checkpoint(tmp_path / "dp.pth")
    assert torch.equal(model.network.feat_network[0].weight, net.feat_network[0].weight)


def test_checkpoint_errors_name_the_file_and_problem(tmp_path):
    sd = build_network(seed=1).state_dict()
    missing = dict(sd)
    missing.pop("cnn_network.21.layer2.0.bias")
    torch.save({"model_state_dict": missing}, tmp_path / "missing.pth")
    with pytest.raises(InputError, match=r"missing.pth.*1 missing key.*cnn_network.21.layer2.0.bias"):
        load_checkpoint(tmp_path / "missing.pth")
    wrong = dict(sd)
    wrong["feat_network.0.weight"] = torch.zeros(1, 4615)
    torch.save({"model_state_dict": wrong}, tmp_path / "shape.pth")
    with pytest.raises(InputError, match=r"shape mismatch: feat_network.0.weight \(1, 4615\)"):
        load_checkpoint(tmp_path / "shape.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(InputError, match="not a loadable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "text.pth")
    torch.save({"epoch": 3}, tmp_path / "nostate.pth")
    with pytest.raises(InputError, match="no model_state_dict"):
        load_checkpoint(tmp_path / "nostate.pth")


def test_our_checkpoint_round_trip_records_preprocessing_decode_provenance(tmp_path):
    net = build_network(seed=2)
    config = ModelConfig(preprocessing=Preprocessing("fourier", 72, 3.5, "background"))
    save_checkpoint(tmp_path / "ours.pt", net, config, data="synthetic v1", seed=2, date="2025-01-02",
                    extra={"epoch": 7})
    raw = torch.load(tmp_path / "ours.pt", weights_only=True)
    assert raw["epoch"] == 7 and raw["cryosift"]["format"] == 1
    prov = raw["cryosift"]["provenance"]
    assert prov["data"] == "synthetic v1" and prov["seed"] == 2 and prov["date"] == "2025-01-02"
    assert prov["package_version"]
    model = load_checkpoint(tmp_path / "ours.pt")
    assert not model.config.published
    assert model.config.preprocessing == Preprocessing("fourier", 72, 3.5, "background")
    assert model.config.decode == "grade"
    assert model.config.views == 8 and raw["cryosift"]["views"] == 8
    assert model.config.features.mass_deviation == "relative"
    assert all(torch.equal(v, model.network.state_dict()[k]) for k, v in net.state_dict().items())
    assert not list(tmp_path.glob(".*part*"))  # no temporary left behind


def test_checkpoint_without_views_entry_scores_one_view_and_bad_views_are_refused(tmp_path):
    net = build_network(seed=2)
    meta = ModelConfig().to_dict()
    del meta["views"]  # saved before the entry existed: scored the image as given
    torch.save({"model_state_dict": net.state_dict(), "cryosift": meta}, tmp_path / "old.pt")
    assert load_checkpoint(tmp_path / "old.pt").config.views == 1
    torch.save({"model_state_dict": net.state_dict(), "cryosift": {**meta, "views": 4}}, tmp_path / "four.pt")
    with pytest.raises(InputError, match="four.pt.*views must be one of"):
        load_checkpoint(tmp_path / "four.pt")
    assert load_checkpoint(tmp_path / "old.pt").config.describe().endswith("grade decode")
    assert "mean of 8 views" in ModelConfig().describe()


def test_bad_metadata_is_an_input_error(tmp_path):
    net = build_network(seed=2)
    torch.save({"model_state_dict": net.state_dict(), "cryosift": {"preprocessing": {"mode": "jpeg"}}},
               tmp_path / "bad.pt")
    with pytest.raises(InputError, match="bad cryosift metadata.*jpeg"):
        load_checkpoint(tmp_path / "bad.pt")


@pytest.mark.parametrize("size", [31, 64, 257])
def test_any_input_of_at_least_31_px(size):
    net = build_network(seed=0)
    with torch.inference_mode():
        out = net(torch.rand(2, 1, size, size), torch.rand(2, 6))
    assert out.shape == (2, 1) and torch.isfinite(out).all()


def test_below_31_px_is_a_clear_error():
    net = build_network(seed=0)
    with pytest.raises(ValueError, match=r"30 x 30 px are too small.*at least 31 x 31"):
        net(torch.rand(1, 1, 30, 30), torch.rand(1, 6))
    with pytest.raises(ValueError, match="below the network's minimum of 31"):
        Preprocessing(mode="fourier", input_size=MIN_INPUT_SIZE - 1)


def test_seeded_networks_are_reproducible_and_leave_the_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a, b, c = build_network(seed=4), build_network(seed=4), build_network(seed=5)
    after = torch.rand(1)
    assert torch.equal(before, after)
    wa = a.cnn_network[0].layer1[0].weight
    assert torch.equal(wa, b.cnn_network[0].layer1[0].weight)
    assert not torch.equal(wa, c.cnn_network[0].layer1[0].weight)
    x, f = torch.rand(3, 1, 40, 40), torch.rand(3, 6)
    with torch.inference_mode():
        assert np.array_equal(a(x, f).numpy(), b(x, f).numpy())


def test_a_training_step_runs_and_matches_eval_outputs_without_grad():
    net = build_network(seed=6)
    x, f = torch.rand(4, 1, 33, 33), torch.rand(4, 6)
    with torch.inference_mode():
        before = net(x, f).clone()
    with torch.no_grad():
        assert torch.equal(net(x, f), before)
    net.eval()
    out = net(x, f)  # autograd on: no in-place op may break the backward pass
    assert torch.allclose(out, before, atol=1e-6)
    net.train()
    loss = torch.nn.functional.mse_loss(net(x, f), torch.rand(4, 1))
    loss.backward()
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert net.cnn_network[0].layer1[0].weight.grad.abs().sum() > 0
