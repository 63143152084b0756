"""The study report: one self-contained HTML file, a Markdown summary and the plots.

    from wattwise.analysis import build_report
    paths = build_report("results/seed-study", "results/seed-study/report", floor_points=1.0)
    paths.html, paths.markdown, paths.plots

The HTML file needs no network: plots are embedded as base64 PNG, tables sort with a few lines of
inline JavaScript, styles are inline. Every string from the store (study, dataset and technique
names, failure reasons, config values, provenance details) is HTML-escaped by Jinja2's
autoescaping. Failed trials are listed with their reasons and left out of every statistic.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import platform
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wattwise.analysis.metrics import (
    RATIO_CAVEAT,
    EnergyBasis,
    Payback,
    Recommendation,
    TrialMetrics,
    VariantSummary,
    config_label,
    pareto_front,
    paybacks,
    recommend,
    summarize,
    trial_metrics,
)
from wattwise.analysis.plots import PLOTS, save_all
from wattwise.analysis.stats import StudyStatistics, study_statistics
from wattwise.errors import WattwiseError
from wattwise.experiment.record import TrialRecord
from wattwise.experiment.store import ResultsStore

STORE_FILE = "results.sqlite"
_SQLITE_MAGIC = b"SQLite format 3\x00"


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


def find_store(path: str | Path) -> Path:
    """The results store of ``path``: a study folder holding ``results.sqlite``, or the file.

    Raises:
        ReportError: Nothing there, not a SQLite file, or a SQLite file without a results table.
    """
    p = Path(path)
    if p.is_dir():
        store = p / STORE_FILE
        if not store.is_file():
            raise ReportError(
                f"{p} holds no {STORE_FILE}: pass a study folder or its results store"
            )
    elif p.is_file():
        store = p
    else:
        raise ReportError(f"{p}: no such study folder or results store")
    try:
        with open(store, "rb") as file:
            magic = file.read(len(_SQLITE_MAGIC))
    except OSError as err:
        raise ReportError(f"cannot read {store}: {err.strerror or err}") from err
    if magic != _SQLITE_MAGIC:
        raise ReportError(f"{store} is not a wattwise results store (not a SQLite file)")
    try:  # read-only look first: ResultsStore would add its tables to any SQLite file
        conn = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True)
        try:
            names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        finally:
            conn.close()
    except sqlite3.Error as err:
        raise ReportError(f"{store} is not a usable wattwise results store: {err}") from err
    if not {"trials", "meta"} <= names:
        raise ReportError(f"{store} is not a wattwise results store (no trials table)")
    return store


@dataclass(frozen=True)
class StudyData:
    """A study as read from its store: every record (any status) and the store's metadata."""

    store_path: Path
    study: str
    records: tuple[TrialRecord, ...]
    config_yaml: str | None = None

    @property
    def ok(self) -> list[TrialRecord]:
        return [r for r in self.records if r.status == "ok"]

    def counts(self) -> dict[str, int]:
        counts = Counter(r.status for r in self.records)
        return {s: counts.get(s, 0) for s in ("ok", "failed", "running")}


def load_study(path: str | Path) -> StudyData:
    """Reads every record of the study at ``path`` (see :func:`find_store`)."""
    store_path = find_store(path)
    with ResultsStore(store_path) as store:
        meta = store.meta()
        records = tuple(store.records())
    study = meta.get("study") or next((r.study for r in records if r.study), store_path.parent.name)
    return StudyData(store_path, study, records, meta.get("config_yaml"))


# --- where the energy numbers came from ----------------------------------------------------------


@dataclass(frozen=True)
class ProvenanceEntry:
    """One (component, provenance, detail) seen in the study's measurements."""

    component: str
    kind: str
    label: str
    detail: str
    phases: tuple[str, ...]
    trials: int

    @property
    def sentence(self) -> str:
        """One line for the report, e.g. "CPU energy is an estimate (estimated:tdp): TDP ..."."""
        name = self.component.split(":", 1)[0].upper()
        if ":" in self.component:
            name += f" ({self.component})"
        if self.kind == "estimated":
            text = f"{name} energy is an estimate ({self.label}): {self.detail}"
            if self.label == "estimated:tdp":
                text += " — no RAPL counter was used on this machine"
            return text + "."
        if self.kind == "measured":
            return f"{name} energy was measured ({self.label}): {self.detail or '—'}."
        return f"{name} energy was not measured: {self.detail or 'unavailable'}."


@dataclass(frozen=True)
class ProvenanceSummary:
    """The study's energy provenance: ``status`` is ``measured``, ``estimated`` (every summed
    component is an estimate), ``mixed`` or ``unavailable`` (no energy at all)."""

    status: str
    entries: tuple[ProvenanceEntry, ...]
    headline: str


def energy_provenance(records: Iterable[TrialRecord]) -> ProvenanceSummary:
    """Collects the provenance of every component of every phase of the ``ok`` records."""
    seen: dict[tuple[str, str, str], tuple[set[str], set[str]]] = {}
    kinds_summed: set[str] = set()
    fallback: set[str] = set()
    for rec in records:
        if rec.status != "ok":
            continue
        fallback.update(
            p for p in (rec.train_energy_provenance, rec.inference_energy_provenance) if p
        )
        for phase_name, phase in rec.phases.items():
            for comp in (phase or {}).get("components") or []:
                prov = comp.get("provenance") or {}
                kind = str(prov.get("kind", "unavailable"))
                label = str(prov.get("label") or kind)
                key = (str(comp.get("component", "?")), label, str(prov.get("detail", "")))
                phases, trials = seen.setdefault(key, (set(), set()))
                phases.add(phase_name.split("/", 1)[0])
                trials.add(rec.trial_id)
                if comp.get("nested_in") is None and comp.get("energy_j") is not None:
                    kinds_summed.add(kind)
    entries = tuple(
        ProvenanceEntry(comp, label.split(":", 1)[0], label, detail, tuple(sorted(ph)), len(tr))
        for (comp, label, detail), (ph, tr) in sorted(seen.items())
    )
    kinds = kinds_summed or {k for k in fallback if k != "unavailable"}
    status = "mixed" if "mixed" in kinds or len(kinds) > 1 else next(iter(kinds), "unavailable")
    headline = {
        "estimated": "Every energy number in this study is an ESTIMATE: no hardware energy "
        "counter (RAPL, NVML) was used. Compare variants with each other; do not quote the "
        "absolute joules as measurements.",
        "mixed": "Energy is partly measured and partly ESTIMATED: the components marked "
        "'estimated' below come from a model, not a counter.",
        "measured": "Every energy number in this study was measured by hardware counters or "
        "power sensors.",
        "unavailable": "No energy was recorded in this study's finished trials.",
    }[status]
    return ProvenanceSummary(status, entries, headline)


def environment_summary(records: Iterable[TrialRecord]) -> list[tuple[str, str, int]]:
    """``(key, value, trials)`` for each distinct environment value (software, hardware)."""
    values: dict[str, Counter[str]] = defaultdict(Counter)
    for rec in records:
        for key, value in rec.environment.items():
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            values[str(key)][text] += 1
    return [(k, v, n) for k in sorted(values) for v, n in values[k].most_common()]


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
    caveat: str = RATIO_CAVEAT


def _front_labels(variants: Sequence[VariantSummary], by: EnergyBasis) -> tuple[str, ...]:
    labels: list[str] = []
    tasks: dict[tuple[Any, Any], list[VariantSummary]] = defaultdict(list)
    for v in variants:
        tasks[(v.dataset, v.model)].append(v)
    for group in tasks.values():
        labels += [
            group[i].label for i in pareto_front([(v.accuracy, v.energy(by)) for v in group])
        ]
    return tuple(labels)


def report_data(
    study: StudyData,
    *,
    floor_points: float = 1.0,
    by: EnergyBasis = "inference",
    plots: Sequence[tuple[str, str, str]] = (),
) -> ReportData:
    """Computes every number of the report from ``study`` (``ok`` trials only)."""
    ok = study.ok
    trials = tuple(trial_metrics(r) for r in ok)
    variants = tuple(summarize(trials))
    order: tuple[EnergyBasis, ...] = (by, "train" if by == "inference" else "inference")
    recommendations = {
        b: tuple(recommend(variants, floor_points=floor_points, by=b)) for b in order
    }
    flags = {f.label: f.reasons for r in recommendations[by] for f in r.flagged}
    return ReportData(
        study=study.study,
        store_path=str(study.store_path),
        generated_utc=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        counts=study.counts(),
        floor_points=floor_points,
        by=by,
        variants=variants,
        pareto={b: _front_labels(variants, b) for b in ("train", "inference")},
        trials=trials,
        recommendations=recommendations,
        flags=flags,
        paybacks=tuple(p for r in ok for p in paybacks(r) if p.step != "baseline"),
        statistics=study_statistics([t.to_dict() for t in trials]),
        provenance=energy_provenance(ok),
        environment=tuple(environment_summary(study.records)),
        analysis_environment=tuple(_analysis_environment()),
        failed=tuple(r for r in study.records if r.status == "failed"),
        running=tuple(r for r in study.records if r.status == "running"),
        plots=tuple(plots),
        config_yaml=study.config_yaml,
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
    out += [f"- {_md(e.sentence)}" for e in data.provenance.entries] + [""]
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
    try:
        out.mkdir(parents=True, exist_ok=True)
        plot_paths = save_all(study.ok, out / "plots")
    except OSError as err:
        raise ReportError(f"cannot write the report to {out}: {err.strerror or err}") from err
    captions = {p.name: p.title for p in PLOTS}
    embedded = [
        (p.stem, captions.get(p.stem, p.stem), base64.b64encode(p.read_bytes()).decode("ascii"))
        for p in plot_paths
        if p.suffix == ".png"
    ]
    data = report_data(study, floor_points=floor_points, by=by, plots=embedded)
    html_path, md_path = out / "report.html", out / "report.md"
    try:
        html_path.write_text(render_html(data), encoding="utf-8")
        md_path.write_text(
            render_markdown(data, [p.name for p in plot_paths if p.suffix == ".png"]),
            encoding="utf-8",
        )
    except OSError as err:
        raise ReportError(f"cannot write the report to {out}: {err.strerror or err}") from err
    return ReportPaths(out, html_path, md_path, tuple(plot_paths))
