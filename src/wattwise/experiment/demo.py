"""``wattwise demo``: the bundled study on scikit-learn digits, offline, a few minutes on a CPU.

    from wattwise.experiment.demo import run_demo
    result = run_demo("results/demo")      # resumes: a second call only re-exports

The study is ``studies/demo.yaml`` inside this package (:func:`demo_config`): a baseline,
structured pruning, int8, distillation and a combined recipe, two learning rates, two seeds.
The results folder then holds ``results.sqlite``, ``study.yaml``, ``results.csv``,
``teachers/`` and ``report/`` (:func:`wattwise.analysis.build_report`).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wattwise.analysis.report import build_report
from wattwise.config import StudyConfig, load_study_config
from wattwise.experiment.executors import Executor
from wattwise.experiment.store import ResultsStore
from wattwise.experiment.sweep import StudyReporter, StudySummary, run_study

#: Where ``wattwise demo`` leaves its results by default.
DEFAULT_OUT = "results/demo"
#: The bundled study, relative to this package.
DEMO_STUDY = "studies/demo.yaml"
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
        report: What :func:`wattwise.analysis.build_report` returned (the report's paths).
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


def run_demo(
    out_dir: str | Path = DEFAULT_OUT,
    *,
    reporter: StudyReporter | None = None,
    resume: bool = True,
    executor: Executor | None = None,
    config: StudyConfig | None = None,
) -> DemoResult:
    """Runs the demo study into ``out_dir``, exports it as CSV and builds its report.

    Args:
        out_dir: The results folder (the study folder itself).
        reporter: Told the study's progress and summary (default: none; nothing is printed).
        resume: Skip trials finished by an earlier demo run in the same folder.
        executor: Where trials run (default: in this process).
        config: Another study to run the same way (default :func:`demo_config`).
    """
    config = config or demo_config()
    out = Path(out_dir)
    summary = run_study(
        config,
        study_dir=out,
        reporter=reporter,
        resume=resume,
        executor=executor,
    )
    csv_path = out / CSV_FILE
    with ResultsStore(summary.store_path) as store:
        store.export_csv(csv_path)
    report = build_report(summary.store_path, out / "report")
    return DemoResult(summary, csv_path, report)
