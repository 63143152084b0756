"""``wattwise demo``: the bundled study on scikit-learn digits, offline, a few minutes on a CPU.

    from wattwise.experiment.demo import run_demo
    result = run_demo("results/demo")      # resumes: a second call only re-exports

The study is ``studies/demo.yaml`` inside this package (:func:`demo_config`): a baseline,
structured pruning, int8, distillation and a combined recipe, two learning rates, two seeds.
The results folder then holds ``results.sqlite``, ``study.yaml``, ``results.csv``,
``teachers/`` and, when :mod:`wattwise.analysis.report` is installed, its report.
"""

from __future__ import annotations

import importlib
import importlib.resources
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattwise.config import StudyConfig, load_study_config
from wattwise.experiment.executors import Executor
from wattwise.experiment.store import ResultsStore
from wattwise.experiment.sweep import StudySummary, run_study

#: Where ``wattwise demo`` leaves its results by default.
DEFAULT_OUT = "results/demo"
#: The bundled study, relative to this package.
DEMO_STUDY = "studies/demo.yaml"
#: The report module called after the demo when it is installed.
REPORT_MODULE = "wattwise.analysis.report"
CSV_FILE = "results.csv"


def demo_config() -> StudyConfig:
    """The bundled demo study, validated."""
    resource = importlib.resources.files("wattwise.experiment").joinpath(DEMO_STUDY)
    with importlib.resources.as_file(resource) as path:
        return load_study_config(path)


@dataclass(frozen=True)
class DemoResult:
    """What the demo left behind.

    Attributes:
        summary: The study's summary (counts, best accuracy, lowest energy, paths).
        csv_path: The CSV export of every trial.
        report: What the report module returned (a path), or ``None`` without one.
    """

    summary: StudySummary
    csv_path: Path
    report: Any = None

    def where(self) -> list[str]:
        """Lines telling where everything is."""
        s = self.summary
        lines = [
            f"results folder:  {s.study_dir}",
            f"  results store:   {s.store_path}",
            f"  resolved config: {s.config_path}",
            f"  CSV export:      {self.csv_path}",
        ]
        if self.report is not None:
            lines.append(f"  report:          {getattr(self.report, 'html', self.report)}")
        lines.append(f"list the trials:  wattwise results {s.study_dir}")
        return lines


def find_report(module: str = REPORT_MODULE) -> Any:
    """The report module if it is installed, else ``None`` (never raises for a missing one)."""
    try:
        found = importlib.util.find_spec(module)
    except (ModuleNotFoundError, ValueError):
        return None
    return importlib.import_module(module) if found is not None else None


def run_demo(
    out_dir: str | Path = DEFAULT_OUT,
    *,
    progress: bool = True,
    resume: bool = True,
    executor: Executor | None = None,
    config: StudyConfig | None = None,
    report_module: str = REPORT_MODULE,
    console: Any = None,
) -> DemoResult:
    """Runs the demo study into ``out_dir``, exports it as CSV and builds the report if the
    report module exists (``build_report(store_path, out_dir)``).

    Args:
        out_dir: The results folder (the study folder itself).
        progress: Live progress and the summary table.
        resume: Skip trials finished by an earlier demo run in the same folder.
        executor: Where trials run (default: in this process).
        config: Another study to run the same way (default :func:`demo_config`).
        report_module: The module that provides ``build_report``.
        console: A rich Console for the progress (default stdout).
    """
    config = config or demo_config()
    out = Path(out_dir)
    summary = run_study(
        config,
        study_dir=out,
        progress=progress,
        resume=resume,
        executor=executor,
        console=console,
    )
    csv_path = out / CSV_FILE
    with ResultsStore(summary.store_path) as store:
        store.export_csv(csv_path)
    report = None
    module = find_report(report_module)
    if module is not None:
        report = module.build_report(summary.store_path, out / "report")
    return DemoResult(summary, csv_path, report)
