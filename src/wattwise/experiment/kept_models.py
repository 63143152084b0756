"""The model each ok trial of a study keeps: its final variant, saved as ``wattwise optimize``
saves its final model (:func:`wattwise.optimize.saved_model.save_model`).

    <study>/models/<trial_id>/model.pt      a float variant: wattwise.load_model(path)
    <study>/models/<trial_id>/model.pt2     an int8 variant: torch.export.load(path).module()
    <study>/models/<trial_id>/model.json    what was saved: the record's details["model"]

A study's recommendation names a configuration; these files are what to deploy of it, without
training it again. Each file is written atomically, ``model.json`` last: a folder with
``model.json`` holds a complete model, and a trial that runs again (resumed after a crash, or
without resume) keeps it instead of writing another. A model no format can store (dynamic int8)
or a failing disk is recorded (``{"saved": False, "reason": ...}``), never a failed trial: what
the trial measured stands. The study's ``keep_models: false`` turns it off (huge grids).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wattwise.data import DatasetSplits
from wattwise.files import write_json_atomic
from wattwise.optimize.base import PreparedModel
from wattwise.optimize.saved_model import example_batch, save_model

#: The folder of a study that holds the kept models, one subfolder per trial id.
MODEL_DIR = "models"

#: The file beside each kept model that says what it is (the trial record's ``details["model"]``).
MODEL_RECORD = "model.json"


def keep_model(
    trial_id: str,
    final: PreparedModel,
    data: DatasetSplits,
    model_spec: dict[str, Any],
    study_dir: Path,
) -> dict[str, Any]:
    """Saves a trial's final variant in ``study_dir/models/<trial_id>/``, unless a run before
    saved it there, and returns what the trial records of it.

    Args:
        trial_id: The trial's id (its folder's name).
        final: The final variant (``RecipeResult.final``).
        data: The trial's dataset: an int8 graph is exported with its first test images.
        model_spec: ``{"name": ..., **create_model arguments}`` of the trained model.
        study_dir: The study folder.

    Returns:
        ``{"saved": True, "path": <relative to the study folder>, "format", "precision",
        "channels_last", "contents"}`` (with ``"existing": True`` when a run before wrote it),
        or ``{"saved": False, "reason": <one line>}``.
    """
    folder = study_dir / MODEL_DIR / trial_id
    earlier = _kept_before(folder, study_dir)
    if earlier is not None:
        return {**earlier, "existing": True}
    try:
        saved = save_model(final, folder, model_spec, example_batch(final, data))
        path = saved.path.relative_to(study_dir).as_posix()
        entry = {"saved": True, **saved.to_dict(), "path": path}
        write_json_atomic(folder / MODEL_RECORD, entry)
    except Exception as err:  # the trial measured what it measured: a model not kept is a note
        text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
        return {"saved": False, "reason": " ".join(text.split())[:500]}
    return entry


def _kept_before(folder: Path, study_dir: Path) -> dict[str, Any] | None:
    """What an earlier run of the trial saved in ``folder``, if its model file is there."""
    try:
        entry = json.loads((folder / MODEL_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    path = entry.get("path") if isinstance(entry, dict) else None
    if not isinstance(path, str) or not entry.get("saved") or not (study_dir / path).is_file():
        return None
    return entry
