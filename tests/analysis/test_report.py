"""The report: HTML + Markdown from stores with failed trials, estimated-only or measured energy;
escaping of every user string; CO2e from the study's carbon settings; the store is only read
(also one written by the previous version); the ``wattwise report`` command."""

from __future__ import annotations

import argparse
import base64
import dataclasses
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


def test_statistics_use_ok_trials_only(estimated_data: Any) -> None:
    data = estimated_data
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
    """Each column in the unit of its numbers: about 1 kJ of training, 40 J of technique, 10 J
    of measurement, 0.8 to 2 mJ per image, 0.1 g of CO2e."""
    for header in ("training energy (kJ)", "technique energy (J)", "measurement energy (J)",
                   "total energy (kJ)", "accuracy per kJ of training + technique (1/kJ)",
                   "inference energy (mJ/image)", "correct predictions per joule (1/J)",
                   "energy per correct prediction (mJ)", "CO2e training (mg)",
                   "CO2e technique (mg)", "CO2e per trial (mg)", "saving vs eager baseline",
                   "saving vs best fp32", "95 % CI (%, Wilson)"):  # fmt: skip
        assert f"<th>{header}</th>" in html, header
    assert "0.002 kJ" not in html and "accuracy per J/image" not in html
    assert "1,000 images" not in html  # it equalled accuracy per J/image: one name per quantity


def test_provenance_status_measured_and_mixed() -> None:
    measured = [make_record(f"m{i}", measured=True, seed=i) for i in range(2)]
    assert energy_provenance(measured).status == "measured"
    mixed = [*measured, make_record("e", technique="quantize:int8")]
    summary = energy_provenance(mixed)
    assert summary.status == "mixed" and "ESTIMATED" in summary.headline
    assert energy_provenance([]).status == "unavailable"


def test_suspect_energy_is_named_with_its_phase_reason_and_trials() -> None:
    """A resumed training's energy is a lower bound: the report says so, above the entries."""
    why = "resumed after epoch 2: not counted after the last save (a lower bound)"
    plain, resumed = make_record("p", seed=0), make_record("r", seed=1)
    train = dict(resumed.phases["train"])
    train["components"] = [
        {**c, "provenance": {**c["provenance"], "suspect": why}} for c in train["components"]
    ]
    resumed = dataclasses.replace(resumed, phases={**resumed.phases, "train": train})
    summary = energy_provenance([plain, resumed])
    assert summary.suspect == (f"train energy of 1 trial(s) is suspect: {why}.",)
    assert energy_provenance([plain]).suspect == ()
    data = report_data(StudyData(Path("s.sqlite"), "s", (plain, resumed)))
    assert '<ul id="suspect-energy">' in render_html(data)
    assert f"**train energy of 1 trial(s) is suspect: {why}.**" in render_markdown(data)


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


def test_a_report_leaves_the_store_as_it_was(estimated_report_snapshots: Any) -> None:
    assert estimated_report_snapshots["after"] == estimated_report_snapshots["before"]


def test_plots_are_written_and_embedded_from_the_same_bytes(estimated_report: Any) -> None:
    html = Path(estimated_report.html).read_text(encoding="utf-8")
    embedded = dict(re.findall(r'<figure id="plot-(\w+)"><img alt="[^"]*" '
                               r'src="data:image/png;base64,([^"]+)"', html))  # fmt: skip
    assert list(embedded) == [spec.name for spec in PLOTS]
    for name, data in embedded.items():
        file = estimated_report.out_dir / "plots" / f"{name}.png"
        assert base64.b64decode(data) == file.read_bytes(), name


def test_the_views_share_one_pareto_front(estimated_data: Any) -> None:
    data = estimated_data
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


# --- the study's recipe searches ----------------------------------------------------------------

#: A recipe text without spaces, long enough to break a table that does not wrap it.
LONG_RECIPE = (
    "prune:structured:0.7:importance=taylor:steps=3:finetune_by=distill+quantize:int8:static"
)
CHOSEN = "prune:structured:0.3:importance=magnitude:steps=1"
TIED = "prune:structured:0.25:importance=magnitude:steps=1"
SEARCH_MESSAGE = (
    f"choose {CHOSEN} (fine-tuning 1 epoch(s)): 1.40x less J/image (1.30 to 1.50, 95 %), "
    f"accuracy 94.80% (floor 94.00%); not significantly different: {TIED} (the most accurate "
    "was chosen); the search spent 430 J on 4 candidate(s)"
)


def _candidate(number: int, recipe: str, **values: Any) -> dict[str, Any]:
    failed = {
        "accuracy": None,
        "saving": None,
        "low": None,
        "high": None,
        "significant": False,
        "j_per_image": None,
        "feasible": False,
        "energy_j": 0.0,
    }
    return {"number": number, "recipe": recipe, "finetune_epochs": 1, "noisy": False,
            "reason": None, **failed, **values}  # fmt: skip


def search_result() -> dict[str, Any]:
    """A stored search (the shape ``run_study_searches`` writes): candidate 0 chosen and on the
    front, 1 on the front but below the floor, 2 failed, 3 tied with the chosen one."""
    return {
        "baseline_key": "abc",
        "trial_id": "base-64-1",
        "spec": {
            "dataset": "digits",
            "model": "small_cnn",
            "technique": "baseline",
            "batch_size": 64,
            "lr": 0.01,
            "epochs": 3,
            "seed": 1,
        },
        "sampler": "tpe",
        "baseline_accuracy": 0.95,
        "floor_accuracy": 0.94,
        "candidates": [
            _candidate(
                0,
                CHOSEN,
                accuracy=0.948,
                saving=1.4,
                low=1.3,
                high=1.5,
                significant=True,
                j_per_image=0.0014,
                feasible=True,
                energy_j=120.0,
            ),
            _candidate(
                1,
                LONG_RECIPE,
                finetune_epochs=2,
                accuracy=0.90,
                saving=2.5,
                low=2.3,
                high=2.7,
                significant=True,
                j_per_image=0.0008,
                energy_j=200.0,
            ),
            _candidate(
                2,
                "quantize:int8:dynamic",
                finetune_epochs=0,
                reason="<b>int8</b> is not supported on this backend",
            ),
            _candidate(
                3,
                TIED,
                accuracy=0.945,
                saving=1.35,
                low=1.2,
                high=1.45,
                significant=True,
                j_per_image=0.00148,
                feasible=True,
                energy_j=110.0,
            ),
        ],
        "front": [1, 0],
        "chosen": 0,
        "tied": [3],
        "energy_j": 430.0,
        "message": SEARCH_MESSAGE,
        "details": {},
    }


@pytest.fixture()
def searched_study(tmp_path: Path) -> Path:
    """A store-backed study with one recipe search in ``search/abc.json``."""
    import json

    records = [make_record("base-64-1", batch_size=64, seed=1),
               make_record("q", technique="quantize:int8", seed=0)]  # fmt: skip
    folder = write_study(tmp_path / "searched", records, study="searched")
    (folder / "search").mkdir()
    (folder / "search" / "abc.json").write_text(json.dumps(search_result()), encoding="utf-8")
    return folder


def _search_rows(page: str) -> list[list[str]]:
    section = page[page.index('<h2 id="recipe-search"') :]
    body = section[section.index("<tbody>") : section.index("</tbody>")]
    rows = re.findall(r"<tr>(.*?)</tr>", body, re.S)
    return [[" ".join(c.split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]
            for r in rows]  # fmt: skip


def test_the_report_shows_the_recipe_search(searched_study: Path) -> None:
    """Which training was searched, the sampler, the baseline and floor, the message, and every
    candidate sorted by saving with its marks (a failed one with its reason)."""
    data = report_data(load_study(searched_study))
    (search,) = data.searches
    assert (search.baseline_key, search.trial_id, search.energy_j) == ("abc", "base-64-1", 430.0)
    assert [(r.recipe, r.marks) for r in search.rows] == [
        (LONG_RECIPE, "P-"), (CHOSEN, "*P"), (TIED, "="), ("quantize:int8:dynamic", ""),
    ]  # fmt: skip
    page = render_html(data)
    assert '<a href="#recipe-search">Recipe search</a>' in page
    section = page[page.index('<h2 id="recipe-search"') : page.index('<h2 id="statistics"')]
    text = " ".join(section.split())
    assert "digits · small_cnn · baseline · bs 64 · lr 0.01 · 3 ep, seed 1" in text
    assert "trial <code>base-64-1</code>" in text and "sampler tpe" in text
    assert "baseline accuracy 95.00 %, floor 94.00 %" in text
    assert SEARCH_MESSAGE in text
    for header in ("recipe", "fine-tuning epochs", "accuracy (%)",
                   "saving vs eager baseline (95 %)", "inference energy (mJ/image)",
                   "within the floor", "energy spent (J)"):  # fmt: skip
        assert f"<th>{header}</th>" in section
    rows = _search_rows(page)
    assert rows[0] == ["P-", LONG_RECIPE, "2", "90.00", "2.5x (2.3 to 2.7)", "0.8", "no", "200", ""]
    assert rows[1] == ["*P", CHOSEN, "1", "94.80", "1.4x (1.3 to 1.5)",
                       "1.4", "yes", "120", ""]  # fmt: skip
    assert rows[2][:2] == ["=", TIED] and rows[2][4] == "1.35x (1.2 to 1.45)"
    assert rows[3][:4] == ["", "quantize:int8:dynamic", "0", "—"] and rows[3][6] == "—"
    assert rows[3][-1] == "failed: &lt;b&gt;int8&lt;/b&gt; is not supported on this backend"
    # a recipe without spaces wraps inside its cell instead of widening the table
    assert f'<td class="recipe">{LONG_RECIPE}</td>' in section
    assert re.search(r"td\.recipe \{[^}]*overflow-wrap: anywhere", page)


def test_the_study_costs_add_the_search_energy_apart(searched_study: Path, tmp_path: Path) -> None:
    """The search's joules are their own line next to the study's total, and the total of both;
    the study's costs themselves are those of the same study without a search."""
    data = report_data(load_study(searched_study))
    assert data.costs is not None
    plain = report_data(load_study(write_study(tmp_path / "plain", [
        make_record("base-64-1", batch_size=64, seed=1),
        make_record("q", technique="quantize:int8", seed=0)], study="searched")))  # fmt: skip
    assert data.costs == plain.costs  # the search energy is not added into the costs
    assert data.search_energy_j == 430.0
    assert data.study_and_search_energy_j == pytest.approx(data.costs.total_energy_j + 430.0)
    line = (f"recipe search(es): 430 J; study and search together: "
            f"{(data.costs.total_energy_j + 430.0) / 1000:.4g} kJ")  # fmt: skip
    page = render_html(data)
    costs = page[page.index('<p id="study-costs">') :]
    assert line in " ".join(costs[: costs.index("</p>")].split())
    assert line in render_markdown(data)


def test_the_markdown_shows_the_recipe_search(searched_study: Path) -> None:
    paths = build_report(searched_study)
    md = paths.markdown.read_text(encoding="utf-8")
    section = md[md.index("## Recipe search") :]
    assert f"- {SEARCH_MESSAGE}" in section
    assert (
        "digits · small_cnn · baseline · bs 64 · lr 0.01 · 3 ep, seed 1 (trial base-64-1)"
        in section
    )
    assert (
        f"| P- | {LONG_RECIPE} | 2 | 90.00 % | 2.5x (2.3 to 2.7) | 0.8 | no | 200 |  |" in section
    )
    assert f"| *P | {CHOSEN} | 1 | 94.80 % |" in section and f"| = | {TIED} |" in section
    assert "failed: &lt;b>int8&lt;/b> is not supported on this backend |" in section
    table = section[section.index("| marks |") :]  # largest saving first, the failed one last
    assert table.index(LONG_RECIPE) < table.index(CHOSEN) < table.index(TIED)
    assert table.index(TIED) < table.index("quantize:int8:dynamic")


def test_a_study_without_a_search_has_no_search_section(tmp_path: Path) -> None:
    folder = write_study(tmp_path / "plain", [make_record("a")], study="plain")
    data = report_data(load_study(folder))
    assert data.searches == () and data.search_energy_j == 0.0
    page, md = render_html(data), render_markdown(data)
    assert 'id="recipe-search"' not in page and 'href="#recipe-search"' not in page
    assert "recipe search(es)" not in page and "recipe search(es)" not in md
    assert "## Recipe search" not in md
