"""``measurement.profile`` and trial identity: profiling changes timing and energy (the profiled
steps run slower), so a profiled trial is another trial; off, it leaves every id unchanged."""

from __future__ import annotations

from tests.experiment.test_spec import FIXED_SPEC, spec_of
from wattwise.experiment.spec import TrialSpec, training_key


def test_profile_off_keeps_the_ids_of_trials_stored_before_it_existed() -> None:
    assert spec_of().trial_id == "f8ae59817ac03d34"  # the golden id of test_spec
    off = {**FIXED_SPEC["measurement"], "profile": False}
    assert spec_of(measurement=off).trial_id == "f8ae59817ac03d34"


def test_a_profiled_trial_is_another_trial_with_the_same_training() -> None:
    on = spec_of(measurement={**FIXED_SPEC["measurement"], "profile": True})
    assert on.measurement.profile is True
    assert on.trial_id != spec_of().trial_id
    assert TrialSpec.from_dict(on.to_dict()).trial_id == on.trial_id
    # the weights a profiled training produces are the same: the trained baseline is shared
    assert training_key(on.to_dict()) == training_key(spec_of().to_dict())
