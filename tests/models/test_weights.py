"""Weights: local state_dict files, torchvision downloads (faked) and the offline error path."""

from __future__ import annotations

from pathlib import Path
from urllib.error import URLError

import pytest
import torch
from torch import nn

from wattwise.errors import ModelError
from wattwise.models import (
    check_model_spec,
    create_model,
    create_model_from_spec,
    load_state_dict_adapted,
    load_state_dict_exact,
    load_torch_file,
    read_state_dict,
)


def _outputs_equal(a: nn.Module, b: nn.Module, x: torch.Tensor) -> bool:
    with torch.no_grad():
        return torch.equal(a.eval()(x), b.eval()(x))


@pytest.mark.parametrize(
    ("name", "kwargs"),
    [
        ("small_cnn", {"in_channels": 1, "width": 0.5}),
        ("resnet18", {"in_channels": 3}),
        ("mobilenet_v3_small", {"in_channels": 1}),
    ],
)
def test_local_state_dict_round_trip(name: str, kwargs: dict, tmp_path: Path) -> None:
    source = create_model(name, num_classes=10, input_size=32, **kwargs)
    source(torch.randn(2, kwargs["in_channels"], 32, 32))  # move the BN running statistics
    path = tmp_path / "weights.pth"
    torch.save(source.state_dict(), path)

    fresh = create_model(name, num_classes=10, input_size=32, **kwargs)
    x = torch.randn(2, kwargs["in_channels"], 32, 32)
    assert not _outputs_equal(source, fresh, x)
    loaded = create_model(name, num_classes=10, input_size=32, weights=path, **kwargs)
    assert _outputs_equal(source, loaded, x)
    report = loaded.weights_report
    assert report.source == str(path)
    assert set(report.loaded) == {k for k in source.state_dict()}
    assert report.skipped == {}
    assert report.adapted == ()


def test_checkpoint_wrappers_and_prefixes_are_unwrapped(tmp_path: Path) -> None:
    source = create_model("small_cnn", num_classes=3)
    path = tmp_path / "ckpt.pt"
    state = {f"module.{k}": v for k, v in source.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, path)
    assert set(read_state_dict(path)) == set(source.state_dict())
    loaded = create_model("small_cnn", num_classes=3, weights=str(path))
    assert _outputs_equal(source, loaded, torch.randn(1, 3, 16, 16))


def test_head_and_stem_that_no_longer_fit_are_skipped(tmp_path: Path) -> None:
    # An ImageNet-shaped checkpoint (3 channels, 7x7 stem, 1000 classes) into a 10-class
    # small-input model: the 3x3 stem and the head keep their initialization, the rest loads.
    imagenet = create_model("resnet18", num_classes=1000, input_size=224)
    path = tmp_path / "resnet18.pth"
    torch.save(imagenet.state_dict(), path)
    model = create_model("resnet18", num_classes=10, input_size=32, weights=path)
    report = model.weights_report
    assert set(report.skipped) == {"conv1.weight", "fc.weight", "fc.bias"}
    assert "(1000, 512)" in report.skipped["fc.weight"]
    assert torch.equal(model.layer3[0].conv1.weight, imagenet.layer3[0].conv1.weight)
    assert torch.equal(model.bn1.running_var, imagenet.bn1.running_var)


def test_pretrained_first_conv_is_summed_for_grayscale(tmp_path: Path) -> None:
    rgb = create_model("mobilenet_v2", num_classes=1000, input_size=224)
    path = tmp_path / "mnv2.pth"
    torch.save(rgb.state_dict(), path)
    gray = create_model(
        "mobilenet_v2", num_classes=1000, in_channels=1, input_size=224, weights=path
    )
    assert gray.weights_report.adapted == ("features.0.0.weight",)
    expected = rgb.features[0][0].weight.sum(dim=1, keepdim=True)
    assert torch.allclose(gray.features[0][0].weight, expected)
    # A gray image gives the response of the RGB model to the same image with R = G = B.
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(gray.eval()(x), rgb.eval()(x.expand(1, 3, 64, 64)), atol=1e-4)

    four = create_model(
        "mobilenet_v2", num_classes=1000, in_channels=4, input_size=224, weights=path
    )
    assert torch.allclose(four.features[0][0].weight.sum(dim=1, keepdim=True), expected, atol=1e-6)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"this is not a checkpoint\n", id="text"),
        pytest.param(b"", id="empty"),
    ],
)
def test_file_not_written_by_torch_save(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(ModelError, match=r"torch\.save"):
        create_model("small_cnn", num_classes=10, weights=path)


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param(torch.zeros(3), id="tensor"),
        pytest.param([torch.zeros(3)], id="list"),
        pytest.param({}, id="empty-dict"),
        pytest.param({"epoch": 3, "lr": 0.1}, id="dict-without-tensors"),
    ],
)
def test_file_that_is_not_a_state_dict(obj: object, tmp_path: Path) -> None:
    path = tmp_path / "not_state.pth"
    torch.save(obj, path)
    with pytest.raises(ModelError, match="not a state_dict"):
        create_model("small_cnn", num_classes=10, weights=path)


def test_whole_pickled_model_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.pth"
    torch.save(create_model("small_cnn", num_classes=10), path)
    with pytest.raises(ModelError, match="not a state_dict"):
        create_model("small_cnn", num_classes=10, weights=path)


def test_wrong_shape_file_is_model_error(tmp_path: Path) -> None:
    path = tmp_path / "half.pth"
    torch.save(create_model("small_cnn", num_classes=10, width=0.5).state_dict(), path)
    with pytest.raises(ModelError, match="of another shape") as info:
        create_model("small_cnn", num_classes=10, weights=path)
    assert "same model name and width" in str(info.value)


def test_other_architecture_file_is_model_error(tmp_path: Path) -> None:
    path = tmp_path / "small.pth"
    torch.save(create_model("small_cnn", num_classes=10).state_dict(), path)
    with pytest.raises(ModelError, match="do not fit resnet18"):
        create_model("resnet18", num_classes=10, weights=path)


def test_missing_file_and_unknown_weights_name() -> None:
    with pytest.raises(ModelError, match="not found"):
        create_model("small_cnn", num_classes=10, weights="/nonexistent/weights.pth")
    with pytest.raises(ModelError, match="IMAGENET1K_V1"):
        create_model("resnet18", num_classes=10, weights="IMAGENET9K_V9")
    with pytest.raises(ModelError, match="no published pretrained weights"):
        create_model("small_cnn", num_classes=10, weights="DEFAULT")
    with pytest.raises(ModelError, match="weights must be"):
        create_model("small_cnn", num_classes=10, weights=3)


def test_in_memory_state_dict() -> None:
    source = create_model("small_cnn", num_classes=4)
    loaded = create_model("small_cnn", num_classes=4, weights=source.state_dict())
    assert loaded.weights_report.source == "<mapping>"
    assert _outputs_equal(source, loaded, torch.randn(1, 3, 16, 16))
    with pytest.raises(ModelError, match="not a state_dict"):
        load_state_dict_adapted(loaded, {"a": 1}, stem="features.0.0", head="classifier")


@pytest.fixture
def empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache, so that every torchvision weights load tries to download."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return tmp_path / "torch" / "hub"


def test_offline_download_is_model_error(empty_hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(url: str, dst: str, *args: object, **kwargs: object) -> None:
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(ModelError) as info:
        create_model("resnet18", num_classes=10, weights="DEFAULT")
    message = str(info.value)
    assert "could not fetch pretrained weights ResNet18_Weights.IMAGENET1K_V1" in message
    assert "https://download.pytorch.org/models/resnet18-" in message
    assert "weights='<path to the file>'" in message
    assert str(empty_hub / "checkpoints") in message
    assert "\n" not in message
    assert isinstance(info.value.__cause__, URLError)


def test_torchvision_download_path_adapts_head_and_channels(
    empty_hub: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = create_model("mobilenet_v3_small", num_classes=1000, input_size=224).state_dict()
    urls: list[str] = []

    def fake_download(url: str, dst: str, *args: object, **kwargs: object) -> None:
        urls.append(url)
        torch.save(published, dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    model = create_model(
        "mobilenet_v3_small", num_classes=10, in_channels=1, input_size=32, weights="IMAGENET1K_V1"
    )
    assert urls == ["https://download.pytorch.org/models/mobilenet_v3_small-047dcff4.pth"]
    report = model.weights_report
    assert report.source == "torchvision:MobileNet_V3_Small_Weights.IMAGENET1K_V1"
    assert report.adapted == ("features.0.0.weight",)
    assert set(report.skipped) == {"classifier.3.weight", "classifier.3.bias"}
    assert model.features[0][0].stride == (1, 1)  # the small-input stem is kept
    assert torch.equal(
        model.features[3].block[0][0].weight, published["features.3.block.0.0.weight"]
    )


def test_torchvision_weights_need_width_one() -> None:
    with pytest.raises(ModelError, match=r"width 1\.0"):
        create_model("resnet18", num_classes=10, width=0.5, weights="DEFAULT")


def _write(case: str, path: Path) -> None:
    if case == "empty":
        path.write_bytes(b"")
    elif case == "truncated":
        torch.save(create_model("small_cnn", num_classes=10).state_dict(), path)
        path.write_bytes(path.read_bytes()[:1500])
    elif case == "folder":
        path.mkdir()
    elif case == "pickled objects":
        torch.save({"layer": nn.Linear(2, 2)}, path)
    elif case == "text":
        path.write_bytes(b"not a checkpoint at all\n")


@pytest.mark.parametrize(
    ("case", "why"),
    [
        ("empty", "it is empty (0 bytes), not a file written by torch.save"),
        ("truncated", "it is truncated or corrupt"),
        ("folder", "it is a folder, not a file"),
        (
            "pickled objects",
            "it contains objects that are not plain tensors; wattwise loads checkpoints with "
            "weights_only=True and refuses it",
        ),
        ("text", "it is not a file written by torch.save"),
        ("absent", "not found"),
    ],
)
def test_an_unreadable_file_is_one_model_error_line(case: str, why: str, tmp_path: Path) -> None:
    path = tmp_path / "file.pt"
    _write(case, path)
    with pytest.raises(ModelError) as info:
        load_torch_file(path, "checkpoint")
    message = str(info.value)
    assert message.startswith(f"cannot read checkpoint {path}: {why}")
    assert "\n" not in message and "\x1b" not in message and "weights_only=False" not in message


def test_a_weights_file_that_is_empty_says_so(tmp_path: Path) -> None:
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(ModelError, match=r"is empty \(0 bytes\)"):
        create_model("small_cnn", num_classes=10, weights=path)


def test_exact_load_refuses_what_does_not_fit() -> None:
    model = create_model("small_cnn", num_classes=10)
    state = create_model("small_cnn", num_classes=10).state_dict()
    load_state_dict_exact(model, state, source="checkpoint c.pt")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    wider = create_model("small_cnn", num_classes=10, width=2).state_dict()
    with pytest.raises(ModelError, match="of another shape") as info:
        load_state_dict_exact(model, wider, source="checkpoint c.pt", model_name="small_cnn")
    assert str(info.value).startswith("the weights of checkpoint c.pt do not fit small_cnn")
    partial = dict(list(state.items())[1:])
    with pytest.raises(ModelError, match="1 missing from the source"):
        load_state_dict_exact(model, partial)
    with pytest.raises(ModelError, match="1 not in the model"):
        load_state_dict_exact(model, {**state, "extra": torch.zeros(1)})
    with pytest.raises(ModelError, match="not a state_dict of tensors"):
        load_state_dict_exact(model, {**state, "epoch": 3})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("small_cnn", "must be a mapping"),
        ({"num_classes": 10}, "must be a mapping"),
        ({"name": "small_cnn"}, "lacks num_classes"),
        ({"name": "small_cnn", "num_classes": 10, 3: 1}, "not texts"),
        ({"name": "nope", "num_classes": 10}, "unknown model 'nope'"),
        ({"name": "small_cnn", "num_classes": 10, "depth": 3}, "unsupported option"),
        ({"name": "small_cnn", "num_classes": "10"}, "num_classes must be a positive integer"),
    ],
)
def test_a_bad_model_spec_is_one_model_error_line(spec: object, match: str) -> None:
    with pytest.raises(ModelError, match=match) as info:
        create_model_from_spec(spec, source="checkpoint c.pt")
    assert str(info.value).startswith("checkpoint c.pt: ") and "\n" not in str(info.value)


def test_a_model_spec_builds_the_model() -> None:
    spec = {"name": "small_cnn", "num_classes": 4, "in_channels": 1, "width": 0.5}
    model = create_model_from_spec(spec)
    assert model(torch.zeros(2, 1, 8, 8)).shape == (2, 4)
    assert check_model_spec(spec) == spec and check_model_spec(spec) is not spec
