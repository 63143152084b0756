"""What only a CUDA GPU can show: the memory cap enforced, OOM under it, fp16. Skipped on CPU."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch
from torch import nn

from wattwise.data import DatasetSplits
from wattwise.train import TrainConfig, apply_memory_cap, fit, measure_inference

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

GIB = 2**30


@pytest.fixture
def cuda() -> Iterator[torch.device]:
    device = torch.device("cuda")
    yield device
    apply_memory_cap(device, None)  # never leave a cap behind for the next test
    torch.cuda.empty_cache()


def test_memory_cap_is_enforced(cuda: torch.device) -> None:
    total_gib = torch.cuda.get_device_properties(cuda).total_memory / GIB
    if total_gib <= 4.5:
        pytest.skip("the GPU has no more than 4 GiB: a 4 GiB cap does not bind")
    cap = apply_memory_cap(cuda, 4)
    assert cap.enforced is True and "set_per_process_memory_fraction" in cap.note
    with pytest.raises(torch.cuda.OutOfMemoryError):
        torch.empty(5 * GIB, dtype=torch.uint8, device=cuda)
    huge = apply_memory_cap(cuda, 10_000)
    assert huge.enforced is False and "does not bind" in huge.note


def test_oom_under_the_cap_ends_fit_with_status_oom(
    cuda: torch.device,
    digits: DatasetSplits,
    make_cnn: Callable[..., nn.Module],
    fast_config: Callable[..., TrainConfig],
) -> None:
    if torch.cuda.get_device_properties(cuda).total_memory / GIB <= 6.5:
        pytest.skip("needs a GPU with more than 6 GiB")

    def greedy_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
        torch.empty(6 * GIB, dtype=torch.uint8, device=x.device)  # more than the 4 GiB cap
        logits = model(x)
        return nn.functional.cross_entropy(logits, y), logits

    config = fast_config(device="cuda", gpu_memory_gib=4, num_threads=None)
    result = fit(make_cnn(), digits, config, step_fn=greedy_step)
    assert result.memory_cap.enforced is True
    assert result.status == "oom" and result.reason == "does not fit in 4 GiB"
    assert result.fit is not None


def test_fp16_and_bf16_train_on_cuda(
    cuda: torch.device,
    digits: DatasetSplits,
    make_cnn: Callable[..., nn.Module],
    fast_config: Callable[..., TrainConfig],
) -> None:
    for precision in ("fp16", "bf16"):
        config = fast_config(device="cuda", precision=precision, epochs=3, num_threads=None)
        result = fit(make_cnn(), digits, config)
        assert result.status == "ok", precision
        assert result.test_accuracy is not None and result.test_accuracy >= 0.7, precision
        assert result.history[0].peak_cuda_allocated_bytes, precision


def test_measure_inference_runs_a_cpu_model_on_the_requested_device(cuda: torch.device) -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    result = measure_inference(model, torch.randn(8, 1, 8, 8), device="cuda", max_batches=3)
    assert result.device.startswith("cuda")
