"""What the terminal shows: the study's live progress and summary, the training bar, tables."""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from wattwise.cli.progress import StudyProgress, TrainBar
from wattwise.cli.render import results_table, study_summary_table, trial_line
from wattwise.config import StudyConfig
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.summary import Highlight, StudySummary
from wattwise.experiment.sweep import run_study


def _console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=200, force_terminal=False), out


def _text(renderable: Any) -> str:
    console, out = _console()
    console.print(renderable)
    return out.getvalue()


def test_a_sweep_prints_its_plan_a_line_per_trial_and_the_summary(tmp_path):
    config = StudyConfig(
        name="sweep",
        output_dir=str(tmp_path),
        width=0.25,
        batch_sizes=[64],
        learning_rates=[0.05, 0.1],
        epochs=[1],
        train={"hflip": False, "augment": False, "num_threads": 1},
        measurement={"inference_s": 0},  # no inference protocol: seconds
    )
    console, out = _console()
    with StudyProgress(console) as reporter:
        run_study(config, reporter=reporter)
    text = out.getvalue()
    assert "study sweep: 2 trials, 0 finished earlier, 2 to run (local executor)" in text
    lines = [line for line in text.splitlines() if line.startswith("ok ")]
    assert len(lines) == 2 and "1/2 digits small_cnn baseline bs64 lr0.05 ep1 seed0" in lines[0]
    for row in ("best accuracy", "lowest training energy", "results.sqlite", "study.yaml"):
        assert row in text
    assert reporter.live is None  # stopped


def test_the_live_display_stops_when_the_study_fails():
    console, _ = _console()
    with pytest.raises(RuntimeError), StudyProgress(console) as reporter:
        reporter.on_study_start("s", 2, 0, "local")
        raise RuntimeError("boom")
    assert reporter.live is None


def test_trial_line_and_results_table_show_markup_in_reasons_as_text():
    spec = {"dataset": "digits", "model": "small_cnn", "technique": "baseline", "lr": 0.01}
    failed = TrialRecord(
        trial_id="0123456789abcdef", spec=spec, status="failed", reason="[bold]x[/bold] broke"
    )
    ok = TrialRecord(
        trial_id="fedcba9876543210",
        spec=spec,
        status="ok",
        accuracy=0.5,
        train_energy_j=12.0,
        train_energy_provenance="estimated",
    )
    view = results_table([failed, ok], title="t")
    table = _printed(200, view.table, lines=view.legend)
    assert "t (2 trials)" in table and "[bold]x[/bold] broke" in table and "50.00%" in table
    assert "12.000 J" in table and "energy: estimated" in table
    assert _text(trial_line(failed, 1, 2)).startswith("failed 1/2 digits small_cnn baseline")
    assert "[bold]x[/bold] broke" in _text(trial_line(failed, 1, 2))
    line = _text(trial_line(ok, 2, 2))
    assert line.startswith("ok     2/2") and "acc 50.00%" in line and "train 12 J" in line


def test_the_summary_table_names_counts_highlights_and_paths(tmp_path: Path):
    summary = StudySummary(
        study="s",
        search="grid",
        study_dir=tmp_path,
        store_path=tmp_path / "results.sqlite",
        config_path=tmp_path / "study.yaml",
        total=4,
        ok=2,
        failed=1,
        running=1,
        left=1,
        skipped=0,
        ran=3,
        duration_s=1.5,
        best_accuracy=Highlight("abc", "digits small_cnn", 0.9),
        lowest_train_energy=Highlight("def", "digits small_cnn", 1500.0, "estimated"),
        interrupted=True,
        energy_j=14.477,
        co2e_g=0.000532,
    )
    text = _text(study_summary_table(summary))
    assert "study s (interrupted)" in text and "left to run (resume)" in text
    assert "90.00%" in text and "1.500 kJ (estimated)" in text and "results.sqlite" in text
    assert "14.477 J, CO2e 0.532 mg" in text  # CO2e in the unit of its size, not 0.000532 g


def test_the_training_bar_opens_and_closes_once_per_epoch():
    console, _ = _console()
    bar = TrainBar(console)
    for epoch in (1, 2):
        bar.on_epoch_start(epoch, 2, 10)
        assert bar.progress is not None and bar.progress.live.is_started
        bar.on_batch(5, 0.25)
        task = bar.progress.tasks[0]
        assert (task.completed, task.fields["loss"]) == (5, "0.2500")
        bar.on_epoch_end(epoch)
        assert bar.progress is None
    bar.on_batch(1, 0.1)  # between epochs: ignored


# --- tables at 80 columns -----------------------------------------------------------------------

#: Techniques as long as a study's recipes get (69 and 61 characters).
LONG = "distill:resnet50,prune:structured:0.5:importance=taylor,quantize:int8"
LONGER_STEPS = "prune:structured:0.5:importance=taylor:steps=3,quantize:int8"
REASON = "CUDA out of memory while fine-tuning after pruning (tried to allocate 2.00 GiB)"


def _trials() -> list[TrialRecord]:
    def spec(technique: str, seed: int, lr: float) -> dict[str, Any]:
        return {
            "dataset": "digits",
            "model": "resnet18",
            "technique": technique,
            "batch_size": 64,
            "lr": lr,
            "epochs": 5,
            "seed": seed,
        }

    return [
        TrialRecord(
            "0123456789abcdef",
            spec=spec("baseline", 0, 0.05),
            accuracy=0.9523,
            train_energy_j=12345.6,
            train_energy_provenance="estimated",
            inference_energy_per_image_j=0.000123,
            inference_energy_provenance="estimated",
        ),
        TrialRecord(
            "1123456789abcdef",
            spec=spec(LONG, 1, 0.1),
            accuracy=0.9401,
            train_energy_j=2345.6,
            train_energy_provenance="estimated",
            inference_energy_per_image_j=4.56e-05,
            inference_energy_provenance="estimated",
        ),
        TrialRecord(
            "2123456789abcdef", spec=spec(LONGER_STEPS, 0, 0.1), status="failed", reason=REASON
        ),
        TrialRecord("3123456789abcdef", spec=spec("quantize:int8", 1, 0.05), status="running"),
    ]


def _printed(width: int, *renderables: Any, lines: Sequence[str] = ()) -> str:
    """What a ``width``-column terminal shows (``lines`` printed as the commands print them)."""
    console = Console(width=width, record=True, file=io.StringIO())
    for renderable in renderables:
        console.print(renderable)
    for line in lines:
        console.print(line, soft_wrap=True, highlight=False, markup=False)
    return console.export_text()


def _assert_fits(text: str, width: int) -> None:
    assert "…" not in text, text
    assert max(len(line) for line in text.splitlines()) <= width, text


def test_the_results_table_reads_at_80_columns_with_short_labels_and_a_legend():
    view = results_table(_trials(), title="s", width=80)
    table = _printed(80, view.table)
    _assert_fits(table, 80)
    header = next(line for line in table.splitlines() if "id" in line and "status" in line)
    for name in ("id", "technique", "seed", "accuracy", "mJ/image", "status"):
        assert name in header, header
    for whole in ("0123456789abcdef", "3123456789abcdef", "95.23%", "94.01%", "0.123", "0.0456"):
        assert whole in table, whole
    assert " T1 " in table and " T2 " in table and " baseline " in table
    assert "quantize:int8" in table  # short enough to stay as it is
    legend = _printed(80, lines=view.legend)
    assert f"T1 = {LONG}" in legend and f"T2 = {LONGER_STEPS}" in legend  # whole, one line
    assert f"failed 2123456789abcdef: {REASON}" in legend
    assert "same in every trial: dataset digits, model resnet18" in legend
    assert "energy: estimated" in legend


def test_a_wider_terminal_shows_more_columns_and_whole_techniques():
    narrow = results_table(_trials(), width=80)
    wide = results_table(_trials(), width=200)
    text = _printed(200, wide.table)
    _assert_fits(text, 200)
    assert len(wide.table.columns) > len(narrow.table.columns)
    for name in ("dataset", "model", "lr", "train energy"):
        assert name in text
    assert LONG in text and "12.346 kJ" in text
    assert not any(line.startswith("T1 = ") for line in wide.legend)


def test_the_columns_choice_shows_those_columns_in_that_order():
    view = results_table(_trials(), width=80, columns=("lr", "id", "train_energy"))
    assert [c.header for c in view.table.columns] == ["lr", "id", "train energy"]
    assert not any("same in every trial" in line for line in view.legend)
    with pytest.raises(ValueError, match="unknown column 'colour'"):
        results_table(_trials(), columns=("id", "colour"))


def _variants() -> tuple[list[Any], list[Any]]:
    from wattwise.optimize.comparison import Ratio, VariantStats
    from wattwise.optimize.variants import VariantResult

    def stats(j: float) -> VariantStats:
        return VariantStats(
            "v", (), j, 12345.6, 12.34, 15.67, 0.031, 0.02, "estimated", 0.0, False, ()
        )

    def ratio(s: float) -> Ratio:
        return Ratio(
            "v",
            "baseline",
            s,
            s * 0.9,
            s * 1.1,
            1.5,
            1.4,
            1.6,
            10,
            0.95,
            "bca",
            True,
            f"{s:.2f}x less",
        )

    big = (25_557_032, 4_111_514_624, 102_523_238)
    small = (6_400_000, 939_800_000, 25_600_000)
    variants = [
        VariantResult("baseline", "baseline", 0.9523, *big, "", stats(0.0123)),
        VariantResult(
            LONGER_STEPS.split(",")[0],
            "prune",
            0.9401,
            *small,
            "",
            stats(0.00523),
            ratio(2.31),
            ratio(2.05),
            "fp32 compiled",
            None,
            1234.0,
            1_541_123.0,
            1_100_000.0,
            None,
        ),
        VariantResult(
            "quantize:int8",
            "prune+int8",
            0.9390,
            *small,
            "",
            stats(0.00223),
            ratio(5.31),
            ratio(4.05),
            "fp32 compiled",
            None,
            1234.0,
            15_411_123.0,
            11_100_000.0,
            21_000_000.0,
            rank=1,
        ),
    ]
    references = [
        VariantResult(
            "fp32 compiled", "baseline", 0.9523, *big, "", stats(0.0113), ratio(1.1), reference=True
        )
    ]
    return variants, references


def test_the_optimize_tables_show_every_number_whole_at_80_columns():
    from wattwise.cli.render import variants_table

    text = _printed(80, variants_table(*_variants()))
    _assert_fits(text, 80)
    for whole in (
        "95.23%",
        "25,557,032",
        "6,400,000",
        "940M",
        "4.11G",
        "97.8 MiB",
        "12.3",
        "12,346",
        "15.7",
        "2.31x 2.08-2.54",
        "1.54M 1.1M-never",
        "15.4M 11.1M-21M",
    ):
        assert whole in text, whole


def test_the_train_tables_show_every_number_whole_at_80_columns():
    from types import SimpleNamespace

    from wattwise.cli.render import epoch_table, measurement_table
    from wattwise.energy.base import ComponentEnergy, Measurement, Provenance

    epoch = SimpleNamespace(
        epoch=120,
        train_loss=1.23456,
        train_accuracy=1.0,
        val_accuracy=0.95,
        lr=0.000123,
        duration_s=9999.9,
        energy_j=999_999.0,
        energy_provenance="unavailable",
        peak_rss_bytes=1023 * 2**20,
    )
    narrow = _printed(80, epoch_table([epoch], width=80))
    _assert_fits(narrow, 80)
    for whole in (
        "120",
        "1.2346",
        "100.00%",
        "95.00%",
        "0.000123",
        "9999.9 s",
        "999.999 kJ",
        "unavailable",
    ):
        assert whole in narrow, whole
    wide = _printed(120, epoch_table([epoch], width=120))
    assert "peak RSS" in wide and "1023.0 MiB" in wide and "peak RSS" not in narrow
    m = Measurement(
        name="train",
        start_unix_s=0.0,
        duration_s=12345.6,
        components=(
            ComponentEnergy(
                "cpu:0", 1234567.0, Provenance.measured("rapl", "package"), 123.45, 234.56
            ),
            ComponentEnergy(
                "cpu:0/core",
                634567.0,
                Provenance.measured("rapl", "core"),
                63.45,
                134.56,
                nested_in="cpu:0",
            ),
            ComponentEnergy("dram", 1000.0, Provenance.estimated("dram-rss", "0.375 W per GiB")),
        ),
        peak_rss_bytes=1023 * 2**20,
    )
    text = _printed(80, measurement_table(m))
    _assert_fits(text, 80)
    for whole in ("1234.567 kJ", "634.567 kJ", "123.45 W", "234.56 W", "estimated:dram-rss"):
        assert whole in text, whole


def test_the_devices_table_keeps_paths_labels_and_names_whole_at_80_columns():
    from wattwise.cli.render import devices_notes, devices_table

    path = "/sys/class/powercap/intel-rapl:0"
    info = {
        "meters": [
            {"meter": "rapl", "available": False, "provenance": "measured:rapl",
             "components": [], "detail": f"no powercap interface at {path}"},
            {"meter": "dram-estimate", "available": True, "provenance": "estimated:dram-rss",
             "components": ["dram"], "detail": "0.375 W per GiB x resident memory of the "
             "process tree, integrated over time (no DRAM counter here)"},
        ]
    }  # fmt: skip
    text = _printed(80, devices_table(info), *devices_notes(info))
    _assert_fits(text, 80)
    assert path in text  # the path is not broken mid-word
    assert "estimated:dram-rss" in text and "unavailable" in text and "dram-estimate" in text
