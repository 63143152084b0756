"""Operator profiles of a recipe's variants: each variant's inference under torch.profiler.

    profiles = profile_variants(result, data, settings, monitor)   # after run_recipe

Each variant (the baseline, then each step) runs a few inference batches in its own profiled
window ``profile/<variant>`` (:func:`wattwise.energy.profiler.profile_batches`) *after* the
comparison, so that the profiler's overhead is in none of the comparison's rounds; at the
comparison's thread count, on the comparison's input batch. The windows are extra measurement
work: a trial keeps each one as a measurement phase.
"""

from __future__ import annotations

from wattwise.data.types import DatasetSplits
from wattwise.energy.monitor import EnergyMonitor
from wattwise.energy.profiler import OperatorProfile, profile_batches
from wattwise.optimize.recipe import RecipeResult, RecipeSettings
from wattwise.train.device import num_threads
from wattwise.train.inference import inference_batch


def profile_variants(
    result: RecipeResult,
    data: DatasetSplits,
    settings: RecipeSettings,
    monitor: EnergyMonitor,
) -> tuple[OperatorProfile, ...]:
    """One :class:`~wattwise.energy.operators.OperatorProfile` per variant of ``result``, in
    order (fair references are not profiled: they are not recipe steps).

    Args:
        result: What :func:`~wattwise.optimize.recipe.run_recipe` returned (with its models).
        data: The recipe's dataset (the input batch: its first test images).
        settings: The recipe's settings (batch size, device, thread count).
        monitor: Where the profiled windows are measured.
    """
    batch = inference_batch(data, settings.batch_size, settings.device)
    with num_threads(settings.threads):
        return tuple(
            profile_batches(model, batch, monitor, variant=variant.step)
            for variant, model in zip(result.variants, result.models, strict=True)
        )
