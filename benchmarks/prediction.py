"""How well a training run's total energy and time are predicted from its first epochs.

Run: ``.venv/bin/python benchmarks/prediction.py [--seeds 3] [--epochs 6] [--json out.json]``
or, on runs that ``wattwise train`` saved: ``benchmarks/prediction.py --runs runs/*/run.json``,
or on a study's trainings (trials that reused a training predicted nothing):
``benchmarks/prediction.py --store results/demo``.

Trains small_cnn on digits (8 px, and 32 px: upsampled, ~4.5x the time per epoch) with
:func:`wattwise.experiment.runner.run_trial` (technique ``baseline``, one thread, no inference
measurement), one trial after another in this process (as a local sweep does: only the first is
cold), and prints for each trial the errors of the predictions it stored
(``details["prediction"]``, :mod:`wattwise.train.predict`) against its measured ``train`` phase,
whether the outcome fell inside the interval (the JSON adds each epoch's cost relative to
epoch 1: the spread that the bands must cover), then the summary over all trials
(:func:`wattwise.analysis.prediction.prediction_summary`, what the report shows).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

from wattwise.analysis.prediction import prediction_summary, trial_prediction_errors
from wattwise.config import MeasurementSettings
from wattwise.experiment.record import TrialRecord


def trials(seeds: int, epochs: int) -> list[Any]:
    from wattwise.experiment.spec import TrialSpec
    from wattwise.train import TrainConfig

    specs = []
    for size in (None, 32):
        for seed in range(seeds):
            train = TrainConfig(
                epochs=epochs, batch_size=32, lr=0.05, hflip=False, num_threads=1,
                device="cpu", seed=seed,
            )  # fmt: skip
            specs.append(
                TrialSpec(
                    study="prediction",
                    dataset="digits",
                    model="small_cnn",
                    technique="baseline",
                    train=train,
                    measurement=MeasurementSettings(inference_s=0),
                    image_size=size,
                    width=1.0,
                    weights=None,
                    val_fraction=0.1,
                )
            )
    return specs


def row(record: TrialRecord) -> dict[str, Any]:
    first = record.history[0]
    return {
        "trial": f"{record.details['dataset']['image_size']} px seed {record.spec['seed']}",
        "energy_per_epoch_vs_epoch1": [
            round(h["energy_j"] / first["energy_j"], 3) for h in record.history
        ],
        "duration_per_epoch_vs_epoch1": [
            round(h["duration_s"] / first["duration_s"], 3) for h in record.history
        ],
        "train_energy_j": record.train_energy_j,
        "train_duration_s": record.phases["train"]["duration_s"],
        "predictions": [e.to_dict() for e in trial_prediction_errors(record)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--runs", nargs="*", help="run.json files instead of training here")
    parser.add_argument("--store", help="a study folder (e.g. results/demo): its trainings")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    load_before = os.getloadavg()
    if args.store:
        from wattwise.experiment import ResultsStore
        from wattwise.experiment.store import STORE_FILE

        with ResultsStore(Path(args.store) / STORE_FILE, read_only=True) as store:
            records = [r for r in store.records("ok") if "train" in r.phases]  # trained here
    elif args.runs:
        records = [TrialRecord.from_dict(json.loads(Path(p).read_text())) for p in args.runs]
    else:
        from wattwise.experiment.runner import run_trial

        records = [run_trial(spec) for spec in trials(args.seeds, args.epochs)]
    rows = [row(r) for r in records if r.status == "ok"]
    for r in rows:
        errors = "  ".join(
            f"ep{p['after_epoch']}: E {100 * p['energy_error']:+.1f}%"
            f"{'' if p['energy_in_interval'] else '!'} t {100 * p['duration_error']:+.1f}%"
            f"{'' if p['duration_in_interval'] else '!'}"
            for p in r["predictions"]
        )
        print(f"{r['trial']:>14}  {r['train_energy_j']:7.2f} J {r['train_duration_s']:6.2f} s  "
              f"{errors}   (! = outside the interval)")  # fmt: skip
    summary = prediction_summary(records)
    for s in summary.summaries:
        print(f"after epoch {s.after_epoch}: n={s.n}, energy MAE {100 * (s.energy_mae or 0):.1f} % "
              f"({s.energy_covered} in interval), time MAE {100 * (s.duration_mae or 0):.1f} % "
              f"({s.duration_covered} in interval)")  # fmt: skip
    report = {
        "benchmark": "prediction",
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "trials": rows,
        "summary": summary.to_dict(),
    }
    if args.json:
        from wattwise.files import write_json_atomic

        write_json_atomic(args.json, report)


if __name__ == "__main__":
    main()
