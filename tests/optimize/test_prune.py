"""Pruning: mask sparsity by hand, channel pruning that really shrinks, saving and reloading."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from wattwise.data import TensorLoader, load_dataset
from wattwise.errors import ConfigError, WattwiseError
from wattwise.models import count_macs, count_parameters, create_model
from wattwise.optimize import (
    ChannelPruneConfig,
    ChannelsLastConfig,
    MaskPruneConfig,
    PreparedModel,
    PruningError,
    TechniqueContext,
    apply_technique,
    list_techniques,
    load_pruned,
    parse_step,
    prune_channels,
    prune_masks,
    remove_masks,
    save_pruned,
    weight_sparsity,
)
from wattwise.optimize.prune import auto_round_to
from wattwise.train import TrainConfig, evaluate, fit

SPEC = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 8}


def _small_cnn() -> nn.Module:
    torch.manual_seed(0)
    spec = dict(SPEC)
    return create_model(spec.pop("name"), **spec)


def _conv_channels(model: nn.Module) -> list[int]:
    return [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """small_cnn trained on digits (8 px, 1 channel) and its test accuracy."""
    model = _small_cnn()
    config = TrainConfig(epochs=2, lr=0.05, augment=False, device="cpu")
    result = fit(model, digits, config)
    assert result.test_accuracy > 0.9
    return model.eval(), result.test_accuracy


def _batches(digits, which: str = "train", batch_size: int = 64) -> TensorLoader:
    return TensorLoader.from_splits(digits, which, batch_size)


# --- configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio": 0},
        {"ratio": 1.0},
        {"ratio": "0.3"},
        {"importance": "l1"},
        {"round_to": 0},
        {"iterative_steps": 0},
        {"max_layer_ratio": 1.0},
        {"ignore": [1]},
    ],
)
def test_bad_channel_config_is_config_error(kwargs) -> None:
    with pytest.raises(ConfigError):
        ChannelPruneConfig(**kwargs)


@pytest.mark.parametrize("kwargs", [{"amount": 0.0}, {"amount": 1.5}, {"scope": "per-layer"}])
def test_bad_mask_config_is_config_error(kwargs) -> None:
    with pytest.raises(ConfigError):
        MaskPruneConfig(**kwargs)


def test_configs_from_recipe_steps() -> None:
    config = parse_step("prune:structured:0.5:ignore=a:steps=2")
    assert config == ChannelPruneConfig(ratio=0.5, ignore=("a",), iterative_steps=2)
    assert config.to_dict()["step"] == "prune:structured"
    assert config.to_step() == "prune:structured:0.5:steps=2:ignore=a"
    assert {"prune:structured", "prune:unstructured"} <= set(list_techniques())
    with pytest.raises(ConfigError, match="unknown option 'ratios'"):
        parse_step("prune:structured:0.5:ratios=0.5")
    with pytest.raises(ConfigError, match=r"^prune takes prune:structured:<ratio>"):
        parse_step("prune")


# --- mask pruning ----------------------------------------------------------------------------


def test_sparsity_is_counted_by_hand_on_a_tiny_linear() -> None:
    layer = nn.Linear(4, 2, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[0.0, 1.0, 0.0, 2.0], [3.0, 0.0, 4.0, 5.0]]))
    report = weight_sparsity(nn.Sequential(layer))
    assert (report.zeros, report.total) == (3, 8)
    assert report.sparsity == pytest.approx(3 / 8)
    assert report.layers == {"0": pytest.approx(3 / 8)}


def test_layer_mask_pruning_zeroes_the_smallest_weights() -> None:
    model = nn.Sequential(nn.Linear(4, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, -8.0, 3.0, -2.0], [7.0, 4.0, -6.0, 5.0]]))
        model[1].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    report = prune_masks(model, MaskPruneConfig(amount=0.5, scope="layer"))
    expected = torch.tensor([[0.0, -8.0, 0.0, 0.0], [7.0, 0.0, -6.0, 5.0]])
    assert torch.equal(model[0].weight, expected)
    assert torch.equal(model[1].weight, torch.tensor([[0.0, 0.0], [3.0, 4.0]]))
    assert report.sparsity.layers == {"0": 0.5, "1": 0.5}
    assert (report.sparsity.zeros, report.sparsity.total) == (6, 12)


def test_global_mask_pruning_uses_one_threshold() -> None:
    model = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        model[1].weight.copy_(torch.tensor([[5.0, 6.0], [7.0, 8.0]]))
    report = prune_masks(model, MaskPruneConfig(amount=0.5, scope="global"))
    assert report.sparsity.layers == {"0": 1.0, "1": 0.0}
    assert report.sparsity.sparsity == 0.5


def test_mask_pruning_is_labelled_honestly_and_removes_cleanly() -> None:
    model = _small_cnn().eval()
    x = torch.randn(4, 1, 8, 8)
    report = prune_masks(model, MaskPruneConfig(amount=0.6), x)
    assert report.speedup_expected is False
    assert "no speedup" in report.note
    assert report.params_after == report.params_before
    assert report.macs_after == report.macs_before > 0
    assert report.size_bytes_after > 1.5 * report.size_bytes_before  # weight_orig + weight_mask
    assert report.sparsity.sparsity == pytest.approx(0.6, abs=0.01)
    masked = model(x)
    assert remove_masks(model) == 5
    keys = list(model.state_dict())
    assert not [k for k in keys if k.endswith(("_orig", "_mask"))]
    assert weight_sparsity(model).sparsity == pytest.approx(report.sparsity.sparsity)
    torch.testing.assert_close(model(x), masked)
    assert count_parameters(model) == report.params_before


def test_permanent_mask_pruning_through_the_registry() -> None:
    model = _small_cnn()
    prepared = apply_technique(model, MaskPruneConfig(amount=0.3, permanent=True))
    assert prepared.applied == "prune:unstructured:0.3:permanent=true"
    assert any("no speedup" in note for note in prepared.notes)
    assert all("_mask" not in k for k in model.state_dict())


# --- channel pruning -------------------------------------------------------------------------


def test_uniform_channel_pruning_shrinks_as_expected() -> None:
    model = _small_cnn()
    x = torch.randn(4, 1, 8, 8)
    report = prune_channels(model, ChannelPruneConfig(ratio=0.5), x)
    assert _conv_channels(model) == [8, 16, 32, 32]
    assert model.classifier.out_features == 10
    assert report.channels_after["classifier"] == 10
    # Both sides of each conv halve: params and MACs fall to about a quarter.
    assert 0.2 < report.params_ratio < 0.35
    assert 0.2 < report.macs_ratio < 0.3
    assert report.after.params == count_parameters(model)
    assert report.after.macs == count_macs(model, (1, 8, 8))
    assert report.channel_ratio == pytest.approx(0.5)
    assert report.speedup_expected is True
    assert model(x).shape == (4, 10)


def test_round_to_is_honoured() -> None:
    x = torch.randn(4, 1, 8, 8)
    rounded, plain = _small_cnn(), _small_cnn()
    prune_channels(rounded, ChannelPruneConfig(ratio=0.3, round_to=8), x)
    prune_channels(plain, ChannelPruneConfig(ratio=0.3, round_to=None), x)
    assert all(c % 8 == 0 for c in _conv_channels(rounded))
    assert _conv_channels(plain) == [11, 22, 44, 44]


def test_auto_rounding_keeps_the_ratio_on_narrow_models() -> None:
    """A fixed round_to=8 made 10 % of a 16-channel layer keep 8 channels (half), and 90 %
    leave it whole: MACs were not monotone in the ratio. ``auto`` rounds only where the kept
    channels move by <= 5 % of a layer's width."""
    x = torch.randn(2, 1, 8, 8)
    macs = []
    for ratio in (0.1, 0.3, 0.5, 0.7, 0.9):
        model = _small_cnn()  # 16, 32, 64, 64 channels
        report = prune_channels(model, ChannelPruneConfig(ratio=ratio), x)
        # within the 5 % of rounding plus Torch-Pruning's truncation (4.8 of 16 keeps 4)
        assert report.channel_ratio == pytest.approx(ratio, abs=0.07)
        if report.round_to is not None:
            assert all(c % report.round_to == 0 for c in _conv_channels(model))
        macs.append(report.macs_ratio)
    assert macs == sorted(macs, reverse=True)
    assert auto_round_to([64, 128, 256], ChannelPruneConfig(ratio=0.5)) == 8
    assert auto_round_to([16, 32], ChannelPruneConfig(ratio=0.1)) == 2  # 14 and 28 kept
    assert auto_round_to([16], ChannelPruneConfig(ratio=0.3)) is None  # 11 kept: odd
    assert ChannelPruneConfig(ratio=0.3).round_to == "auto"


def test_global_pruning_and_iterative_steps_call_the_fine_tune_hook() -> None:
    model = _small_cnn()
    calls: list[tuple[int, int]] = []
    report = prune_channels(
        model,
        ChannelPruneConfig(ratio=0.5, global_pruning=True, iterative_steps=3, round_to=8),
        torch.randn(4, 1, 8, 8),
        fine_tune=lambda m, step, steps: calls.append((step, steps)),
    )
    assert calls == [(1, 3), (2, 3)]  # between steps; the final fine-tune is the caller's
    assert len(report.steps) == 3
    assert [s["params"] for s in report.steps] == sorted(s["params"] for s in report.steps)[::-1]
    assert report.params_ratio < 0.6
    assert all(c % 8 == 0 for c in _conv_channels(model))


def test_taylor_needs_labelled_batches(digits) -> None:
    x = torch.randn(4, 1, 8, 8)
    config = ChannelPruneConfig(ratio=0.5, importance="taylor")
    with pytest.raises(ConfigError, match="labels"):
        prune_channels(_small_cnn(), config, x, calibration=[x])
    model = _small_cnn()
    report = prune_channels(model, config, x, calibration=_batches(digits))
    assert _conv_channels(model) == [8, 16, 32, 32]
    assert all(p.grad is None for p in model.parameters())
    assert report.macs_ratio < 0.3


def test_bn_scale_needs_batchnorm() -> None:
    model = nn.Sequential(nn.Conv2d(1, 16, 3), nn.ReLU(), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 1, 8, 8))
    with pytest.raises(ConfigError, match="BatchNorm"):
        prune_channels(model, ChannelPruneConfig(importance="bn_scale"), torch.randn(2, 1, 8, 8))


def test_unknown_head_is_config_error() -> None:
    with pytest.raises(ConfigError, match="head"):
        prune_channels(_small_cnn(), ChannelPruneConfig(head="fc"), torch.randn(2, 1, 8, 8))


# --- accuracy --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "importance",
    [
        "magnitude",
        pytest.param("bn_scale", marks=pytest.mark.slow),
        pytest.param("taylor", marks=pytest.mark.slow),
    ],
)
def test_accuracy_recovers_after_fine_tuning(digits, trained, importance) -> None:
    baseline, accuracy = trained
    model = copy.deepcopy(baseline)
    info = digits.info
    x = next(iter(_batches(digits)))[0]
    prepared = apply_technique(
        model,
        ChannelPruneConfig(ratio=0.5, importance=importance),
        TechniqueContext(example_inputs=x, calibration=_batches(digits)),
    )
    assert isinstance(prepared, PreparedModel)
    assert prepared.report.macs_ratio < 0.35
    config = TrainConfig(epochs=2, lr=0.02, augment=False, device="cpu")
    fit(prepared.module, digits, config)
    _, pruned_accuracy = evaluate(prepared.module, digits.test, mean=info.mean, std=info.std)
    assert pruned_accuracy >= accuracy - 0.04


# --- saving and loading ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small_cnn", "resnet18"])
def test_pruned_model_prunes_saves_and_loads(tmp_path, name) -> None:
    torch.manual_seed(0)
    spec = {**SPEC, "name": name}
    model = create_model(name, num_classes=10, in_channels=1, input_size=8)
    x = torch.randn(3, 1, 8, 8)
    report = prune_channels(model, ChannelPruneConfig(ratio=0.3), x)
    # Residual additions are pruned consistently; 30 % of the channels is about half the params
    # (less where rounding down removes more).
    assert 0.3 < report.params_ratio < 0.6
    if report.round_to is not None:
        assert all(c % report.round_to == 0 for c in _conv_channels(model))
    model.eval()
    path = save_pruned(model, tmp_path / "pruned.pt", spec)
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "wattwise-pruned/1"
    loaded = load_pruned(path)
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    assert count_parameters(loaded) == count_parameters(model)
    assert count_macs(loaded, (1, 8, 8)) == count_macs(model, (1, 8, 8))


def test_load_pruned_takes_the_spec_as_argument(tmp_path) -> None:
    model = _small_cnn()
    prune_channels(model, ChannelPruneConfig(ratio=0.5), torch.randn(2, 1, 8, 8))
    path = save_pruned(model, tmp_path / "p.pt")
    with pytest.raises(PruningError, match="model_spec"):
        load_pruned(path)
    assert _conv_channels(load_pruned(path, SPEC)) == [8, 16, 32, 32]
    with pytest.raises(PruningError):
        load_pruned(path, {**SPEC, "name": "resnet18"})
    with pytest.raises(PruningError, match="not a pruned model"):
        torch.save({"x": 1}, tmp_path / "other.pt")
        load_pruned(tmp_path / "other.pt", SPEC)


def test_save_refuses_attached_masks(tmp_path) -> None:
    model = _small_cnn()
    prune_masks(model, MaskPruneConfig(amount=0.5))
    with pytest.raises(PruningError, match="remove_masks"):
        save_pruned(model, tmp_path / "p.pt", SPEC)
    assert issubclass(PruningError, WattwiseError)


def test_chaining_keeps_settings() -> None:
    model = _small_cnn()
    context = TechniqueContext(example_inputs=torch.randn(2, 1, 8, 8))
    pruned = apply_technique(model, ChannelPruneConfig(ratio=0.5), context)
    chained = apply_technique(pruned, ChannelsLastConfig(), context)
    assert chained.applied == "prune:structured:0.5+channels_last"
    assert chained.channels_last and chained.inference_kwargs()["channels_last"]
    assert chained(torch.randn(2, 1, 8, 8)).shape == (2, 10)
    with pytest.raises(ConfigError, match="example_inputs"):
        apply_technique(_small_cnn(), ChannelPruneConfig(), TechniqueContext())
