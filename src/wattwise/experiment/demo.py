"""``wattwise demo``: the bundled study on scikit-learn digits, offline, a few minutes on a CPU.

    from wattwise.experiment.demo import run_demo
    result = run_demo("results/demo")      # resumes: a second call only re-exports

The study is ``studies/demo.yaml`` inside this package (:func:`demo_config`): ResNet-18 at a
quarter width on digits at 32 px, two seeds, each seed's baseline trained once and compressed by
fp32 compile, structured pruning, int8, pruning + int8 and pruning fine-tuned by distillation
from the baseline (a smaller student taught by its wider self);
then a short accuracy-aware recipe search on seed 0's trained baseline (the study's
``recipe_search`` section). The results folder then holds ``results.sqlite``, ``study.yaml``,
``results.csv``, ``baselines/``, ``teachers/``, ``search/`` and ``report/``
(:func:`wattwise.analysis.build_report`).
"""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from wattwise.analysis.report import build_report
from wattwise.config import StudyConfig, load_study_config
from wattwise.experiment.executors import Executor
from wattwise.experiment.store import ResultsStore
from wattwise.experiment.summary import StudySummary
from wattwise.experiment.sweep import StudyReporter, run_study

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
        search: The study's short recipe search on seed 0's trained baseline
            (:class:`~wattwise.optimize.recipe_search.SearchResult`), or ``None``.
    """

    summary: StudySummary
    csv_path: Path
    report: Any = None
    search: Any = None

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
        for found in s.searches:
            lines.append(f"  recipe search:   {found.path}")
        if self.search is not None:
            lines.append(f"recipe search: {self.search.message}")
        lines.append(f"list the trials:  wattwise results {s.study_dir}")
        return lines


def run_demo(
    out_dir: str | Path = DEFAULT_OUT,
    *,
    reporter: StudyReporter | None = None,
    resume: bool = True,
    executor: Executor | None = None,
    config: StudyConfig | None = None,
    search_budget: int | None = None,
) -> DemoResult:
    """Runs the demo study into ``out_dir``, exports it as CSV and builds its report.

    Args:
        out_dir: The results folder (the study folder itself).
        reporter: Told the study's progress, its recipe search's candidates
            (``on_recipe_candidate``) and its summary (default: none; nothing is printed).
        resume: Skip trials (and search candidates) finished by an earlier demo run in the
            same folder.
        executor: Where trials run (default: in this process).
        config: Another study to run the same way (default :func:`demo_config`).
        search_budget: Candidates of the study's recipe search (default: its
            ``recipe_search.budget``); 0: no search.
    """
    config = config or demo_config()
    if search_budget is not None and config.recipe_search is not None:
        section = replace(config.recipe_search, budget=search_budget) if search_budget else None
        config = replace(config, recipe_search=section)
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
    search = next((s.result for s in summary.searches if s.result is not None), None)
    report = build_report(summary.store_path, out / "report")
    return DemoResult(summary, csv_path, report, search)
