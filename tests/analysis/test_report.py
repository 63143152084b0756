"""The report: HTML + Markdown from stores with failed trials, estimated-only or measured energy;
escaping of every user string; the ``wattwise report`` command."""

from __future__ import annotations

import argparse
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from analysis_fixtures import (
    TDP_DETAIL,
    XSS_REASON,
    XSS_STUDY,
    grid_records,
    make_record,
    write_store,
)

from wattwise import cli_analysis
from wattwise.analysis.plots import PLOTS
from wattwise.analysis.report import (
    ReportError,
    StudyData,
    energy_provenance,
    find_store,
    load_study,
    render_html,
    render_markdown,
    report_data,
)
from wattwise.experiment import ResultsStore


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
    for header in ("training energy (kJ)", "accuracy per kJ of training (1/kJ)",
                   "inference energy (J/image)", "accuracy per J/image (image/J)",
                   "accuracy per kJ per 1,000 images (1/kJ)",
                   "energy per correct prediction (J)", "CO2e per trial (g)"):  # fmt: skip
        assert f"<th>{header}</th>" in html


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
    code = cli_analysis.main(["report", str(tmp_path / "study"), "--floor", "2", "--open"])
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
    assert cli_analysis.main(["report", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("wattwise: error: ") and err.count("\n") == 1 and "nope" in err
    (tmp_path / "bad.sqlite").write_bytes(b"\x00" * 64)
    assert cli_analysis.main(["report", str(tmp_path / "bad.sqlite")]) == 2
    assert "not a wattwise results store" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli_analysis.main(["report", str(tmp_path), "--floor", "-1"])
    assert exc.value.code == 2
    assert "--floor must be a number >= 0" in capsys.readouterr().err


def test_register_adds_the_report_command() -> None:
    parser = argparse.ArgumentParser(prog="wattwise")
    cli_analysis.register(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["report", "results/s", "--out", "o", "--floor", "0.5", "--by",
                              "train", "--open"])  # fmt: skip
    assert (args.study, args.out, args.floor, args.by, args.open) == (
        "results/s", "o", 0.5, "train", True,
    )  # fmt: skip
    assert args.func is cli_analysis.cmd_report


def test_the_store_is_only_read(estimated_study: Path) -> None:
    with ResultsStore(estimated_study / "results.sqlite") as store:
        assert store.counts() == {"ok": 36, "failed": 2, "running": 0}
        assert store.study == XSS_STUDY


def test_importing_the_package_is_cheap() -> None:
    code = (
        "import sys, wattwise.analysis as a; "
        "heavy = [m for m in ('scipy', 'statsmodels', 'matplotlib', 'jinja2') "
        "if m in sys.modules]; assert not heavy, heavy; assert callable(a.build_report)"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
