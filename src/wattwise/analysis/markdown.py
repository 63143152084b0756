"""The report's Markdown view: the headline, noise warnings, totals, recommendation, variants,
recipe searches, statistics, failures and plots of a :class:`~wattwise.analysis.report.ReportData`.

Every cell from the store is escaped (``<``, ``&``, ``|``): a ``<script>`` shows as text.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from wattwise.analysis.base import fmt, pct, ratio
from wattwise.analysis.metrics import config_label
from wattwise.units import (
    MASS_UNITS,
    column_unit,
    format_energy,
    format_mass,
    header,
    pick_unit,
    scaled,
)

#: A :class:`~wattwise.analysis.report.ReportData` (not imported: report imports this module).
ReportData = Any


def _md(value: Any) -> str:
    """Text for a Markdown table cell: one line, no pipes, no raw HTML."""
    text = " ".join(str(value).split())
    return text.replace("&", "&amp;").replace("<", "&lt;").replace("|", "\\|")


def _md_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _energy(value: Any) -> str:
    """A number of joules in a sentence, in the unit of its size (``430 J``, ``1.05 kJ``)."""
    return format_energy(value, spec=".4g")


def _headline(data: ReportData) -> list[str]:
    out = ["## Headline", ""]
    out += [f"- **{_md(line)}**" for line in data.headline] or ["- No finished trial."]
    out.append("")
    if data.noisy:
        out += ["> **WARNING: noisy measurements.** These trials' comparisons were flagged "
                "noisy; their verdicts may not hold:", ">"]  # fmt: skip
        out += [f"> - {_md(line)}" for line in data.noisy] + [""]
    c = data.costs
    if c is not None:
        out.append(
            f"Study total over {c.trials} ok trial(s): {_energy(c.total_energy_j)} — training "
            f"{_energy(c.training_energy_j)}, technique {_energy(c.technique_energy_j)} (teachers "
            f"{_energy(c.teacher_energy_j)}, each once), measurement "
            f"{_energy(c.measurement_energy_j)} (not in CO2e); CO2e {format_mass(c.co2e_g)} "
            f"(training {format_mass(c.co2e_training_g)}, technique "
            f"{format_mass(c.co2e_technique_g)}). Training avoided by sharing "
            f"{c.teachers} teacher(s): {_energy(c.teacher_training_avoided_j)}; by training "
            f"once and compressing many: {c.trainings} training(s) for {c.trials} trial(s), "
            f"{_energy(c.training_avoided_j)}."
            + (
                f" Not trials, so apart from that total: recipe search(es): "
                f"{_energy(data.search_energy_j)}; study and search together: "
                f"{_energy(data.study_and_search_energy_j)}."
                if data.searches
                else ""
            )
        )
        out.append("")
    return out


def render_markdown(data: ReportData, plot_files: Sequence[str] = ()) -> str:
    """A Markdown summary: headline, provenance, recommendation, variants, statistics, failures,
    plots."""
    c = data.counts
    out = [
        f"# wattwise report: {_md(data.study)}",
        "",
        f"Store `{_md(data.store_path)}`, generated {data.generated_utc}. Trials: {c['ok']} ok, "
        f"{c['failed']} failed, {c['running']} running (only ok trials enter the statistics).",
        "",
        *([f"> **{_md(data.devices)}**", ""] if data.devices else []),
        *_headline(data),
        f"> **Energy provenance: {data.provenance.status}.** {_md(data.provenance.headline)}",
        "",
    ]
    out += [f"- **{_md(line)}**" for line in data.provenance.suspect]
    out += [f"- {_md(e.sentence)}" for e in data.provenance.entries]
    out += [f"- {_md(data.carbon_note)}", ""]
    out += ["## Recommendation", "", f"> {_md(data.caveat)}", ""]
    for by, recs in data.recommendations.items():
        unit = "inference energy per image" if by == "inference" else "training energy"
        out += [f"Ranked by {unit}, floor {data.floor_points:g} point(s) below the baseline:", ""]
        out += [f"- {_md(r.message)}" for r in recs] + [""]
    out += ["## Variants (over seeds)", "",
            "Accuracy: the seeds' correct predictions pooled into one Wilson interval (95 %). "
            "Energy per trial, mean over seeds; cost = training + technique (a shared teacher "
            "charged 1/k); measurement is shown apart and not in CO2e. Saving: baseline J/image "
            "/ variant J/image from the interleaved comparison (95 % interval).", ""]  # fmt: skip
    vs = data.variants
    energies = ("training_energy_j", "technique_energy_j", "measurement_energy_j",
                "total_energy_j", "inference_energy_per_image_j")  # fmt: skip
    u = {k: column_unit(vs, k) for k in energies}
    g = pick_unit([x for v in vs for x in (v.co2e_training_g, v.co2e_technique_g)], MASS_UNITS)
    out += _md_table(
        ["variant", "n", "accuracy", "95 % CI (Wilson)",
         header("training", u["training_energy_j"]), header("technique", u["technique_energy_j"]),
         header("measurement", u["measurement_energy_j"]), header("total", u["total_energy_j"]),
         "accuracy per kJ of training + technique (1/kJ)",
         header("inference", u["inference_energy_per_image_j"], per="image"),
         "saving vs eager baseline", "saving vs best fp32",
         header("CO2e training / technique", g), "noisy"],
        [
            (v.label, v.n, pct(v.accuracy),
             f"{pct(v.accuracy_low)} – {pct(v.accuracy_high)}" if v.accuracy_low is not None
             else "—", *(scaled(getattr(v, k), u[k]) for k in list(u)[:4]),
             fmt(v.accuracy_per_kj_cost),
             scaled(v.inference_energy_per_image_j, u["inference_energy_per_image_j"]),
             ratio(v.saving, v.saving_low, v.saving_high)
             + ("" if v.saving_significant is None else
                " (significant)" if v.saving_significant else " (no significant difference)"),
             ratio(v.saving_vs_best_fp32, v.saving_vs_best_fp32_low, v.saving_vs_best_fp32_high)
             + (f" vs {v.best_fp32}" if v.best_fp32 else ""),
             f"{scaled(v.co2e_training_g, g)} / {scaled(v.co2e_technique_g, g)}",
             "NOISY: " + "; ".join(v.noise) if v.noisy else "")
            for v in data.variants
        ],
    )  # fmt: skip
    out += _searches(data)
    out += _statistics(data)
    out += _predictions(data)
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


def _predictions(data: ReportData) -> list[str]:
    """The prediction error of the live predictions of training energy and time."""
    pr = data.predictions
    out = ["## Predictions", ""]
    if pr is None or not pr.summaries:
        return [*out, "No trial stored a prediction.", ""]
    left = [f"{pr.stopped_early} stopped early"] if pr.stopped_early else []
    left += [f"{pr.without} without a prediction"] if pr.without else []
    because = f" (left out: {', '.join(left)})" if left else ""
    out.append(
        "Total energy and time of the `train` phase (training + validation passes) as predicted "
        "after each of the first epochs; error = (predicted − measured) / measured, over the ok "
        f"trials that ran all their epochs{because}."
    )
    out.append("")
    return out + _md_table(
        ["after epoch", "trials", "energy: mean abs. error", "energy: in interval",
         "time: mean abs. error", "time: in interval"],
        [
            (s.after_epoch, s.n, _pct1(s.energy_mae), f"{s.energy_covered} of {s.energy_n}",
             _pct1(s.duration_mae), f"{s.duration_covered} of {s.duration_n}")
            for s in pr.summaries
        ],
    )  # fmt: skip


def _searches(data: ReportData) -> list[str]:
    """Each recipe search of the study: what it searched, its conclusion, its candidates."""
    if not data.searches:
        return []
    out = ["## Recipe search", "",
           "Candidates by saving (baseline J/image / candidate J/image, 95 % interval); marks: "
           "`*` chosen, `P` on the accuracy–saving Pareto front, `=` not significantly "
           "different from the chosen one, `-` below the accuracy floor. The searches are not "
           "trials: the study total does not contain their energy.", ""]  # fmt: skip
    for s in data.searches:
        out += [
            f"### {_md(s.configuration)}, seed {_md(fmt(s.seed))} (trial {_md(s.trial_id)})",
            "",
            f"Sampler {_md(s.sampler or '—')}, baseline accuracy {pct(s.baseline_accuracy)}, "
            f"floor {pct(s.floor_accuracy)}.",
            "",
            f"- {_md(s.message)}",
            "",
        ]
        out += _md_table(
            ["marks", "recipe", "fine-tuning epochs", "accuracy", "saving (95 %)",
             "inference (mJ/image)", "within the floor", "energy spent (J)", "note"],
            [
                (r.marks, r.recipe, fmt(r.finetune_epochs), pct(r.accuracy),
                 ratio(r.saving, r.low, r.high), fmt(r.j_per_image, ".4g", 1000),
                 "—" if r.failed else "yes" if r.feasible else "no", fmt(r.energy_j),
                 f"failed: {r.reason or 'not measured'}" if r.failed
                 else "NOISY comparison" if r.noisy else "")
                for r in s.rows
            ],
        )  # fmt: skip
    return out


def _pct1(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def _statistics(data: ReportData) -> list[str]:
    s = data.statistics
    out = ["## Statistics", ""]
    for comp in s.comparisons:
        out.append(
            f"- {_md(comp.metric)}: {comp.test or 'no test'}, {comp.design} design "
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
    return out
