"""Plots: data NamedTuples with known numbers, and files rendered from a small store."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib
import pytest
from matplotlib.figure import Figure

from tests.analysis.analysis_fixtures import grid_records, make_record, write_store
from wattwise.analysis import plots
from wattwise.analysis.metrics import analyze
from wattwise.experiment import MemoryCap, ResultsStore
from wattwise.train.config import GPU_MEMORY_CAPACITIES_GIB

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Every plot of a small store (read back through ResultsStore), PNG and SVG."""
    folder = tmp_path_factory.mktemp("plots")
    path = write_store(folder / "results.sqlite", grid_records()[::3])
    with ResultsStore(path) as store:
        records = store.records()
    return plots.save_all(records, folder / "plots")


def test_save_all_writes_every_plot_as_png_and_svg(saved: list[Path]) -> None:
    names = [spec.name for spec in plots.PLOTS]
    assert [p.name for p in saved] == [f"{n}.{ext}" for n in names for ext in ("png", "svg")]
    for path in saved:
        data = path.read_bytes()
        assert len(data) > 1000, path
        if path.suffix == ".png":
            assert data.startswith(PNG_SIGNATURE), path
        else:
            root = ET.fromstring(data)  # well-formed XML
            assert root.tag.endswith("svg"), path


def test_plots_leave_the_matplotlib_backend_alone() -> None:
    backend = matplotlib.get_backend()
    fig = plots.render_pareto(plots.pareto_data(grid_records()))
    assert isinstance(fig, Figure)
    assert matplotlib.get_backend() == backend
    modules = sorted(Path(plots.__file__).parent.glob("*.py"))
    assert len(modules) == 8  # __init__, _common and one module per plot
    for module in modules:
        source = module.read_text(encoding="utf-8")
        assert not re.search(r"^\s*(import matplotlib\.pyplot|from matplotlib import pyplot)",
                             source, re.M), module  # fmt: skip


def test_pareto_data_points_and_front() -> None:
    records = [
        make_record("base", accuracy=0.95, train_energy_j=2000.0, j_per_image=0.002),
        make_record("cheap", technique="quantize:int8", accuracy=0.90, train_energy_j=1000.0,
                    j_per_image=0.001),
        make_record("worse", technique="prune:structured:0.5", accuracy=0.85,
                    train_energy_j=3000.0, j_per_image=0.003),
        make_record("gone", status="failed", reason="boom"),
    ]  # fmt: skip
    data = plots.pareto_data(records, by="train")
    assert [p.series for p in data.points] == ["baseline", "quantize:int8", "prune:structured:0.5"]
    assert [p.energy for p in data.points] == pytest.approx([2.0, 1.0, 3.0])  # kJ
    assert data.fronts == ((1, 0),)  # cheap, then base; "worse" is dominated
    inference = plots.pareto_data(records, by="inference")
    assert [p.energy for p in inference.points] == pytest.approx([2.0, 1.0, 3.0])  # mJ/image
    assert plots.pareto_data([]).message is not None
    # from the analysis computed once, the same points and the analysis' own fronts
    analysis = analyze(records)
    assert plots.pareto_data(analysis, by="train") == data
    assert [data.points[i].label for i in data.fronts[0]] == list(analysis.front_labels("train"))
    with pytest.raises(ValueError):
        plots.pareto_data(records, by="flops")


def test_history_data_accumulates_energy_per_epoch() -> None:
    records = [make_record(f"s{s}", seed=s, epochs=3, train_energy_j=300.0 * (s + 1))
               for s in range(2)]  # fmt: skip
    data = plots.history_data(records)
    assert data.accuracy_key == "val_accuracy"
    (series,) = data.series
    assert series.epochs == (1, 2, 3)
    # seed 0: 100 J per epoch, seed 1: 200 J per epoch; mean cumulative in J, shown in J
    assert series.cumulative_energy_j == pytest.approx((150.0, 300.0, 450.0))
    assert data.unit.symbol == "J"
    assert plots.history_data([make_record("x", history=())]).message is not None


def test_hyperparameter_data_means_with_ci() -> None:
    records = [
        make_record(f"b{bs}-{s}", batch_size=bs, seed=s, train_energy_j=e)
        for bs, energies in ((32, (900.0, 1000.0, 1100.0)), (64, (500.0, 500.0, 500.0)))
        for s, e in enumerate(energies)
    ]
    data = plots.hyperparameter_data(records, "batch_size")
    (line,) = data.lines
    assert line.x == (32.0, 64.0)
    mean, _low, high = line.energy_j[0]
    assert mean == pytest.approx(1000.0) and data.unit.symbol == "kJ"  # the axis: 0.5-1.25 kJ
    assert high - mean == pytest.approx(4.302653 * 100 / 3**0.5)  # t(0.975, 2) x sd / √n
    assert line.energy_j[1] == pytest.approx((500.0, 500.0, 500.0))
    assert line.n == (3, 3)
    assert plots.hyperparameter_data(records, "lr").message is not None  # a single lr
    with pytest.raises(ValueError):
        plots.hyperparameter_data(records, "epochs")


def test_efficiency_data_per_technique() -> None:
    records = [make_record(f"q{s}", technique="quantize:int8", seed=s, accuracy=0.9,
                           train_energy_j=e) for s, e in enumerate((900.0, 1800.0))]  # fmt: skip
    data = plots.efficiency_data(records)
    assert data.labels == ("quantize:int8",)
    assert data.means[0] == pytest.approx((1.0 + 0.5) / 2)  # accuracy per kJ
    assert data.n == (2,)


def test_timeline_missing_is_said_clearly() -> None:
    data = plots.timeline_data(grid_records()[:2])
    assert data.message is not None and data.message.startswith("no timeline recorded")
    assert isinstance(plots.render_timeline(data), Figure)


def test_timeline_recorded_in_a_phase_is_drawn() -> None:
    record = make_record("t")
    phases = dict(record.phases)
    phases["train"] = dict(phases["train"]) | {
        "timeline": [{"t_s": 0.1 * i, "power_w": {"cpu": 20.0 + i, "dram": 2.0}} for i in range(5)]
    }
    data = plots.timeline_data([make_record("t", phases=phases)])
    assert data.message is None and data.phase == "train"
    assert data.t_s == pytest.approx((0.0, 0.1, 0.2, 0.3, 0.4))
    assert data.power_w["cpu"] == pytest.approx((20.0, 21.0, 22.0, 23.0, 24.0))


def test_memory_data_on_cpu_says_the_cap_was_not_enforced() -> None:
    record = make_record("m", peak_rss_bytes=3 * 2**30)
    data = plots.memory_data([record])
    (bar,) = data.bars
    assert bar.peak_gib == pytest.approx(3.0) and bar.source == "RSS"
    assert data.capacities_gib == GPU_MEMORY_CAPACITIES_GIB == (4, 8, 16, 32)
    assert data.note is not None and "not enforced on CPU" in data.note
    capped = {**record.spec, "gpu_memory_gib": 4.0}
    gpu = make_record("g", peak_cuda_allocated_bytes=5 * 2**30, spec=capped,
                      memory_cap=MemoryCap(4.0, True, "allocator fraction"))  # fmt: skip
    (gpu_bar,) = plots.memory_data([gpu]).bars
    assert gpu_bar.source == "CUDA allocated" and gpu_bar.cap_gib == 4.0 and gpu_bar.enforced
    assert isinstance(plots.render_memory(plots.memory_data([record, gpu])), Figure)


def test_each_plot_is_rendered_once_and_written_as_rendered(tmp_path: Path) -> None:
    analysis = analyze(grid_records()[::6])
    rendered = plots.render_plots(analysis, formats=("png",))
    assert [p.name for p in rendered] == [spec.name for spec in plots.PLOTS]
    paths = plots.write_plots(rendered, tmp_path)
    assert [p.read_bytes() for p in paths] == [p.files["png"] for p in rendered]
    again = plots.render_plots(analysis, formats=("png",))
    assert [p.files for p in again] == [p.files for p in rendered]  # no date: same bytes


def test_empty_study_renders_message_figures(tmp_path: Path) -> None:
    paths = plots.save_all([], tmp_path, formats=("png",))
    assert len(paths) == len(plots.PLOTS)
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in paths)
