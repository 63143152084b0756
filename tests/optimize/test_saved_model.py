"""The final model of a recipe is saved in a form that loads again, and only such files load."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys

import pytest
import torch

import wattwise
from wattwise.cli import main
from wattwise.config import MeasurementSettings
from wattwise.data import load_dataset
from wattwise.errors import WattwiseError
from wattwise.experiment.runner import train_and_save
from wattwise.experiment.spec import TrialSpec
from wattwise.models import count_parameters, create_model
from wattwise.optimize.base import PreparedModel
from wattwise.optimize.pruned_files import PRUNED_FORMAT
from wattwise.optimize.recipe import RecipeSettings, run_recipe
from wattwise.optimize.saved_model import EXPORT_FORMAT, save_model
from wattwise.train import TrainConfig
from wattwise.train.inference import inference_batch

SPEC = {"name": "small_cnn", "num_classes": 10, "in_channels": 1, "input_size": 8}
TINY = RecipeSettings(finetune_epochs=1, finetune_lr=0.02, inference_s=0, batch_size=32)


@pytest.fixture(scope="module")
def data():
    return load_dataset("digits")


def _final(data, recipe: str) -> PreparedModel:
    torch.manual_seed(0)
    return run_recipe(create_model(**SPEC), data, recipe, settings=TINY, model_spec=SPEC).final


@pytest.mark.parametrize("recipe", ["prune:structured:0.5", "prune:structured:0.5,channels_last"])
def test_a_float_recipe_saves_a_model_that_loads_with_the_same_outputs(tmp_path, data, recipe):
    final = _final(data, recipe)
    x = inference_batch(data, TINY.batch_size)
    saved = save_model(final, tmp_path, SPEC, x)
    assert saved.path == tmp_path / "model.pt" and saved.format == PRUNED_FORMAT
    assert saved.channels_last == final.channels_last and saved.precision == final.precision
    loaded = wattwise.load_model(saved.path)
    assert (
        count_parameters(loaded)
        == count_parameters(final.module)
        < count_parameters(create_model(**SPEC))
    )
    with torch.no_grad():
        again = PreparedModel(loaded, precision=saved.precision, channels_last=saved.channels_last)
        assert torch.allclose(again(x), final(x))
    record = saved.to_dict()
    assert record["path"] == str(saved.path) and record["format"] == PRUNED_FORMAT


def test_a_bf16_recipe_records_the_precision_the_saved_model_runs_with(tmp_path, data):
    final = _final(data, "bf16")
    x = inference_batch(data, TINY.batch_size)
    saved = save_model(final, tmp_path, SPEC, x)
    assert saved.precision == "bf16" and "bf16" in saved.contents
    again = PreparedModel(wattwise.load_model(saved.path), precision="bf16")
    with torch.no_grad():
        assert torch.allclose(again(x), final(x))


class _Runs:
    """Unpickling this would run code: it must never happen."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('ran')",))


@pytest.mark.parametrize("kind", ["state_dict", "pickle", "text", "missing", "pt2"])
def test_load_model_refuses_files_it_did_not_write_in_one_line(tmp_path, kind):
    path = tmp_path / ("model.pt2" if kind == "pt2" else "model.pt")
    marker = tmp_path / "ran"
    if kind == "state_dict":
        torch.save(create_model(**SPEC).state_dict(), path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"format": PRUNED_FORMAT, "x": _Runs(str(marker))}))
    elif kind in ("text", "pt2"):
        path.write_text("not a model\n")
    with pytest.raises(WattwiseError) as err:
        wattwise.load_model(path)
    assert len(str(err.value).splitlines()) == 1 and str(path) in str(err.value)
    assert not marker.exists()


def test_an_int8_recipe_saves_an_exported_program(tmp_path, data):
    final = _final(data, "quantize:int8")
    x = inference_batch(data, TINY.batch_size)
    saved = save_model(final, tmp_path, SPEC, x)
    assert saved.path == tmp_path / "model.pt2" and saved.format == EXPORT_FORMAT
    assert "before torch.compile" in saved.contents
    loaded = torch.export.load(saved.path).module()
    with torch.no_grad():
        got, graph, compiled = loaded(x), final.module.graph(x), final(x)
    torch.testing.assert_close(got, graph)  # the saved program is the int8 graph itself
    # inductor's fused int8 kernels round some outputs one quantization step apart
    torch.testing.assert_close(got, compiled, atol=0.05, rtol=0)
    if final.module.dynamic_batch:
        assert loaded(x[:5]).shape == (5, SPEC["num_classes"])
    code = (  # a fresh process: torch and torchao, no wattwise
        "import sys, torch, torchao\n"
        f"m = torch.export.load({str(saved.path)!r}).module()\n"
        f"print(tuple(m(torch.zeros({TINY.batch_size}, 1, 8, 8)).shape))\n"
        "assert 'wattwise' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"({TINY.batch_size}, 10)"


def test_optimize_cli_saves_the_final_model_and_says_where(tmp_path, capsys):
    spec = TrialSpec(
        study="train",
        dataset="digits",
        model="small_cnn",
        technique="baseline",
        train=TrainConfig(epochs=1, lr=0.05, batch_size=32, hflip=False),
        measurement=MeasurementSettings(inference_s=0.2),
        image_size=None,
        width=1.0,
        weights=None,
        val_fraction=0.1,
    )
    assert train_and_save(spec, tmp_path / "run").status == "ok"
    out = tmp_path / "opt"
    argv = ["optimize", "--checkpoint", str(tmp_path / "run"), "--recipe",
            "prune:structured:0.5", "--finetune-epochs", "1", "--inference-s", "0.1",
            "--rounds", "2", "--max-rounds", "2", "--out", str(out),
            "--save-steps", "--onnx"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert (out / "model.pt").is_file() and f"model saved to {out / 'model.pt'}" in text
    recipe = json.loads((out / "recipe.json").read_text())
    record = recipe["model"]
    assert record["path"] == str(out / "model.pt") and record["format"] == PRUNED_FORMAT
    assert count_parameters(wattwise.load_model(out / "model.pt")) < count_parameters(
        create_model(**SPEC)
    )
    # --save-steps: the baseline and the step, each loadable, the baseline at full size
    steps = recipe["step_models"]
    assert [s["step"] for s in steps] == ["baseline", "prune:structured:0.5"]
    assert all(s["saved"] for s in steps) and "2 of 2 step models saved" in text
    sizes = [count_parameters(wattwise.load_model(s["path"])) for s in steps]
    assert sizes[0] == count_parameters(create_model(**SPEC)) > sizes[1]
    # --onnx: exported, checked against PyTorch, measured beside it
    onnx = recipe["onnx"]
    assert onnx["exported"] and (out / "model.onnx").is_file()
    assert onnx["top1_agreement"] == 1.0 and onnx["comparison"]["rounds"] == 2
    assert "ONNX Runtime vs PyTorch:" in text and "latency p50: ONNX Runtime" in text
