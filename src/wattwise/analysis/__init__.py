"""Analysis of a study's results store: metrics, Pareto front, statistics, plots and the report.

    from wattwise.analysis import build_report, summarize, recommend, pareto_front

    paths = build_report("results/seed-study")        # report.html, report.md, plots/

The analysis reads the results store (:class:`~wattwise.experiment.ResultsStore`) and nothing
else of the experiment machinery. Importing this package is cheap: SciPy, statsmodels,
matplotlib and Jinja2 are imported when a name that needs them is first used. See
docs/analysis.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY = {
    # metrics
    "RATIO_CAVEAT": "wattwise.analysis.metrics",
    "TrialMetrics": "wattwise.analysis.metrics",
    "VariantSummary": "wattwise.analysis.metrics",
    "Recommendation": "wattwise.analysis.metrics",
    "Payback": "wattwise.analysis.metrics",
    "accuracy_per_kj_train": "wattwise.analysis.metrics",
    "accuracy_per_j_per_image": "wattwise.analysis.metrics",
    "accuracy_per_kj_per_1000_images": "wattwise.analysis.metrics",
    "energy_per_correct_j": "wattwise.analysis.metrics",
    "co2e_g": "wattwise.analysis.metrics",
    "trial_metrics": "wattwise.analysis.metrics",
    "paybacks": "wattwise.analysis.metrics",
    "pareto_front": "wattwise.analysis.metrics",
    "summarize": "wattwise.analysis.metrics",
    "recommend": "wattwise.analysis.metrics",
    # stats
    "MeanCI": "wattwise.analysis.stats",
    "Correlation": "wattwise.analysis.stats",
    "GroupComparison": "wattwise.analysis.stats",
    "EnergyModel": "wattwise.analysis.stats",
    "StudyStatistics": "wattwise.analysis.stats",
    "mean_ci": "wattwise.analysis.stats",
    "correlate": "wattwise.analysis.stats",
    "compare_groups": "wattwise.analysis.stats",
    "holm": "wattwise.analysis.stats",
    "energy_drivers": "wattwise.analysis.stats",
    "study_statistics": "wattwise.analysis.stats",
    # plots
    "PLOTS": "wattwise.analysis.plots",
    "save_all": "wattwise.analysis.plots",
    # report
    "ReportError": "wattwise.analysis.report",
    "ReportPaths": "wattwise.analysis.report",
    "build_report": "wattwise.analysis.report",
    "load_study": "wattwise.analysis.report",
    "find_store": "wattwise.analysis.report",
}

if TYPE_CHECKING:  # pragma: no cover
    from wattwise.analysis.metrics import (
        RATIO_CAVEAT,
        Payback,
        Recommendation,
        TrialMetrics,
        VariantSummary,
        accuracy_per_j_per_image,
        accuracy_per_kj_per_1000_images,
        accuracy_per_kj_train,
        co2e_g,
        energy_per_correct_j,
        pareto_front,
        paybacks,
        recommend,
        summarize,
        trial_metrics,
    )
    from wattwise.analysis.plots import PLOTS, save_all
    from wattwise.analysis.report import (
        ReportError,
        ReportPaths,
        build_report,
        find_store,
        load_study,
    )
    from wattwise.analysis.stats import (
        Correlation,
        EnergyModel,
        GroupComparison,
        MeanCI,
        StudyStatistics,
        compare_groups,
        correlate,
        energy_drivers,
        holm,
        mean_ci,
        study_statistics,
    )

__all__ = [
    "PLOTS",
    "RATIO_CAVEAT",
    "Correlation",
    "EnergyModel",
    "GroupComparison",
    "MeanCI",
    "Payback",
    "Recommendation",
    "ReportError",
    "ReportPaths",
    "StudyStatistics",
    "TrialMetrics",
    "VariantSummary",
    "accuracy_per_j_per_image",
    "accuracy_per_kj_per_1000_images",
    "accuracy_per_kj_train",
    "build_report",
    "co2e_g",
    "compare_groups",
    "correlate",
    "energy_drivers",
    "energy_per_correct_j",
    "find_store",
    "holm",
    "load_study",
    "mean_ci",
    "pareto_front",
    "paybacks",
    "recommend",
    "save_all",
    "study_statistics",
    "summarize",
    "trial_metrics",
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
