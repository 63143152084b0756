"""The study report: one self-contained HTML file, a Markdown summary and the plots.

    from wattwise.analysis import build_report
    paths = build_report("results/seed-study", "results/seed-study/report", floor_points=1.0)
    paths.html, paths.markdown, paths.plots

The HTML file needs no network: plots are embedded as base64 PNG, tables sort with a few lines of
inline JavaScript, styles are inline. Every string from the store (study, dataset and technique
names, failure reasons, config values, provenance details) is HTML-escaped by Jinja2's
autoescaping. Failed trials are listed with their reasons and left out of every statistic.

The store is opened read-only (nothing in the study folder but ``report/`` is written). The
metrics, variants, Pareto fronts, recommendations and statistics are computed once
(:func:`report_data`) and every view reads them; each plot is rendered once, and the same PNG
bytes are written to ``plots/`` and embedded in the page. CO2e uses the carbon settings of the
study folder's ``study.yaml`` (``measurement:`` ``country``, ``carbon_intensity_g_per_kwh``,
``pue``), or the defaults when there is none, and the report says which.
"""

from __future__ import annotations

import base64
import datetime as dt
import platform
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from wattwise.analysis.metrics import (
    Analysis,
    EnergyBasis,
    Payback,
    TrialMetrics,
    VariantSummary,
    analyze,
    config_label,
    paybacks,
)
from wattwise.analysis.plots import render_plots, write_plots
from wattwise.analysis.provenance import ProvenanceSummary, energy_provenance, environment_summary
from wattwise.analysis.recommend import RATIO_CAVEAT, Recommendation, recommend
from wattwise.analysis.stats import StudyStatistics, study_statistics
from wattwise.energy.carbon import CarbonConfig
from wattwise.errors import ConfigError, WattwiseError
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.store import CONFIG_FILE, STORE_FILE, ResultsStore, StoreError
from wattwise.files import write_text_atomic

#: ``measurement:`` keys of a study.yaml -> the CarbonConfig field each one sets.
_CARBON_KEYS = {
    "country": "country",
    "carbon_intensity_g_per_kwh": "intensity_g_per_kwh",
    "pue": "pue",
}


class ReportError(WattwiseError):
    """The study cannot be reported: no store there, or not a wattwise results store."""


@dataclass(frozen=True)
class ReportPaths:
    """What :func:`build_report` wrote."""

    out_dir: Path
    html: Path
    markdown: Path
    plots: tuple[Path, ...]


# --- reading the study --------------------------------------------------------------------------


def _locate(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        store = p / STORE_FILE
        if not store.is_file():
            raise ReportError(
                f"{p} holds no {STORE_FILE}: pass a study folder or its results store"
            )
        return store
    if p.is_file():
        return p
    raise ReportError(f"{p}: no such study folder or results store")


def _open(store: Path) -> ResultsStore:
    try:
        return ResultsStore(store, read_only=True)
    except StoreError as err:
        raise ReportError(str(err)) from err


def find_store(path: str | Path) -> Path:
    """The results store of ``path``: a study folder holding ``results.sqlite``, or the file.
    It is opened read-only to check it (nothing is written).

    Raises:
        ReportError: Nothing there, not a SQLite file, or a SQLite file without a results table.
    """
    store = _locate(path)
    _open(store).close()
    return store


def study_carbon(folder: str | Path) -> tuple[CarbonConfig, str]:
    """The study's carbon settings, from the ``measurement`` section (``country``,
    ``carbon_intensity_g_per_kwh``, ``pue``) of ``folder/study.yaml``, and where they came
    from; the defaults of :class:`~wattwise.energy.carbon.CarbonConfig` when there is no file.

    Raises:
        ReportError: The file cannot be read, is not YAML, or holds invalid carbon settings.
    """
    path = Path(folder) / CONFIG_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CarbonConfig(), f"no {CONFIG_FILE} in {path.parent}: default carbon settings"
    except (OSError, UnicodeDecodeError) as err:
        raise ReportError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from err
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ReportError(f"{path} is not valid YAML: {' '.join(str(err).split())}") from err
    section = data.get("measurement") if isinstance(data, dict) else None
    section = section if isinstance(section, dict) else {}
    values = {
        name: section[key] for key, name in _CARBON_KEYS.items() if section.get(key) is not None
    }
    try:
        carbon = CarbonConfig(**values)
    except ConfigError as err:
        raise ReportError(f"{path}: measurement: {err}") from err
    return carbon, f"the measurement section of {path}"


def carbon_note(carbon: CarbonConfig, source: str) -> str:
    """One sentence for the report: how CO2e was computed and where the settings came from."""
    intensity, origin = carbon.resolve()
    return (
        f"CO2e = energy of the training and technique phases (kWh) × {intensity:g} g CO2e/kWh "
        f"({origin}) × PUE {carbon.pue:g}, computed now from the stored joules; the inference "
        f"benchmark windows are not counted. Carbon settings: {source}."
    )


@dataclass(frozen=True)
class StudyData:
    """A study as read from its store: every record (any status), the store's metadata and the
    study's carbon settings (with where they came from)."""

    store_path: Path
    study: str
    records: tuple[TrialRecord, ...]
    config_yaml: str | None = None
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    carbon_source: str = "default carbon settings"

    @property
    def ok(self) -> list[TrialRecord]:
        return [r for r in self.records if r.status == "ok"]

    def counts(self) -> dict[str, int]:
        counts = Counter(r.status for r in self.records)
        return {s: counts.get(s, 0) for s in ("ok", "failed", "running")}


def load_study(path: str | Path) -> StudyData:
    """Reads every record of the study at ``path`` (see :func:`find_store`), read-only, and its
    carbon settings (:func:`study_carbon`)."""
    store_path = _locate(path)
    with _open(store_path) as store:
        try:
            meta = store.meta()
            records = tuple(store.records())
        except StoreError as err:
            raise ReportError(str(err)) from err
    study = meta.get("study") or next((r.study for r in records if r.study), store_path.parent.name)
    carbon, source = study_carbon(store_path.parent)
    return StudyData(store_path, study, records, meta.get("config_yaml"), carbon, source)


def _analysis_environment() -> list[tuple[str, str]]:
    import jinja2
    import matplotlib
    import scipy
    import statsmodels

    from wattwise import __version__

    return [
        ("wattwise", __version__),
        ("python", platform.python_version()),
        ("scipy", scipy.__version__),
        ("statsmodels", statsmodels.__version__),
        ("matplotlib", matplotlib.__version__),
        ("jinja2", jinja2.__version__),
    ]


# --- everything the report shows ------------------------------------------------------------------


@dataclass(frozen=True)
class ReportData:
    """What the HTML and Markdown render (computed once, rendered twice)."""

    study: str
    store_path: str
    generated_utc: str
    counts: Mapping[str, int]
    floor_points: float
    by: EnergyBasis
    analysis: Analysis  # the ok trials: metrics, variants and fronts, computed once
    variants: tuple[VariantSummary, ...]
    pareto: Mapping[str, tuple[str, ...]]  # "train"/"inference" -> labels on the front
    trials: tuple[TrialMetrics, ...]
    recommendations: Mapping[str, tuple[Recommendation, ...]]  # by -> recommendations
    paybacks: tuple[Payback, ...]  # every recipe step of every ok trial (baseline steps left out)
    statistics: StudyStatistics
    provenance: ProvenanceSummary
    environment: tuple[tuple[str, str, int], ...]
    analysis_environment: tuple[tuple[str, str], ...]
    failed: tuple[TrialRecord, ...]
    running: tuple[TrialRecord, ...]
    flags: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # label -> reasons
    plots: tuple[tuple[str, str, str], ...] = ()  # (name, caption, base64 PNG)
    config_yaml: str | None = None
    carbon_note: str = ""
    caveat: str = RATIO_CAVEAT


def report_data(
    study: StudyData, *, floor_points: float = 1.0, by: EnergyBasis = "inference"
) -> ReportData:
    """Computes every number of the report from ``study``, once (``ok`` trials only); every
    view (HTML, Markdown, plots) renders this value. ``plots`` is left empty: :func:`build_report`
    fills it with the rendered PNGs."""
    analysis = analyze(study.records, study.carbon)
    order: tuple[EnergyBasis, ...] = (by, "train" if by == "inference" else "inference")
    recommendations = {
        b: tuple(recommend(analysis.variants, floor_points=floor_points, by=b)) for b in order
    }
    flags = {f.label: f.reasons for r in recommendations[by] for f in r.flagged}
    return ReportData(
        study=study.study,
        store_path=str(study.store_path),
        generated_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        counts=study.counts(),
        floor_points=floor_points,
        by=by,
        analysis=analysis,
        variants=analysis.variants,
        pareto={b: analysis.front_labels(b) for b in ("train", "inference")},
        trials=analysis.trials,
        recommendations=recommendations,
        flags=flags,
        paybacks=tuple(p for r in analysis.records for p in paybacks(r) if p.step != "baseline"),
        statistics=study_statistics([t.to_dict() for t in analysis.trials]),
        provenance=energy_provenance(analysis.records),
        environment=tuple(environment_summary(study.records)),
        analysis_environment=tuple(_analysis_environment()),
        failed=tuple(r for r in study.records if r.status == "failed"),
        running=tuple(r for r in study.records if r.status == "running"),
        config_yaml=study.config_yaml,
        carbon_note=carbon_note(study.carbon, study.carbon_source),
    )


# --- rendering ------------------------------------------------------------------------------------


def fmt(value: Any, spec: str = ".4g", scale: float = 1.0) -> str:
    """A number for a table (``—`` when unknown); text is returned as is."""
    if value is None:
        return "—"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if value != value:  # NaN
        return "—"
    return format(value * scale if scale != 1.0 else value, spec)


def pct(value: Any) -> str:
    return "—" if value is None else f"{value * 100:.2f} %"


def _template() -> Any:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("wattwise.analysis", "templates"),
        autoescape=True,  # every value from the store is user-supplied text
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["fmt"] = fmt
    env.filters["pct"] = pct
    env.filters["label"] = lambda spec: config_label(spec)
    return env.get_template("report.html")


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML page."""
    return str(_template().render(d=data))


def _md(value: Any) -> str:
    """Text for a Markdown table cell: one line, no pipes, no raw HTML."""
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def render_markdown(data: ReportData, plot_files: Sequence[str] = ()) -> str:
    """A Markdown summary: provenance, recommendation, variants, statistics, failures, plots."""
    c = data.counts
    out = [
        f"# wattwise report: {_md(data.study)}",
        "",
        f"Store `{_md(data.store_path)}`, generated {data.generated_utc}. Trials: {c['ok']} ok, "
        f"{c['failed']} failed, {c['running']} running (only ok trials enter the statistics).",
        "",
        f"> **Energy provenance: {data.provenance.status}.** {_md(data.provenance.headline)}",
        "",
    ]
    out += [f"- {_md(e.sentence)}" for e in data.provenance.entries]
    out += [f"- {_md(data.carbon_note)}", ""]
    out += ["## Recommendation", "", f"> {_md(data.caveat)}", ""]
    for by, recs in data.recommendations.items():
        unit = "inference energy per image" if by == "inference" else "training energy"
        out += [f"Ranked by {unit}, floor {data.floor_points:g} point(s) below the baseline:", ""]
        out += [f"- {_md(r.message)}" for r in recs] + [""]
    out += ["## Variants (mean over seeds)", ""]
    out += _md_table(
        ["variant", "n", "accuracy", "training energy (kJ)", "accuracy per kJ of training (1/kJ)",
         "inference (J/image)", "accuracy per J/image (image/J)",
         "energy per correct prediction (J)", "CO2e (g)"],
        [
            (v.label, v.n, pct(v.accuracy), fmt(v.train_energy_j, ".4g", 1e-3),
             fmt(v.accuracy_per_kj_train), fmt(v.inference_energy_per_image_j),
             fmt(v.accuracy_per_j_per_image), fmt(v.energy_per_correct_j), fmt(v.co2e_g))
            for v in data.variants
        ],
    )  # fmt: skip
    s = data.statistics
    out += ["## Statistics", ""]
    for comp in s.comparisons:
        out.append(
            f"- {_md(comp.metric)}: {comp.test or 'no test'} "
            + (
                f"(statistic {fmt(comp.statistic)}, p = {fmt(comp.p_value, '.3g')}, "
                f"{comp.effect_size_name} = {fmt(comp.effect_size, '.3f')}) — "
                if comp.test
                else "— "
            )
            + _md(comp.rationale)
        )
    for model in (s.energy_model, s.inference_model):
        if model.ok:
            top = sorted(
                (t for t in model.terms if t.p_value is not None), key=lambda t: t.p_value or 1
            )
            drivers = ", ".join(f"{_md(t.term)} (p = {t.p_value:.3g})" for t in top[:4])
            out.append(
                f"- What drives {model.response}: OLS `{model.formula}`, R² = "
                f"{fmt(model.r_squared, '.3f')}, n = {model.n}; terms by p-value: {drivers}"
            )
        else:
            out.append(f"- What drives {model.response}: {_md(model.reason)}")
    out.append("")
    if data.failed:
        out += ["## Failed trials (excluded from the statistics)", ""]
        out += _md_table(
            ["trial", "configuration", "attempts", "reason"],
            [(r.trial_id, config_label(r.spec), r.attempts, r.reason) for r in data.failed],
        )
    if plot_files:
        out += ["## Plots", ""] + [f"- [{_md(p)}](plots/{_md(p)})" for p in plot_files] + [""]
    out += ["The full report with every table is report.html.", ""]
    return "\n".join(out)


def build_report(
    store_path_or_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    floor_points: float = 1.0,
    by: EnergyBasis = "inference",
) -> ReportPaths:
    """Writes ``report.html``, ``report.md`` and ``plots/`` (PNG + SVG) for a study.

    Args:
        store_path_or_dir: A study folder holding ``results.sqlite``, or the file itself.
        out_dir: Where to write (created if missing); default: ``report/`` next to the store.
        floor_points: Accuracy points (1 point = 0.01) a recommended variant may lose against the
            best baseline of its dataset × model.
        by: Rank the primary recommendation by ``inference`` energy per image or ``train`` energy.

    Raises:
        ReportError: No store at the path, or not a wattwise results store.
        ValueError: ``floor_points`` negative or ``by`` unknown.
    """
    if not floor_points >= 0:
        raise ValueError(f"floor_points must be >= 0, got {floor_points!r}")
    study = load_study(store_path_or_dir)
    out = Path(out_dir) if out_dir is not None else study.store_path.parent / "report"
    data = report_data(study, floor_points=floor_points, by=by)
    rendered = render_plots(data.analysis)  # once; the same bytes go to disk and into the page
    data = replace(
        data,
        plots=tuple(
            (p.name, p.title, base64.b64encode(p.files["png"]).decode("ascii")) for p in rendered
        ),
    )
    html_path, md_path = out / "report.html", out / "report.md"
    try:
        plot_paths = write_plots(rendered, out / "plots")
        write_text_atomic(html_path, render_html(data))
        write_text_atomic(md_path, render_markdown(data, [f"{p.name}.png" for p in rendered]))
    except OSError as err:
        raise ReportError(f"cannot write the report to {out}: {err.strerror or err}") from err
    return ReportPaths(out, html_path, md_path, tuple(plot_paths))
