"""Quantization: int8 PT2E that agrees with fp32 and really shrinks, dynamic int8, autocast."""

from __future__ import annotations

import sys
import warnings

import pytest
import torch
from torch import nn

from wattwise.data import TensorLoader, load_dataset
from wattwise.errors import ConfigError, WattwiseError
from wattwise.models import create_model
from wattwise.optimize import (
    AutocastConfig,
    ChannelPruneConfig,
    ChannelsLastConfig,
    DynamicInt8Config,
    Int8Module,
    PreparedModel,
    QATInt8Config,
    QuantizationError,
    StaticInt8Config,
    TechniqueContext,
    apply_technique,
    graph_tensor_bytes,
    inductor_freezing,
    parse_step,
    quantize_static_int8,
    top1_agreement,
)
from wattwise.optimize import quantize as quantize_module
from wattwise.train import TrainConfig, evaluate, fit, measure_inference

BATCH = 64


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def trained(digits):
    """small_cnn trained briefly on digits (8 px, 1 channel), in eval mode."""
    torch.manual_seed(0)
    model = create_model("small_cnn", num_classes=10, in_channels=1, input_size=8)
    config = TrainConfig(epochs=2, lr=0.05, augment=False, device="cpu")
    result = fit(model, digits, config)
    assert result.test_accuracy > 0.9
    return model.eval()


def _loader(digits, which: str = "train", batch_size: int = BATCH) -> TensorLoader:
    return TensorLoader.from_splits(digits, which, batch_size)


@pytest.fixture(scope="module")
def example(digits) -> torch.Tensor:
    return next(iter(_loader(digits)))[0]


@pytest.fixture(scope="module")
def int8(trained, digits, example) -> PreparedModel:
    """The compiled PT2E int8 model (compiled once for the module: the slow part)."""
    reference = trained(example).detach().clone()
    context = TechniqueContext(example_inputs=example, calibration=_loader(digits))
    prepared = apply_technique(trained, StaticInt8Config(calibration_batches=4), context)
    torch.testing.assert_close(trained(example), reference)  # the input model is untouched
    return prepared


# --- configs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("config_type", "kwargs"),
    [
        (StaticInt8Config, {"calibration_batches": 0}),
        (StaticInt8Config, {"calibration_batches": 2.5}),
        (AutocastConfig, {"precision": "int8"}),
        (AutocastConfig, {"precision": "fp32"}),
    ],
)
def test_bad_config_is_config_error(config_type, kwargs) -> None:
    with pytest.raises(ConfigError):
        config_type(**kwargs)


def test_configs_from_recipe_steps() -> None:
    assert parse_step("quantize:int8") == StaticInt8Config()
    assert parse_step("quantize:int8:calibration_batches=3") == StaticInt8Config(3)
    assert parse_step("bf16") == AutocastConfig() and AutocastConfig().to_step() == "bf16"
    assert parse_step("autocast:fp16") == AutocastConfig("fp16")
    assert parse_step("quantize:int8_qat:compile=false") == QATInt8Config(compile=False)
    with pytest.raises(ConfigError, match="unknown option 'batches'"):
        parse_step("quantize:int8:batches=3")


# --- static int8 (PT2E) ----------------------------------------------------------------------


def test_int8_agrees_with_fp32_on_a_trained_model(int8, trained, digits) -> None:
    assert isinstance(int8.module, Int8Module)
    assert int8.applied == "quantize:int8:calibration_batches=4" and int8.precision == "fp32"
    assert top1_agreement(trained, int8, _loader(digits, "test")) >= 0.9
    info = digits.info
    _, fp32_accuracy = evaluate(trained, digits.test, mean=info.mean, std=info.std)
    _, int8_accuracy = evaluate(
        int8.module, digits.test, mean=info.mean, std=info.std, **int8.inference_kwargs()
    )
    assert int8_accuracy >= fp32_accuracy - 0.03


def test_int8_report_sizes_and_counts(int8, trained) -> None:
    report = int8.report
    assert report.method == "pt2e-static"
    assert (report.calibration_batches, report.calibration_images) == (4, 4 * BATCH)
    assert (report.quantized_layers, report.float_layers) == (5, 0)
    fp32_weight_bytes = sum(
        m.weight.numel() * 4 for m in trained.modules() if isinstance(m, nn.Conv2d | nn.Linear)
    )
    assert report.int8_weight_bytes == fp32_weight_bytes // 4
    assert report.int8_bytes < 0.45 * report.fp32_bytes
    assert report.held_bytes > report.int8_bytes  # the unused fp32 copies it still holds
    assert report.size_ratio == pytest.approx(report.int8_bytes / report.fp32_bytes)
    assert report.dynamic_batch and report.compiled and report.compile_s > 0
    assert int8.module.state_dict() == {}  # no misleading state_dict size


def test_int8_runs_other_batch_sizes_and_the_inference_protocol(int8, trained, example) -> None:
    small = example[:5]
    assert int8(small).shape == (5, 10)
    assert (int8(small).argmax(1) == trained(small).argmax(1)).float().mean() >= 0.8
    result = measure_inference(
        int8.module,
        example,
        device="cpu",
        warmup_s=0,
        min_duration_s=0,
        max_batches=3,
        **int8.inference_kwargs(),
    )
    assert result.batches == 3 and result.batch_size == BATCH


def test_freezing_flag_is_restored() -> None:
    import torch._inductor.config as inductor_config

    before = inductor_config.freezing
    with inductor_freezing():
        assert inductor_config.freezing is True
    assert inductor_config.freezing == before


def test_graph_bytes_count_only_what_the_graph_reads() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.used = nn.Parameter(torch.zeros(3, dtype=torch.float32))
            self.unused = nn.Parameter(torch.zeros(100))
            self.register_buffer("codes", torch.zeros(8, dtype=torch.int8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.used.sum() + self.codes

    graph = torch.fx.symbolic_trace(Net())
    assert graph_tensor_bytes(graph) == (3 * 4 + 8, 8)


def test_uncompiled_static_batch_is_specialized(trained, example) -> None:
    prepared = quantize_static_int8(
        trained, StaticInt8Config(dynamic_batch=False, compile=False), example, [example]
    )
    assert prepared.report.compiled is False and prepared.report.dynamic_batch is False
    assert any("slower than fp32" in note for note in prepared.notes)
    assert prepared(example).shape == (BATCH, 10)
    with pytest.raises(QuantizationError, match="specialized to batch size 64"):
        prepared(example[:3])


def test_int8_needs_calibration_and_example(trained, example) -> None:
    with pytest.raises(ConfigError, match="calibration"):
        apply_technique(trained, StaticInt8Config(), TechniqueContext(example_inputs=example))
    with pytest.raises(ConfigError, match="example_inputs"):
        apply_technique(trained, StaticInt8Config(), TechniqueContext(calibration=[example]))
    with pytest.raises(ConfigError, match="calibration"):
        quantize_static_int8(trained, StaticInt8Config(compile=False), example, [])


def test_export_failure_is_a_clear_error(example) -> None:
    class DataDependent(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.sum() > 0:  # data-dependent control flow: strict export refuses it
                return x.flatten(1)
            return -x.flatten(1)

    with pytest.raises(QuantizationError, match=r"torch\.export .* cannot capture DataDependent"):
        quantize_static_int8(DataDependent(), StaticInt8Config(), example, [example])


def test_missing_torchao_is_a_clear_error(trained, example, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "torchao.quantization.pt2e", None)
    with pytest.raises(QuantizationError, match="needs torchao"):
        quantize_static_int8(trained, StaticInt8Config(), example, [example])


def test_gpu_model_is_refused(trained, example, monkeypatch) -> None:
    monkeypatch.setattr(quantize_module, "model_device", lambda _m: torch.device("cuda"))
    with pytest.raises(QuantizationError, match="CPU path"):
        quantize_static_int8(trained, StaticInt8Config(), example, [example])
    assert issubclass(QuantizationError, WattwiseError)


def test_int8_after_autocast_is_refused(trained, example) -> None:
    bf16 = apply_technique(trained, AutocastConfig("bf16"))
    with pytest.raises(ConfigError, match="fp32 model"):
        apply_technique(bf16, StaticInt8Config(), TechniqueContext(example, [example]))


def test_pruned_then_quantized_chain(trained, digits, example) -> None:
    import copy

    context = TechniqueContext(example_inputs=example, calibration=_loader(digits))
    pruned = apply_technique(copy.deepcopy(trained), ChannelPruneConfig(ratio=0.5), context)
    chained = apply_technique(
        pruned, StaticInt8Config(calibration_batches=2, compile=False), context
    )
    assert (
        chained.applied == "prune:structured:0.5+quantize:int8:calibration_batches=2:compile=false"
    )
    assert chained.report.int8_weight_bytes < 0.3 * (pruned.report.before.params)
    assert chained(example).shape == (BATCH, 10)


# --- dynamic int8, autocast, channels_last ---------------------------------------------------


def test_dynamic_int8_on_a_convnet_converts_only_the_classifier(trained, example) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the deprecation warnings are silenced
        prepared = apply_technique(trained, DynamicInt8Config())
    report = prepared.report
    assert (report.quantized_layers, report.float_layers) == (1, 4)
    assert "1 of 1 Linear" in prepared.notes[0] and "4 conv layers fp32" in prepared.notes[0]
    assert (prepared(example).argmax(1) == trained(example).argmax(1)).float().mean() >= 0.95
    assert isinstance(trained.classifier, nn.Linear)  # the input model is untouched


def test_dynamic_int8_shrinks_an_mlp() -> None:
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10)).eval()
    prepared = apply_technique(mlp, DynamicInt8Config())
    assert prepared.report.quantized_layers == 2 and prepared.report.float_layers == 0
    assert prepared.report.size_ratio < 0.3
    x = torch.randn(32, 64)
    torch.testing.assert_close(prepared(x), mlp(x), atol=0.05, rtol=0)


def test_bf16_autocast_and_channels_last(trained, example, digits) -> None:
    bf16 = apply_technique(trained, AutocastConfig("bf16"))
    assert bf16.inference_kwargs() == {"precision": "bf16", "channels_last": False}
    assert bf16.module is trained
    assert bf16(example).dtype == torch.bfloat16
    assert top1_agreement(trained, bf16, [example]) >= 0.9  # bf16 is slow on CPUs without it
    with pytest.raises(ConfigError, match="fp16 autocast is for GPUs"):
        apply_technique(trained, AutocastConfig("fp16"))
    nhwc = apply_technique(create_model("small_cnn", 10, 1, 8).eval(), ChannelsLastConfig())
    both = apply_technique(nhwc, AutocastConfig("bf16"))
    assert both.inference_kwargs() == {"precision": "bf16", "channels_last": True}
    assert nhwc.module.features[0][0].weight.is_contiguous(memory_format=torch.channels_last)
    assert both(example).shape == (BATCH, 10)


# --- quantization-aware training -------------------------------------------------------------


@pytest.mark.slow
def test_qat_trains_and_converts(trained, digits, example) -> None:
    def train_fn(model: nn.Module, step: int, steps: int) -> None:
        config = TrainConfig(epochs=1, lr=0.005, augment=False, device="cpu")
        fit(model, digits, config)

    context = TechniqueContext(example_inputs=example, train_fn=train_fn)
    prepared = apply_technique(trained, QATInt8Config(), context)
    assert prepared.report.method == "pt2e-qat" and prepared.report.quantized_layers == 5
    info = digits.info
    _, fp32_accuracy = evaluate(trained, digits.test, mean=info.mean, std=info.std)
    _, qat_accuracy = evaluate(prepared.module, digits.test, mean=info.mean, std=info.std)
    assert qat_accuracy >= fp32_accuracy - 0.03
    with pytest.raises(ConfigError, match="training callable"):
        apply_technique(trained, QATInt8Config(), TechniqueContext(example_inputs=example))
