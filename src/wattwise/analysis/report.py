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
``pue``), or the defaults when there is none, and the report says which. The study's recipe
searches (``search/*.json``, :mod:`wattwise.analysis.searches`) get their own section; their
joules are shown next to the study's total, never added into it.
"""

from __future__ import annotations

import base64
import datetime as dt
import platform
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from wattwise.analysis.base import fmt, payback, pct, ratio
from wattwise.analysis.costs import StudyCosts
from wattwise.analysis.markdown import render_markdown
from wattwise.analysis.metrics import (
    Analysis,
    EnergyBasis,
    Payback,
    TrialMetrics,
    VariantSummary,
    analyze,
    config_label,
    device_label,
    paybacks,
)
from wattwise.analysis.plots import render_plots, write_plots
from wattwise.analysis.prediction import PredictionReport, prediction_summary
from wattwise.analysis.profiles import ProfileRow, profiles_markdown, study_profiles
from wattwise.analysis.provenance import ProvenanceSummary, energy_provenance, environment_summary
from wattwise.analysis.recommendation import (
    RATIO_CAVEAT,
    Recommendation,
    describe,
    payback_sentence,
    recommend,
    with_saved_models,
)
from wattwise.analysis.searches import SearchSummary, study_searches
from wattwise.analysis.stats import StudyStatistics, study_statistics
from wattwise.analysis.tables import report_tables, write_tables
from wattwise.energy.carbon import CarbonConfig
from wattwise.errors import ConfigError, WattwiseError
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.store import (
    CONFIG_FILE,
    STORE_FILE,
    Store,
    StoreError,
    is_postgres_url,
    open_store,
    study_store,
)
from wattwise.files import write_text_atomic
from wattwise.units import column_unit, format_energy, format_mass, scaled

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
    tables: tuple[Path, ...] = ()  # tables/<name>.csv, .parquet (and .tex with latex=True)


# --- reading the study --------------------------------------------------------------------------


def _locate(path: str | Path) -> Path | str:
    if is_postgres_url(path):
        return str(path)
    p = Path(path)
    if p.is_dir():
        store = p / STORE_FILE
        url = study_store(p) if not store.is_file() else None
        if url is not None:  # the study's store is a PostgreSQL database
            return url
        if not store.is_file():
            raise ReportError(
                f"{p} holds no {STORE_FILE}: pass a study folder or its results store"
            )
        return store
    if p.is_file():
        return p
    raise ReportError(f"{p}: no such study folder or results store")


def _open(store: Path | str) -> Store:
    try:
        return open_store(store, read_only=True)
    except StoreError as err:
        raise ReportError(str(err)) from err


def find_store(path: str | Path) -> Path | str:
    """The results store of ``path``: a study folder holding ``results.sqlite`` (or whose
    ``study.yaml`` names a PostgreSQL store: its URL), the file, or a ``postgresql://`` URL. It
    is opened read-only to check it (nothing is written).

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
    return _carbon(text, str(path))


def _carbon(text: str, where: str) -> tuple[CarbonConfig, str]:
    """The carbon settings of a study config's text (``where``: what messages call it)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ReportError(f"{where} is not valid YAML: {' '.join(str(err).split())}") from err
    section = data.get("measurement") if isinstance(data, dict) else None
    section = section if isinstance(section, dict) else {}
    values = {
        name: section[key] for key, name in _CARBON_KEYS.items() if section.get(key) is not None
    }
    try:
        carbon = CarbonConfig(**values)
    except ConfigError as err:
        raise ReportError(f"{where}: measurement: {err}") from err
    return carbon, f"the measurement section of {where}"


def carbon_note(carbon: CarbonConfig, source: str) -> str:
    """One sentence for the report: how CO2e was computed and where the settings came from."""
    intensity, origin = carbon.resolve()
    return (
        f"CO2e = energy of the training and technique phases (kWh; a teacher shared by k trials "
        f"charged 1/k to each, once to the study) × {intensity:g} g CO2e/kWh ({origin}) × PUE "
        f"{carbon.pue:g}, computed now from the stored joules; the measurement phases (benchmark "
        f"windows) are shown apart and never counted. Carbon settings: {source}."
    )


def headline(recommendations: Iterable[Recommendation]) -> tuple[str, ...]:
    """One sentence per dataset × model: the best recipe's saving with its interval, its
    accuracy change with its interval and its payback, or that no variant is significantly
    cheaper than the baseline."""
    lines = []
    for r in recommendations:
        where = config_label({"dataset": r.dataset, "model": r.model}, short=True, device=r.device)
        unit = "J/image" if r.by == "inference" else "training J"
        if r.chosen is None or r.saving is None:
            lines.append(
                f"{where}: no variant is significantly cheaper than the {r.reference_kind} "
                f"({unit}, within {r.floor_points:g} accuracy point(s))."
            )
            continue
        change = r.accuracy_change
        text = f"{where}: best recipe {r.chosen.technique} — {describe(r.saving, unit)}"
        if change is not None and change.estimate is not None:
            text += f"; accuracy {change.estimate * 100:+.2f} points"
            if change.low is not None and change.high is not None:
                text += f" ({change.low * 100:+.2f} to {change.high * 100:+.2f})"
        text += "."
        if r.payback is not None:
            text += f" {payback_sentence(r.payback)}"
        lines.append(text)
    return tuple(lines)


def device_banner(analysis: Analysis) -> str:
    """One line for the top of the report where the ``ok`` trials ran on several devices: which,
    with their trial counts, and that every figure is per device; ``""`` on one device."""
    devices = analysis.devices
    if len(devices) < 2:
        return ""
    listed = ", ".join(f"{device_label(d)} ({n} trials)" for d, n in devices)
    return (
        f"Energy from {len(devices)} devices: {listed}; variants, Pareto fronts, recommendations "
        "and technique comparisons are per device, the energy model has the device as a factor, "
        "and only the study totals add the devices up."
    )


def noise_warnings(analysis: Analysis) -> tuple[str, ...]:
    """One line per trial measured under noise: its configuration and the reasons."""
    return tuple(
        f"{config_label(t.to_dict())} (trial {t.trial_id}, seed {t.seed}): "
        + ("; ".join(t.noise) or "flagged noisy")
        for t in analysis.trials
        if t.noisy
    )


@dataclass(frozen=True)
class StudyData:
    """A study as read from its store: every record (any status), the store's metadata and the
    study's carbon settings (with where they came from)."""

    store_path: Path | str  # a PostgreSQL store's URL (password masked) has no folder
    study: str
    records: tuple[TrialRecord, ...]
    config_yaml: str | None = None
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    carbon_source: str = "default carbon settings"
    folder: Path | None = None  # the study folder (study.yaml, search/), where there is one

    @property
    def ok(self) -> list[TrialRecord]:
        return [r for r in self.records if r.status == "ok"]

    def counts(self) -> dict[str, int]:
        counts = Counter(r.status for r in self.records)
        return {s: counts.get(s, 0) for s in ("ok", "failed", "running")}


def load_study(path: str | Path) -> StudyData:
    """Reads every record of the study at ``path`` (see :func:`find_store`), read-only, and its
    carbon settings (:func:`study_carbon`)."""
    location = _locate(path)
    with _open(location) as store:
        try:
            meta = store.meta()
            records = tuple(store.records())
        except StoreError as err:
            raise ReportError(str(err)) from err
        shown = store.location
    if isinstance(location, Path):
        folder: Path | None = location.parent
    else:
        folder = Path(path) if Path(path).is_dir() else None
    fallback = folder.name if folder is not None else "study"
    study = meta.get("study") or next((r.study for r in records if r.study), fallback)
    if folder is not None:
        carbon, source = study_carbon(folder)
    else:  # a bare URL: the study config the store keeps
        carbon, source = _carbon(meta.get("config_yaml") or "", "the study config in the store")
    where = location if isinstance(location, Path) else shown
    return StudyData(where, study, records, meta.get("config_yaml"), carbon, source, folder)


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
    paybacks: tuple[Payback, ...]  # every measured variant of every ok trial but the baseline
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
    headline: tuple[str, ...] = ()  # the primary recommendations, one sentence each
    devices: str = ""  # the banner where the trials ran on several devices (device_banner)
    noisy: tuple[str, ...] = ()  # trials measured under noise, with why
    costs: StudyCosts | None = None  # the study's totals, each teacher counted once
    predictions: PredictionReport | None = None  # how well the live predictions held
    searches: tuple[SearchSummary, ...] = ()  # the study's recipe searches (<study>/search/)
    profiles: tuple[ProfileRow, ...] = ()  # operator profiles (measurement.profile)

    @property
    def search_energy_j(self) -> float:
        """What the study's recipe searches spent (J): not trials, so not in :attr:`costs`."""
        return sum(s.energy_j for s in self.searches)

    @property
    def study_and_search_energy_j(self) -> float | None:
        """The study's total energy and its recipe searches' together (J): each joule once."""
        return self.costs.total_energy_j + self.search_energy_j if self.costs else None


def _folder(study: StudyData) -> Path | None:
    """The study folder: the one it was read from, else the SQLite store's."""
    if study.folder is not None:
        return study.folder
    return study.store_path.parent if isinstance(study.store_path, Path) else None


def report_data(
    study: StudyData, *, floor_points: float = 1.0, by: EnergyBasis = "inference"
) -> ReportData:
    """Computes every number of the report from ``study``, once (``ok`` trials only); every
    view (HTML, Markdown, plots) renders this value. ``plots`` is left empty: :func:`build_report`
    fills it with the rendered PNGs."""
    analysis = analyze(study.records, study.carbon)
    order: tuple[EnergyBasis, ...] = (by, "train" if by == "inference" else "inference")
    recommendations = {  # each naming the model files the chosen variant's trials kept
        b: with_saved_models(
            recommend(analysis.variants, floor_points=floor_points, by=b), analysis.records
        )
        for b in order
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
        headline=headline(recommendations[by]),
        devices=device_banner(analysis),
        noisy=noise_warnings(analysis),
        costs=analysis.costs,
        predictions=prediction_summary(study.records),
        searches=study_searches(folder) if (folder := _folder(study)) is not None else (),
        profiles=study_profiles(study.records),
    )


# --- rendering ------------------------------------------------------------------------------------


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
    env.globals["ratio"] = ratio
    env.globals["payback"] = payback
    env.globals["device_label"] = device_label
    env.filters["label"] = lambda spec: config_label(spec)
    # units: a column takes one unit from its values; a number in a sentence, its own
    env.globals["unit_of"] = column_unit
    env.filters["scaled"] = scaled
    env.filters["energy"] = lambda joules: format_energy(joules, spec=".4g")
    env.filters["mass"] = lambda grams: format_mass(grams, spec=".4g")
    return env.get_template("report.html")


def render_html(data: ReportData) -> str:
    """The report as one self-contained HTML page."""
    return str(_template().render(d=data))


def build_report(
    store_path_or_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    floor_points: float = 1.0,
    by: EnergyBasis = "inference",
    latex: bool = False,
) -> ReportPaths:
    """Writes ``report.html``, ``report.md``, ``plots/`` (PNG + SVG) and ``tables/`` (the
    variants, trials and paybacks as CSV and Parquet, :mod:`wattwise.analysis.tables`) for a
    study.

    Args:
        store_path_or_dir: A study folder holding ``results.sqlite``, or the file itself.
        out_dir: Where to write (created if missing); default: ``report/`` next to the store.
        floor_points: Accuracy points (1 point = 0.01) a recommended variant may lose against the
            best baseline of its dataset × model.
        by: Rank the primary recommendation by ``inference`` energy per image or ``train`` energy.
        latex: Also write the main tables as LaTeX (booktabs): ``tables/variants.tex``,
            ``tables/trials.tex``.

    Raises:
        ReportError: No store at the path, or not a wattwise results store.
        ValueError: ``floor_points`` negative or ``by`` unknown.
    """
    if not floor_points >= 0:
        raise ValueError(f"floor_points must be >= 0, got {floor_points!r}")
    study = load_study(store_path_or_dir)
    if out_dir is not None:
        out = Path(out_dir)
    elif study.folder is not None:
        out = study.folder / "report"
    else:
        raise ReportError(f"{study.store_path} has no study folder: pass the report's one (--out)")
    data = report_data(study, floor_points=floor_points, by=by)
    recommended = {b: [r.chosen.label for r in recs if r.chosen is not None]
                   for b, recs in data.recommendations.items()}  # fmt: skip
    # once; the same bytes go to disk and into the page
    rendered = render_plots(data.analysis, recommended=recommended)
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
        markdown = render_markdown(data, [f"{p.name}.png" for p in rendered])
        if data.profiles:  # the operator section (wattwise.analysis.profiles) comes last
            markdown = markdown.rstrip("\n") + "\n\n" + "\n".join(profiles_markdown(data.profiles))
        write_text_atomic(md_path, markdown)
        table_paths = write_tables(report_tables(data), out / "tables", latex=latex)
    except OSError as err:
        raise ReportError(f"cannot write the report to {out}: {err.strerror or err}") from err
    return ReportPaths(out, html_path, md_path, tuple(plot_paths), tuple(table_paths))
