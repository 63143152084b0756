"""A training interrupted after an epoch continues from its saved state: the same weights as
uninterrupted, every epoch measured once, the uncounted remainder labelled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

from wattwise.data import DatasetSplits
from wattwise.energy.base import ComponentEnergy, Measurement, PowerSample, Provenance
from wattwise.energy.monitor import EnergyMonitor
from wattwise.energy.segments import combine
from wattwise.train import TrainConfig, fit
from wattwise.train.resume import ResumeFile

MakeCnn = Callable[..., nn.Module]
FastConfig = Callable[..., TrainConfig]


class Interrupt(Exception):
    """Stands for the signal or the kill that stops a training between two epochs."""


class StopAt:
    """A progress that interrupts the training when epoch ``at`` begins."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_epoch_start(self, epoch: int, epochs: int, batches: int) -> None:
        if epoch == self.at:
            raise Interrupt(f"epoch {epoch}")

    def on_batch(self, batch: int, loss: float) -> None:
        pass

    def on_epoch_end(self, epoch: int) -> None:
        pass


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("augment", [False, True])
def test_an_interrupted_training_resumes_to_the_uninterrupted_weights(
    tmp_path: Path,
    digits: DatasetSplits,
    make_cnn: MakeCnn,
    fast_config: FastConfig,
    augment: bool,
) -> None:
    config = fast_config(epochs=3, augment=augment, schedule="cosine", momentum=0.9)
    whole = make_cnn()
    straight = fit(whole, digits, config)

    resume = ResumeFile(tmp_path / "checkpoints" / "t.pt", every_s=0)
    with EnergyMonitor() as monitor, pytest.raises(Interrupt):
        fit(make_cnn(), digits, config, monitor=monitor, progress=StopAt(3), resume=resume)
    assert resume.path.is_file()  # saved after epochs 1 and 2
    first_attempt = [m for m in monitor.history if m.name.startswith("train/")]

    seen: list[int] = []
    again = make_cnn(seed=7)  # a fresh process: other initial weights, other RNG state
    torch.manual_seed(123)
    resumed = fit(again, digits, config, resume=resume, on_epoch=lambda r: seen.append(r.epoch))

    assert seen == [3]  # only the epoch that had not finished is trained
    assert resumed.extra["resumed"] == {"from_epoch": 2, "attempts": 2}
    assert [r.epoch for r in resumed.history] == [1, 2, 3]
    for name, value in _weights(whole).items():
        torch.testing.assert_close(_weights(again)[name], value, rtol=0, atol=0, msg=name)
    assert resumed.test_accuracy == straight.test_accuracy
    assert [r.train_loss for r in resumed.history] == [r.train_loss for r in straight.history]
    assert not resume.path.exists()  # the training ended: nothing left to resume

    # every joule once: the first attempt's epochs 1-2 plus this attempt's epoch 3 (and the
    # saves and gaps around them), labelled as a lower bound
    fit_m = resumed.fit
    assert fit_m is not None
    epochs_j = sum(m.total_energy_j for m in first_attempt) + resumed.history[2].energy_j
    assert fit_m.total_energy_j >= epochs_j * 0.999
    assert fit_m.duration_s >= sum(r.duration_s for r in resumed.history) * 0.999
    assert fit_m.suspect and all("resumed after epoch 2" in s for s in fit_m.suspect)


def test_a_state_of_another_training_is_not_resumed(
    tmp_path: Path, digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    resume = ResumeFile(tmp_path / "t.pt", every_s=0)
    with pytest.raises(Interrupt):
        fit(make_cnn(), digits, fast_config(epochs=3), progress=StopAt(2), resume=resume)
    other = fit(make_cnn(), digits, fast_config(epochs=3, lr=0.01), resume=resume)
    assert "resumed" not in other.extra and len(other.history) == 3
    assert not other.fit.suspect  # type: ignore[union-attr]


def test_a_damaged_state_trains_from_scratch(
    tmp_path: Path, digits: DatasetSplits, make_cnn: MakeCnn, fast_config: FastConfig
) -> None:
    resume = ResumeFile(tmp_path / "t.pt", every_s=0)
    resume.path.write_bytes(b"not a torch file")
    result = fit(make_cnn(), digits, fast_config(epochs=1), resume=resume)
    assert result.status == "ok" and "resumed" not in result.extra
    assert not resume.path.exists()


def test_saves_wait_every_s_and_never_follow_the_last_epoch(
    tmp_path: Path,
    digits: DatasetSplits,
    make_cnn: MakeCnn,
    fast_config: FastConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved: list[int] = []
    monkeypatch.setattr(ResumeFile, "save", lambda self, state: saved.append(state["epoch"]))
    fit(make_cnn(), digits, fast_config(epochs=3), resume=ResumeFile(tmp_path / "a.pt", 0))
    fit(make_cnn(), digits, fast_config(epochs=3), resume=ResumeFile(tmp_path / "b.pt", 3600))
    assert saved == [1, 2]  # every epoch but the last at 0 s; none within an hour


def _m(
    name: str, joules: float, seconds: float, *, peak: int, samples: int, start: float = 100.0
) -> Measurement:
    prov = Provenance.estimated("tdp", "cores x watts")
    return Measurement(
        name=name,
        start_unix_s=start,
        duration_s=seconds,
        components=(
            ComponentEnergy("cpu", joules, prov, joules / seconds),
            ComponentEnergy("gpu", None, Provenance.unavailable("no GPU")),
        ),
        peak_rss_bytes=peak,
        timeline=(PowerSample(0.0, {"cpu": 1.0}), PowerSample(seconds, {"cpu": 2.0})),
        samples=samples,
    )


def test_combined_segments_add_energy_and_time_and_keep_the_peaks() -> None:
    a = _m("fit", 10.0, 2.0, peak=5, samples=3)
    b = _m("fit", 5.0, 3.0, peak=9, samples=4, start=102.0)  # measured right after a
    joined = combine("fit", [a, b], note="resumed after epoch 1: a lower bound")
    assert joined.total_energy_j == 15.0 and joined.duration_s == 5.0
    assert joined.component("cpu").avg_power_w == 3.0
    assert joined.component("gpu").energy_j is None  # unavailable stays unavailable
    assert joined.peak_rss_bytes == 9 and joined.samples == 7
    assert [s.t_s for s in joined.timeline or ()] == [0.0, 2.0, 2.0, 5.0]
    assert joined.suspect == ("cpu: resumed after epoch 1: a lower bound",)
    assert joined.total_provenance == "estimated"
    assert combine("fit", [a]) is a


# --- the study setting -------------------------------------------------------------------------
@pytest.mark.parametrize("value", [-1, "often", True])
def test_checkpoint_every_s_is_a_non_negative_number_or_null(value: object) -> None:
    from wattwise.config import StudyConfig
    from wattwise.errors import ConfigError
    from wattwise.validation import validate

    with pytest.raises(ConfigError, match="checkpoint_every_s"):
        validate(StudyConfig, {"name": "s", "checkpoint_every_s": value}, "study config")
    assert (
        validate(StudyConfig, {"name": "s", "checkpoint_every_s": None}, "s").checkpoint_every_s
        is None
    )


def test_checkpoint_every_s_reaches_the_trial_outside_its_identity() -> None:
    from wattwise.config import StudyConfig
    from wattwise.experiment.spec import TrialSpec, expand_grid, training_key

    grid = {"batch_sizes": [32], "learning_rates": [0.1], "epochs": [1]}
    default, never = (
        expand_grid(StudyConfig(name="s", checkpoint_every_s=v, **grid))[0]  # type: ignore[arg-type]
        for v in (60.0, None)
    )
    assert (default.checkpoint_every_s, never.checkpoint_every_s) == (60.0, None)
    assert default.trial_id == never.trial_id  # how often it saves changes nothing measured
    assert training_key(default.to_dict()) == training_key(never.to_dict())
    assert "checkpoint_every_s" not in default.to_dict()  # stored specs stay as they were
    assert TrialSpec.from_dict(never.to_dict()).checkpoint_every_s is None
