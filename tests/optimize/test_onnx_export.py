"""The final model as ONNX: it runs in ONNX Runtime with PyTorch's outputs, and is measured
beside PyTorch by the comparison protocol."""

from __future__ import annotations

import pytest
import torch

from wattwise.data import load_dataset
from wattwise.errors import ModelError
from wattwise.models import create_model
from wattwise.optimize.comparison import CompareSettings
from wattwise.optimize.onnx_export import (
    ONNXRUNTIME,
    PYTORCH,
    export_onnx,
    onnx_beside_pytorch,
    ort_runner,
)
from wattwise.optimize.recipe import RecipeSettings, run_recipe
from wattwise.train.inference import inference_batch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

SPEC = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 8}
TINY = RecipeSettings(finetune_epochs=0, inference_s=0, batch_size=32)
QUICK = CompareSettings(rounds=2, max_rounds=2, round_s=0.05, warmup_s=0.02, min_batches=2)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def pruned(data, tmp_path_factory):
    """A pruned model, its ONNX file (one export: the exporter's first call takes seconds)."""
    torch.manual_seed(0)
    result = run_recipe(create_model(**SPEC), data, "prune:structured:0.5", settings=TINY)
    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return result.final, export_onnx(result.final, path, inference_batch(data, 32))


def test_a_pruned_model_exports_with_a_dynamic_batch_and_runs_in_onnx_runtime(data, pruned):
    final, export = pruned
    assert export.path.is_file() and not list(export.path.parent.glob(".*tmp*"))  # atomic
    assert export.dynamic_batch and export.precision == "fp32" and export.opset
    assert "autocast" not in export.contents and export.to_dict()["format"] == "onnx"
    run = ort_runner(export.path, threads=1)
    x = inference_batch(data, 32)
    with torch.no_grad():
        for batch in (x, x[:5]):
            torch.testing.assert_close(
                torch.from_numpy(run(batch)), final(batch), atol=1e-4, rtol=1e-4
            )


def test_onnx_runtime_is_measured_beside_pytorch_with_an_interval(data, pruned):
    final, export = pruned
    x = inference_batch(data, 32)
    compared = onnx_beside_pytorch(final, export, x, settings=QUICK)
    assert compared.top1_agreement == 1.0 and compared.max_abs_diff < 1e-3
    assert set(compared.comparison.variants) == {PYTORCH, ONNXRUNTIME}
    ratio = compared.saving()
    assert ratio.variant == ONNXRUNTIME and ratio.reference == PYTORCH and ratio.rounds == 2
    assert ratio.saving > 0 and ratio.low is not None and ratio.low <= ratio.saving <= ratio.high
    record = compared.to_dict()
    assert record["comparison"]["ratios"][0]["variant"] == ONNXRUNTIME
    only_checked = onnx_beside_pytorch(final, export, x, measure=False)
    assert only_checked.comparison is None and only_checked.saving() is None


def test_a_dynamic_int8_model_is_refused_in_one_line(tmp_path, data):
    torch.manual_seed(0)
    result = run_recipe(create_model(**SPEC), data, "quantize:int8_dynamic", settings=TINY)
    with pytest.raises(ModelError, match="no ONNX export") as err:
        export_onnx(result.final, tmp_path / "model.onnx", inference_batch(data, 8))
    assert "\n" not in str(err.value) and not (tmp_path / "model.onnx").exists()
