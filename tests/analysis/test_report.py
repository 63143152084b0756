"""The report: HTML + Markdown from stores with failed trials, estimated-only or measured energy;
escaping of every user string; CO2e from the study's carbon settings; the store is only read
(also one written by the previous version); the ``wattwise report`` command."""

from __future__ import annotations

import argparse
import base64
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.analysis.analysis_fixtures import (
    TDP_DETAIL,
    XSS_REASON,
    XSS_STUDY,
    grid_records,
    make_record,
    write_store,
    write_study,
)
from wattwise import cli
from wattwise.analysis.plots import PLOTS
from wattwise.analysis.report import (
    ReportError,
    StudyData,
    build_report,
    energy_provenance,
    find_store,
    load_study,
    render_html,
    render_markdown,
    report_data,
)
from wattwise.cli import report as cli_report
from wattwise.energy.carbon import CarbonConfig

#: The previous version's store (schema 1), shared with tests/experiment/test_store.py.
SCHEMA_1_DUMP = Path(__file__).parent / "data" / "results_v1.sql"


@pytest.fixture(scope="module")
def html(estimated_report: Any) -> str:
    return Path(estimated_report.html).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def markdown(estimated_report: Any) -> str:
    return Path(estimated_report.markdown).read_text(encoding="utf-8")


def test_report_files(estimated_report: Any, estimated_study: Path) -> None:
    assert estimated_report.out_dir == estimated_study / "report"
    assert estimated_report.html.name == "report.html" and estimated_report.html.stat().st_size
    assert estimated_report.markdown.name == "report.md"
    assert len(estimated_report.plots) == 2 * len(PLOTS)
    assert all(p.parent == estimated_study / "report" / "plots" for p in estimated_report.plots)


def test_html_is_self_contained(html: str) -> None:
    assert html.count("data:image/png;base64,") == len(PLOTS)  # plots embedded
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)  # nothing fetched
    assert "<link" not in html
    assert 'document.body.dataset.ready = "1"' in html
    assert html.count('class="sortable"') >= 5


def test_estimated_only_energy_is_said_prominently(html: str, markdown: str) -> None:
    banner = re.search(r'<div class="banner (\w+)" id="provenance-banner">(.*?)</div>', html, re.S)
    assert banner is not None and banner.group(1) == "estimated"
    assert "ESTIMATE" in banner.group(2) and "no hardware energy counter" in banner.group(2)
    # where each number came from, with the estimate's inputs
    assert "CPU energy is an estimate (estimated:tdp): " + TDP_DETAIL.replace("'", "&#39;") in html
    assert "no RAPL counter was used on this machine" in html
    assert "DRAM energy is an estimate (estimated:dram-rss)" in html
    assert "GPU energy was not measured: NVML: no NVIDIA driver" in html
    assert "**Energy provenance: estimated.**" in markdown and "ESTIMATE" in markdown
    assert "CPU energy is an estimate (estimated:tdp)" in markdown


def test_failed_trials_are_listed_and_excluded(html: str, markdown: str) -> None:
    section = html[html.index('id="failed"') :]
    assert "oom-1" in section and "out of memory at batch 512" in section
    assert "xss-1" in section
    assert "<b>36</b> ok, <b>2</b> failed" in html
    assert "## Failed trials (excluded from the statistics)" in markdown
    assert "out of memory at batch 512" in markdown


def test_statistics_use_ok_trials_only(estimated_study: Path) -> None:
    data = report_data(load_study(estimated_study))
    assert len(data.trials) == 36 and {t.status for t in data.trials} == {"ok"}
    assert [r.trial_id for r in data.failed] == ["oom-1", "xss-1"]
    assert data.statistics.energy_model.n == 36
    assert sum(v.n for v in data.variants) == 36
    # one optimization step per pruned/quantized trial (the trivial baseline steps are left out)
    assert len(data.paybacks) == 24 and {p.step for p in data.paybacks} == {
        "prune:structured:0.5", "quantize:int8",
    }  # fmt: skip
    quantized = next(p for p in data.paybacks if p.step == "quantize:int8")
    assert quantized.payback_inferences == pytest.approx(40.0 / (0.002 - 0.0008))


def test_every_user_string_is_escaped(html: str, markdown: str) -> None:
    assert html.count("<script") == 1  # the report's own sorting script, nothing else
    assert XSS_STUDY not in html and XSS_REASON not in html and "<b>evil</b>" not in html
    assert "xss&lt;script&gt;alert(&#39;study&#39;)&lt;/script&gt;" in html
    assert "&lt;script&gt;alert(&#39;reason&#39;)&lt;/script&gt; diverged" in html
    assert "&lt;b&gt;evil&lt;/b&gt;" in html
    assert "<script" not in markdown and "<b>" not in markdown
    assert "&lt;script>alert('reason')&lt;/script> diverged" in markdown


def test_recommendation_and_caveat(html: str, markdown: str) -> None:
    assert "rewards useless tiny models" in html and "rewards useless tiny models" in markdown
    assert "Ranked by inference energy per image (J/image)" in html
    assert "Ranked by training energy (J)" in html
    assert "use digits · small_cnn · prune:structured:0.5" in markdown  # within 1 point
    assert "below floor" in html  # quantize:int8 is 5 points down: flagged


def test_units_in_tables(html: str) -> None:
    for header in ("training energy (kJ)", "technique energy (kJ)", "measurement energy (kJ)",
                   "total energy (kJ)", "accuracy per kJ of training + technique (1/kJ)",
                   "inference energy (J/image)", "accuracy per J/image (image/J)",
                   "energy per correct prediction (J)", "CO2e training (g)", "CO2e technique (g)",
                   "CO2e per trial (g)", "saving vs eager baseline", "saving vs best fp32",
                   "95 % CI (%, Wilson)"):  # fmt: skip
        assert f"<th>{header}</th>" in html
    assert "1,000 images" not in html  # it equalled accuracy per J/image: one name per quantity


def test_provenance_status_measured_and_mixed() -> None:
    measured = [make_record(f"m{i}", measured=True, seed=i) for i in range(2)]
    assert energy_provenance(measured).status == "measured"
    mixed = [*measured, make_record("e", technique="quantize:int8")]
    summary = energy_provenance(mixed)
    assert summary.status == "mixed" and "ESTIMATED" in summary.headline
    assert energy_provenance([]).status == "unavailable"


def test_empty_and_tiny_studies_render() -> None:
    empty = report_data(StudyData(Path("results.sqlite"), "empty", ()))
    page = render_html(empty)
    assert "No energy was recorded" in page and "not enough data" in page
    assert "No finished trial to recommend from" in page
    running = make_record("r", status="running")
    tiny = report_data(StudyData(Path("x.sqlite"), "tiny", (make_record("a"), running)))
    assert "1 trial(s) still marked running" in render_html(tiny)
    assert "no setting varies: nothing to explain energy with" in render_markdown(tiny)


# --- finding the store --------------------------------------------------------------------------


def test_find_store_accepts_the_folder_or_the_file(estimated_study: Path) -> None:
    assert find_store(estimated_study) == estimated_study / "results.sqlite"
    assert find_store(estimated_study / "results.sqlite") == estimated_study / "results.sqlite"


def test_find_store_refuses_what_is_not_a_store(tmp_path: Path) -> None:
    with pytest.raises(ReportError, match="no such study folder"):
        find_store(tmp_path / "missing")
    with pytest.raises(ReportError, match=r"holds no results\.sqlite"):
        find_store(tmp_path)
    (tmp_path / "notes.sqlite").write_text("hello")
    with pytest.raises(ReportError, match="not a SQLite file"):
        find_store(tmp_path / "notes.sqlite")
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE t (x)")
    conn.close()
    with pytest.raises(ReportError, match="no trials table"):
        find_store(other)
    with sqlite3.connect(other) as conn:  # untouched: no tables were added
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    conn.close()
    assert names == {"t"}


# --- the command line ---------------------------------------------------------------------------


def test_cli_report_on_a_measured_store(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    records = [r for r in grid_records(measured=True) if r.spec["lr"] == 0.01][::2]
    write_store(tmp_path / "study" / "results.sqlite", records)
    opened: list[str] = []
    monkeypatch.setattr("webbrowser.open", lambda url: opened.append(url) or True)
    code = cli.main(["report", str(tmp_path / "study"), "--floor", "2", "--open"])
    out = capsys.readouterr().out
    report = tmp_path / "study" / "report"
    assert code == 0
    assert f"report: {report / 'report.html'}" in out and f"summary: {report / 'report.md'}" in out
    assert opened == [(report / "report.html").resolve().as_uri()]
    page = (report / "report.html").read_text(encoding="utf-8")
    assert '<div class="banner measured" id="provenance-banner">' in page
    assert "CPU energy was measured (measured:rapl)" in page
    assert "floor: 2 accuracy point(s)" in page


def test_cli_errors_are_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wattwise: error: ") and err.count("\n") == 1 and "nope" in err
    (tmp_path / "bad.sqlite").write_bytes(b"\x00" * 64)
    assert cli.main(["report", str(tmp_path / "bad.sqlite")]) == 2
    assert "not a wattwise results store" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["report", str(tmp_path), "--floor", "-1"])
    assert exc.value.code == 2
    assert "--floor must be a number >= 0" in capsys.readouterr().err


def test_register_adds_the_report_command() -> None:
    parser = argparse.ArgumentParser(prog="wattwise")
    cli_report.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["report", "results/s", "--out", "o", "--floor", "0.5", "--by",
                              "train", "--open"])  # fmt: skip
    assert (args.study, args.out, args.floor, args.by, args.open) == (
        "results/s", "o", 0.5, "train", True,
    )  # fmt: skip
    assert args.func is cli_report.cmd_report


def snapshot(folder: Path) -> tuple[bytes, int, list[str]]:
    """The store's bytes and mtime and the study folder's listing (``report/`` left out)."""
    store = folder / "results.sqlite"
    names = sorted(n for n in os.listdir(folder) if n != "report")
    return store.read_bytes(), store.stat().st_mtime_ns, names


def test_the_store_is_only_read(tmp_path: Path) -> None:
    """On a store of the previous version, which an open for writing would migrate: not a byte,
    not its mtime, no -wal/-shm file changes; and the report reads its old records."""
    folder = tmp_path / "legacy"
    folder.mkdir()
    conn = sqlite3.connect(folder / "results.sqlite")
    conn.executescript(SCHEMA_1_DUMP.read_text(encoding="utf-8"))
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    before = snapshot(folder)
    assert before[2] == ["results.sqlite"]
    paths = build_report(folder)
    assert snapshot(folder) == before
    html = paths.html.read_text(encoding="utf-8")
    assert "<b>2</b> ok, <b>1</b> failed" in html and "out of memory at batch 512" in html
    data = report_data(load_study(folder))
    (quantized,) = data.paybacks
    assert quantized.payback_inferences == pytest.approx(40.0 / (0.002 - 0.0008))
    assert snapshot(folder) == before


def test_a_second_report_leaves_the_store_as_it_was(estimated_study: Path, tmp_path: Path) -> None:
    before = snapshot(estimated_study)
    build_report(estimated_study, tmp_path / "again")
    assert snapshot(estimated_study) == before


def test_plots_are_written_and_embedded_from_the_same_bytes(estimated_report: Any) -> None:
    html = Path(estimated_report.html).read_text(encoding="utf-8")
    embedded = dict(re.findall(r'<figure id="plot-(\w+)"><img alt="[^"]*" '
                               r'src="data:image/png;base64,([^"]+)"', html))  # fmt: skip
    assert list(embedded) == [spec.name for spec in PLOTS]
    for name, data in embedded.items():
        file = estimated_report.out_dir / "plots" / f"{name}.png"
        assert base64.b64decode(data) == file.read_bytes(), name


def test_the_views_share_one_pareto_front(estimated_study: Path) -> None:
    data = report_data(load_study(estimated_study))
    assert data.variants is data.analysis.variants and data.trials is data.analysis.trials
    from wattwise.analysis.plots import pareto_data

    for by in ("train", "inference"):
        plot = pareto_data(data.analysis, by=by)
        on_plot = [plot.points[i].label for front in plot.fronts for i in front]
        assert on_plot == list(data.pareto[by]) and on_plot


def test_co2e_uses_the_carbon_settings_of_study_yaml(tmp_path: Path) -> None:
    records = [make_record("a", train_energy_j=3600.0, j_per_image=0.002)]
    yaml_text = "name: carbon\nmeasurement:\n  country: fra\n  pue: 1.5\n"
    folder = write_study(tmp_path / "fra", records, study="carbon", study_yaml=yaml_text)
    study = load_study(folder)
    assert study.carbon == CarbonConfig(country="FRA", pue=1.5)
    data = report_data(study)
    (trial,) = data.trials
    assert trial.co2e_g == pytest.approx(3600.0 / 3.6e6 * 55 * 1.5)  # 1 Wh x 55 g/kWh x 1.5
    assert "55 g CO2e/kWh" in data.carbon_note and "PUE 1.5" in data.carbon_note
    assert str(folder / "study.yaml") in data.carbon_note
    page = render_html(data)
    assert "55 g CO2e/kWh" in page and "55 g CO2e/kWh" in render_markdown(data)
    given = "measurement:\n  carbon_intensity_g_per_kwh: 100\n  country: FRA\n"
    folder = write_study(tmp_path / "given", records, study="carbon", study_yaml=given)
    (trial,) = report_data(load_study(folder)).trials
    assert trial.co2e_g == pytest.approx(0.001 * 100)  # the intensity overrides the country


def test_without_study_yaml_the_default_carbon_settings_are_said(tmp_path: Path) -> None:
    folder = write_study(tmp_path / "plain", [make_record("a")], study="plain")
    study = load_study(folder)
    assert study.carbon == CarbonConfig()
    data = report_data(study)
    assert "480 g CO2e/kWh (default: world average" in data.carbon_note
    assert f"no study.yaml in {folder}: default carbon settings" in data.carbon_note
    assert "default carbon settings" in render_html(data)


def test_invalid_carbon_settings_are_one_line(tmp_path: Path) -> None:
    bad = "measurement:\n  pue: 0.5\n"
    folder = write_study(tmp_path / "bad", [make_record("a")], study="bad", study_yaml=bad)
    with pytest.raises(ReportError, match=r"study\.yaml: measurement: .*pue") as err:
        load_study(folder)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_a_study_in_a_read_only_folder_is_reported(estimated_study: Path, tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    shutil.copytree(estimated_study, folder, ignore=shutil.ignore_patterns("report"))
    folder.chmod(0o555)
    try:
        assert build_report(folder, tmp_path / "out").html.is_file()
    finally:
        folder.chmod(0o755)


def test_importing_the_package_is_cheap() -> None:
    code = (
        "import sys, wattwise.analysis as a; "
        "heavy = [m for m in ('scipy', 'statsmodels', 'matplotlib', 'jinja2') "
        "if m in sys.modules]; assert not heavy, heavy; assert callable(a.build_report)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_the_headline_states_the_saving_accuracy_payback_and_noise() -> None:
    """The best recipe's saving with its interval, its accuracy change with its interval, its
    payback, and the noisy flag with its reasons: in the HTML headline and the Markdown."""
    import dataclasses

    from tests.analysis.analysis_fixtures import variant

    big = {"details": {"dataset": {"num_classes": 10, "test_images": 10_000}}}
    int8 = dataclasses.replace(
        variant("quantize:int8", 0.948, 0.001, optimization_energy_j=40.0), saving=2.0,
        saving_low=1.9, saving_high=2.1, saving_significant=True, noisy=True,
        noise=("external CPU 45 % of a core during round 3",),
        verdict="2x less J/image (1.9 to 2.1, 95 %)",
    )  # fmt: skip
    records = (
        make_record("base", accuracy=0.95, **big),
        make_record("q", technique="quantize:int8", accuracy=0.948, j_per_image=0.001, **big,
                    variants=(variant("baseline", 0.95, 0.002), int8), noisy=True,
                    noise=("external CPU 45 % of a core during round 3",)),
    )  # fmt: skip
    data = report_data(StudyData(Path("x.sqlite"), "noisy", records))
    (line,) = data.headline
    assert "best recipe quantize:int8 — 2x less J/image (1.9 to 2.1, 95 %)" in line
    assert "accuracy -0.20 points (" in line and "Pays back after 4e+04 inferences" in line
    assert data.noisy and "external CPU 45 % of a core during round 3" in data.noisy[0]
    page = render_html(data)
    head = page[page.index('<section id="headline"') : page.index("</section>")]
    assert "2x less J/image (1.9 to 2.1, 95 %)" in head
    assert 'id="noisy-warning"' in head and "WARNING: noisy measurements" in head
    assert "external CPU 45 % of a core during round 3" in head
    md = render_markdown(data)
    assert "**WARNING: noisy measurements.**" in md and "2x less J/image (1.9 to 2.1" in md
    assert "NOISY measurements" in data.recommendations["inference"][0].message


def test_the_variants_table_shows_each_variants_rank_with_ties() -> None:
    import dataclasses

    from tests.analysis.analysis_fixtures import variant

    ranked = (
        dataclasses.replace(variant("baseline", 0.95, 0.002), rank=4),
        dataclasses.replace(variant("quantize:int8", 0.95, 0.001), rank=1),
        dataclasses.replace(variant("prune:structured:0.5", 0.95, 0.001), rank=1),
        dataclasses.replace(variant("prune:structured:0.2", 0.95, 0.0015), rank=3),
    )
    records = (make_record("q", technique="quantize:int8", variants=ranked),)
    data = report_data(StudyData(Path("x.sqlite"), "ranks", records))
    assert [p.rank for p in data.paybacks] == [1, 1, 3]  # the baseline is not listed
    page = render_html(data)
    table = page[page.index('id="payback-table"') :]
    table = table[: table.index("</table>")]
    assert "<th>rank in trial</th>" in table
    assert table.count('<td class="num">1=</td>') == 2 and '<td class="num">3</td>' in table


def test_a_headline_without_a_significant_saving_says_so() -> None:
    tie = (make_record("base"), make_record("q", technique="quantize:int8", seed=0))
    data = report_data(StudyData(Path("x.sqlite"), "tie", tie))
    assert data.headline == (
        "digits · small_cnn: no variant is significantly cheaper than the baseline (J/image, "
        "within 1 accuracy point(s)).",
    )
    assert not data.noisy and 'id="noisy-warning"' not in render_html(data)


def test_the_report_shows_the_study_totals(html: str, markdown: str) -> None:
    assert 'id="study-costs"' in html and "Training avoided by sharing" in html
    assert "measurement" in markdown and "Training avoided by sharing 0 teacher(s)" in markdown
    assert "by training once and compressing many:" in " ".join(html.split())
    assert "by training once and compressing many:" in markdown and "training(s) for" in markdown
