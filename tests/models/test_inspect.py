"""Parameter, MAC, FLOP and size counting against torchvision's published figures."""

from __future__ import annotations

import io

import pytest
import torch
from torch import nn

from wattwise.errors import ConfigError, WattwiseError
from wattwise.models import (
    ModelStats,
    count_flops,
    count_macs,
    count_parameters,
    create_model,
    format_stats,
    inspect_model,
    parse_input_shape,
    serialized_size_bytes,
    stats_table,
)

# torchvision's model cards at 224x224, 3 channels, 1000 classes: (GMACs, M params).
# torchvision labels the first figure "GFLOPS", but it counts multiply-accumulates.
PUBLISHED = {
    "resnet18": (1.814, 11.69),
    "resnet50": (4.089, 25.56),
    "mobilenet_v2": (0.301, 3.50),
    "mobilenet_v3_large": (0.217, 5.48),
    "mobilenet_v3_small": (0.057, 2.54),
    "efficientnet_b0": (0.386, 5.29),
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_macs_and_params_within_one_percent(name: str) -> None:
    gmacs, mparams = PUBLISHED[name]
    model = create_model(name, num_classes=1000, input_size=224)
    stats = inspect_model(model, (3, 224, 224))
    assert stats.macs / 1e9 == pytest.approx(gmacs, rel=0.01)
    assert stats.params / 1e6 == pytest.approx(mparams, rel=0.01)
    assert stats.flops == 2 * stats.macs
    # float32 weights dominate the checkpoint size.
    assert 4 * stats.params < stats.size_bytes < 4.2 * stats.params


def test_linear_macs_are_exact() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    assert count_macs(model, (3, 2, 2)) == 12 * 5
    assert count_flops(model, (3, 2, 2)) == 2 * 12 * 5
    assert count_macs(model, (3, 2, 2), batch_size=4) == 4 * 12 * 5


def test_conv_macs_are_exact() -> None:
    conv = nn.Conv2d(2, 4, kernel_size=3, padding=1, bias=False)
    assert count_macs(conv, "2x8x8") == 8 * 8 * 4 * 2 * 3 * 3
    depthwise = nn.Conv2d(4, 4, kernel_size=3, padding=1, groups=4, bias=False)
    assert count_macs(depthwise, (4, 8, 8)) == 8 * 8 * 4 * 3 * 3


def test_counting_restores_training_flags_and_needs_no_grad() -> None:
    model = create_model("small_cnn", num_classes=10)
    model.features[1].eval()  # a mixed state must survive
    before = [m.training for m in model.modules()]
    stats_before = [
        m.running_mean.clone() for m in model.modules() if isinstance(m, nn.BatchNorm2d)
    ]
    inspect_model(model, (3, 32, 32))
    assert [m.training for m in model.modules()] == before
    stats_after = [m.running_mean for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(torch.equal(a, b) for a, b in zip(stats_before, stats_after, strict=True))


def test_meta_device_counts_without_data() -> None:
    with torch.device("meta"):
        model = create_model("resnet18", num_classes=1000, input_size=224)
    assert next(model.parameters()).is_meta
    assert count_macs(model) == count_macs(create_model("resnet18", 1000, input_size=224))


def test_count_parameters_trainable_only_and_shared() -> None:
    model = create_model("small_cnn", num_classes=10)
    total = count_parameters(model)
    assert 20_000 <= total <= 100_000
    for p in model.features.parameters():
        p.requires_grad_(False)
    assert count_parameters(model, trainable_only=True) == sum(
        p.numel() for p in model.classifier.parameters()
    )
    shared = nn.Linear(4, 4)
    assert count_parameters(nn.Sequential(shared, shared)) == 20


def test_serialized_size_matches_torch_save() -> None:
    model = create_model("small_cnn", num_classes=10)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    assert serialized_size_bytes(model) == len(buffer.getvalue())


def test_model_stats_dict_and_formatting() -> None:
    stats = ModelStats(
        params=11_689_512,
        macs=1_814_073_856,
        flops=3_628_147_712,
        size_bytes=46_830_571,
        input_shape=(3, 224, 224),
    )
    assert stats.to_dict() == {
        "params": 11_689_512,
        "macs": 1_814_073_856,
        "flops": 3_628_147_712,
        "size_bytes": 46_830_571,
        "input_shape": [3, 224, 224],
    }
    assert stats_table(stats) == {
        "input": "3x224x224",
        "params": "11.69 M",
        "MACs": "1.814 G",
        "FLOPs (2 x MACs)": "3.628 G",
        "size (state_dict)": "44.66 MiB",
    }
    text = format_stats(stats, title="resnet18")
    assert text.splitlines()[0] == "resnet18"
    assert "MACs               1.814 G" in text
    with pytest.raises(AttributeError):
        stats.params = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3x224x224", (3, 224, 224)),
        ("1X28X28", (1, 28, 28)),
        (" 3, 32, 32 ", (3, 32, 32)),
        ("3×64×64", (3, 64, 64)),
    ],
)
def test_parse_input_shape(text: str, expected: tuple[int, int, int]) -> None:
    assert parse_input_shape(text) == expected


@pytest.mark.parametrize(
    "text", ["", "224", "3x224", "3x224x224x1", "3xax224", "0x32x32", "-3x2x2", "3.0x32x32"]
)
def test_parse_input_shape_rejects_bad_text(text: str) -> None:
    with pytest.raises(ConfigError, match="CxHxW") as info:
        parse_input_shape(text)
    assert isinstance(info.value, WattwiseError)


def test_bad_shape_and_batch_size_are_config_errors() -> None:
    model = nn.Flatten()
    with pytest.raises(ConfigError):
        count_macs(model, (3, 32))
    with pytest.raises(ConfigError):
        count_macs(model, (3, 32, 32), batch_size=0)


def test_a_huge_input_is_refused_before_anything_is_allocated() -> None:
    with pytest.raises(ConfigError, match="elements") as info:
        parse_input_shape("3x200000x200000")
    assert "3x200000x200000" in str(info.value) and "\n" not in str(info.value)
    model = nn.Flatten()
    with pytest.raises(ConfigError, match="elements"):
        count_flops(model, (3, 200000, 200000))
    with pytest.raises(ConfigError, match="elements"):  # the batch counts too
        count_flops(model, (3, 2048, 2048), batch_size=64)
    assert parse_input_shape("3x4096x4096") == (3, 4096, 4096)  # large, but sane


class _Allocating(nn.Module):
    """Fails in forward as an allocation does when memory runs out."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(
            "[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
            "memory: you tried to allocate 480000000000 bytes. Error code 12"
        ),
        RuntimeError("DefaultCPUAllocator: not enough memory: you tried to allocate 8 GB"),
        MemoryError(),
    ],
)
def test_running_out_of_memory_while_counting_is_one_line(error: BaseException) -> None:
    with pytest.raises(ConfigError, match="not enough memory") as info:
        inspect_model(_Allocating(error), (3, 64, 64))
    assert "3x64x64" in str(info.value) and "\n" not in str(info.value)


def test_other_runtime_errors_are_not_taken_for_memory() -> None:
    with pytest.raises(RuntimeError, match="shape mismatch"):
        count_flops(_Allocating(RuntimeError("shape mismatch")), (3, 8, 8))
