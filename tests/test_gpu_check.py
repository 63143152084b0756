"""benchmarks/gpu_check.py without a GPU: its refusal, its argument parsing and its pure parts.

The script is not a package module, so it is loaded from its file; loading it must not need CUDA.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
GIB = 2**30


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gpu_check = _load()


def _run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}  # no GPU, even on a machine with one
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, "--json", str(tmp_path / "out.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def test_without_a_gpu_the_script_exits_2_with_one_line_and_writes_nothing(tmp_path):
    done = _run(tmp_path=tmp_path)
    assert done.returncode == 2
    assert (done.stdout + done.stderr).strip() == (
        "gpu_check needs a CUDA GPU (torch.cuda.is_available() is False)"
    )
    assert not (tmp_path / "out.json").exists()


def test_an_unknown_part_is_refused_in_one_line(tmp_path, capsys):
    # in this process: the subprocess test above already checks the script as a program
    assert gpu_check.main(["--parts", "1,7", "--json", str(tmp_path / "out.json")]) == 2
    captured = capsys.readouterr()
    lines = (captured.out + captured.err).strip().splitlines()
    assert len(lines) == 1
    assert "7" in lines[0] and "1, 2, 3, 4" in lines[0]
    assert not (tmp_path / "out.json").exists()


def test_parse_parts_keeps_the_order_of_the_script_and_drops_repeats():
    assert gpu_check.parse_parts("3,1") == (1, 3)
    assert gpu_check.parse_parts("1, 3,3") == (1, 3)
    assert gpu_check.parse_parts("all") == (1, 2, 3, 4)


@pytest.mark.parametrize("text", ["5", "1,x", "", "0", "1,,2"])
def test_parse_parts_refuses_what_is_not_a_part(text):
    with pytest.raises(ValueError) as err:
        gpu_check.parse_parts(text)
    assert "\n" not in str(err.value)


def test_agreement_is_each_pairs_relative_difference_in_percent():
    got = gpu_check.agreement({"nvml_counter": 200.0, "nvml_power": 210.0, "nvidia_smi": 190.0})
    assert got["nvml_power vs nvml_counter"] == pytest.approx(5.0)
    assert got["nvidia_smi vs nvml_counter"] == pytest.approx(-5.0)
    assert got["nvidia_smi vs nvml_power"] == pytest.approx((190 - 210) / 210 * 100)
    assert len(got) == 3


def test_agreement_of_a_missing_or_zero_reference_is_none_not_a_guess():
    got = gpu_check.agreement({"nvml_counter": None, "nvml_power": 0.0, "nvidia_smi": 50.0})
    assert got == {
        "nvml_power vs nvml_counter": None,
        "nvidia_smi vs nvml_counter": None,
        "nvidia_smi vs nvml_power": None,
    }


def test_cap_batch_is_predicted_to_fit_under_8_gib_but_not_under_4():
    # 64 images: 1 GiB, 256 images: 2 GiB -> 2/3 GiB fixed + 1/192 GiB per image.
    choice = gpu_check.choose_cap_batch([(64, GIB), (256, 2 * GIB)], total_memory_bytes=80 * GIB)
    assert choice.per_image_bytes == pytest.approx(GIB / 192)
    assert choice.fixed_bytes == pytest.approx(2 * GIB / 3)
    assert choice.batch_size == 958  # floor((sqrt(4 * 8) - 2/3) * 192)
    assert 4 * GIB < choice.predicted_peak_bytes <= choice.target_bytes < 8 * GIB
    assert choice.binding_caps_gib == (4, 8, 16, 32)


def test_cap_batch_names_the_caps_a_smaller_gpu_cannot_enforce():
    choice = gpu_check.choose_cap_batch([(64, GIB), (256, 2 * GIB)], total_memory_bytes=12 * GIB)
    assert choice.binding_caps_gib == (4, 8)


@pytest.mark.parametrize(
    ("probes", "total", "why"),
    [
        ([(64, GIB), (256, 2 * GIB)], 7 * GIB, "8 GiB"),  # the 8 GiB cap cannot bind
        ([(64, GIB), (256, GIB)], 80 * GIB, "grow"),  # memory does not grow with the batch
        ([(64, 6 * GIB), (256, 7 * GIB)], 80 * GIB, "fixed"),  # no room for one image
        ([(64, GIB)], 80 * GIB, "two"),
    ],
)
def test_cap_batch_refuses_what_cannot_show_the_caps(probes, total, why):
    with pytest.raises(ValueError, match=why):
        gpu_check.choose_cap_batch(probes, total_memory_bytes=total)
