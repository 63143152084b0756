"""``wattwise demo``: the bundled study on scikit-learn digits, offline, a few minutes on a CPU.

    from wattwise.experiment.demo import run_demo
    result = run_demo("results/demo")      # resumes: a second call only re-exports

The study is ``studies/demo.yaml`` inside this package (:func:`demo_config`): ResNet-18 at a
quarter width on digits at 32 px, two seeds, each seed's baseline trained once and compressed by
fp32 compile, structured pruning, int8, pruning + int8 and distillation from a wider teacher;
then a short accuracy-aware recipe search on seed 0's trained baseline. The results folder then
holds ``results.sqlite``, ``study.yaml``, ``results.csv``, ``baselines/``, ``teachers/``,
``search.json`` and ``report/`` (:func:`wattwise.analysis.build_report`).
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Callable
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
#: The demo's recipe search: its result (the candidates and the choice) next to the study.
SEARCH_FILE = "search.json"
#: Candidates of the demo's accuracy-aware search (the 10-minute budget allows two).
SEARCH_BUDGET = 2


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
        search: The short recipe search on seed 0's trained baseline
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
        if self.search is not None:
            lines.append(f"  recipe search:   {s.study_dir / SEARCH_FILE}")
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
    search_budget: int = SEARCH_BUDGET,
    on_candidate: Callable[[Any, int, int], None] | None = None,
) -> DemoResult:
    """Runs the demo study into ``out_dir``, exports it as CSV and builds its report.

    Args:
        out_dir: The results folder (the study folder itself).
        reporter: Told the study's progress and summary (default: none; nothing is printed).
        resume: Skip trials finished by an earlier demo run in the same folder.
        executor: Where trials run (default: in this process).
        config: Another study to run the same way (default :func:`demo_config`).
        search_budget: Candidates of the accuracy-aware search on the first trained baseline
            (the level search over one pruning ratio, each with int8); 0: no search.
        on_candidate: Told each measured search candidate, its index and the budget.
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
    search = _search(out, config, search_budget, on_candidate) if search_budget else None
    report = build_report(summary.store_path, out / "report")
    return DemoResult(summary, csv_path, report, search)


def _search(
    out: Path,
    config: StudyConfig,
    budget: int,
    on_candidate: Callable[[Any, int, int], None] | None,
) -> Any:
    """The level search (one pruning ratio in [0.3, 0.9], int8 on top, within 1 accuracy
    point) on the first trained baseline of the study, measured like the trials; resumed with
    the demo. It starts at 0.6: the study itself measured 0.5."""
    from wattwise.experiment.baselines import BASELINE_DIR, baseline_key
    from wattwise.experiment.runner import load_trial_data, recipe_settings
    from wattwise.experiment.spec import expand_grid
    from wattwise.files import write_json_atomic
    from wattwise.optimize.recipe_search import SearchSettings, SearchSpace, search_recipes
    from wattwise.train.checkpoint import load_checkpoint

    spec = next((s for s in expand_grid(config) if s.technique == "baseline"), None)
    path = out / BASELINE_DIR / f"{baseline_key(spec)}.pt" if spec is not None else None
    if path is None or not path.is_file():
        return None  # no trained baseline to search on (the baseline trial failed)
    checkpoint = load_checkpoint(path)
    data = load_trial_data(spec)
    space = SearchSpace(ratio_low=0.3, ratio_high=0.9, importances=("magnitude",), steps=(1,),
                        finetune_epochs=(2,), int8=("static",), channels_last=False)  # fmt: skip
    result = search_recipes(
        checkpoint.build_model(),
        data,
        settings=SearchSettings(budget=budget, floor_points=1.0, sampler="level"),
        space=space,
        recipe_settings=recipe_settings(spec, (), "cpu"),  # int8 candidates run on the CPU
        model_spec=checkpoint.model_spec,
        storage=out / "search.sqlite",
        on_candidate=on_candidate,
    )
    write_json_atomic(out / SEARCH_FILE, result.to_dict())
    return result
