"""Analysis of a study's results store: metrics, Pareto front, statistics, plots and the report.

    from wattwise.analysis import analyze, build_report, recommend

    paths = build_report("results/seed-study")        # report.html, report.md, plots/
    analysis = analyze(records, carbon)                # metrics, variants, Pareto fronts, once
    recommend(analysis.variants, floor_points=1.0)

The analysis reads the results store (:class:`~wattwise.experiment.ResultsStore`) and nothing
else of the experiment machinery. Importing this package is cheap: SciPy, statsmodels,
matplotlib and Jinja2 are imported when a name that needs them is first used. See
docs/analysis.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    # metrics: one analysis of a study, computed once
    "Analysis": "wattwise.analysis.metrics",
    "TrialMetrics": "wattwise.analysis.metrics",
    "VariantSummary": "wattwise.analysis.metrics",
    "Payback": "wattwise.analysis.metrics",
    "analyze": "wattwise.analysis.metrics",
    "energy_per_correct_j": "wattwise.analysis.metrics",
    "co2e_g": "wattwise.analysis.costs",
    # costs: every joule in one category, teachers charged 1/k
    "TrialCosts": "wattwise.analysis.costs",
    "StudyCosts": "wattwise.analysis.costs",
    "trial_costs": "wattwise.analysis.costs",
    "study_costs": "wattwise.analysis.costs",
    "teacher_shares": "wattwise.analysis.costs",
    "baseline_shares": "wattwise.analysis.costs",
    # intervals of the decisions
    "Interval": "wattwise.analysis.intervals",
    "wilson": "wattwise.analysis.intervals",
    "accuracy_interval": "wattwise.analysis.intervals",
    "difference": "wattwise.analysis.intervals",
    "welch_ratio": "wattwise.analysis.intervals",
    "trial_metrics": "wattwise.analysis.trials",
    "paybacks": "wattwise.analysis.metrics",
    "pareto_front": "wattwise.analysis.metrics",
    "summarize": "wattwise.analysis.metrics",
    # the efficiency ratios: the record's own formulas (TrialRecord properties)
    "accuracy_per_kj_train": "wattwise.experiment.record",
    "accuracy_per_j_per_image": "wattwise.experiment.record",
    # recommendation
    "RATIO_CAVEAT": "wattwise.analysis.recommendation",
    "FlaggedVariant": "wattwise.analysis.recommendation",
    "Candidate": "wattwise.analysis.recommendation",
    "Recommendation": "wattwise.analysis.recommendation",
    "flag_reasons": "wattwise.analysis.recommendation",
    "recommend": "wattwise.analysis.recommendation",
    # stats
    "MeanCI": "wattwise.analysis.stats",
    "Correlation": "wattwise.analysis.stats",
    "StudyStatistics": "wattwise.analysis.stats",
    "mean_ci": "wattwise.analysis.stats",
    "correlate": "wattwise.analysis.stats",
    "study_statistics": "wattwise.analysis.stats",
    # comparison of techniques (paired and independent designs)
    "GroupComparison": "wattwise.analysis.comparison",
    "compare_groups": "wattwise.analysis.comparison",
    "holm": "wattwise.analysis.comparison",
    # regression
    "EnergyModel": "wattwise.analysis.regression",
    "energy_drivers": "wattwise.analysis.regression",
    # plots
    "PLOTS": "wattwise.analysis.plots",
    "figures": "wattwise.analysis.plots",
    "render_plots": "wattwise.analysis.plots",
    "save_all": "wattwise.analysis.plots",
    # report
    "ReportError": "wattwise.analysis.report",
    "ReportPaths": "wattwise.analysis.report",
    "build_report": "wattwise.analysis.report",
    "load_study": "wattwise.analysis.report",
    "find_store": "wattwise.analysis.report",
    "study_carbon": "wattwise.analysis.report",
}

if TYPE_CHECKING:  # pragma: no cover
    from wattwise.analysis.comparison import GroupComparison, compare_groups, holm
    from wattwise.analysis.costs import (
        StudyCosts,
        TrialCosts,
        baseline_shares,
        co2e_g,
        study_costs,
        teacher_shares,
        trial_costs,
    )
    from wattwise.analysis.intervals import (
        Interval,
        accuracy_interval,
        difference,
        welch_ratio,
        wilson,
    )
    from wattwise.analysis.metrics import (
        Analysis,
        Payback,
        TrialMetrics,
        VariantSummary,
        analyze,
        energy_per_correct_j,
        pareto_front,
        paybacks,
        summarize,
    )
    from wattwise.analysis.plots import PLOTS, figures, render_plots, save_all
    from wattwise.analysis.recommendation import (
        RATIO_CAVEAT,
        Candidate,
        FlaggedVariant,
        Recommendation,
        flag_reasons,
        recommend,
    )
    from wattwise.analysis.regression import EnergyModel, energy_drivers
    from wattwise.analysis.report import (
        ReportError,
        ReportPaths,
        build_report,
        find_store,
        load_study,
        study_carbon,
    )
    from wattwise.analysis.stats import (
        Correlation,
        MeanCI,
        StudyStatistics,
        correlate,
        mean_ci,
        study_statistics,
    )
    from wattwise.analysis.trials import trial_metrics
    from wattwise.experiment.record import accuracy_per_j_per_image, accuracy_per_kj_train

__all__ = [
    "PLOTS",
    "RATIO_CAVEAT",
    "Analysis",
    "Candidate",
    "Correlation",
    "EnergyModel",
    "FlaggedVariant",
    "GroupComparison",
    "Interval",
    "MeanCI",
    "Payback",
    "Recommendation",
    "ReportError",
    "ReportPaths",
    "StudyCosts",
    "StudyStatistics",
    "TrialCosts",
    "TrialMetrics",
    "VariantSummary",
    "accuracy_interval",
    "accuracy_per_j_per_image",
    "accuracy_per_kj_train",
    "analyze",
    "baseline_shares",
    "build_report",
    "co2e_g",
    "compare_groups",
    "correlate",
    "difference",
    "energy_drivers",
    "energy_per_correct_j",
    "figures",
    "find_store",
    "flag_reasons",
    "holm",
    "load_study",
    "mean_ci",
    "pareto_front",
    "paybacks",
    "recommend",
    "render_plots",
    "save_all",
    "study_carbon",
    "study_costs",
    "study_statistics",
    "summarize",
    "teacher_shares",
    "trial_costs",
    "trial_metrics",
    "welch_ratio",
    "wilson",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'wattwise.analysis' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
