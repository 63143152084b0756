"""Compression techniques: one module per technique, each a frozen config plus a handler.

>>> from wattwise.optimize import ChannelPruneConfig, TechniqueContext, apply_technique
>>> prepared = apply_technique(model, ChannelPruneConfig(ratio=0.3), TechniqueContext(x))
>>> measure_inference(prepared.module, x, **prepared.inference_kwargs())
>>> parse_recipe("prune:structured:0.5:importance=taylor,quantize:int8")  # the same configs

See ``docs/optimize.md`` for what each technique really saves on CPU.
"""

from __future__ import annotations

from wattwise.errors import PruningError, QuantizationError
from wattwise.optimize.base import (
    BaselineConfig,
    Batches,
    PreparedModel,
    TechniqueConfig,
    TechniqueContext,
    TechniqueRegistry,
    apply_technique,
    list_techniques,
    register_technique,
    techniques,
    top1_agreement,
)
from wattwise.optimize.compare import (
    CompareSettings,
    Comparison,
    Ratio,
    VariantStats,
    compare_variants,
)
from wattwise.optimize.compiled import CompileConfig, CompiledModule
from wattwise.optimize.distill import (
    DistillationTask,
    DistillConfig,
    DistillResult,
    distill,
    is_checkpoint_path,
    kd_loss,
)
from wattwise.optimize.grammar import (
    canonical_recipe,
    format_recipe,
    load_recipe,
    parse_recipe,
    parse_step,
)
from wattwise.optimize.prune import (
    ChannelPruneConfig,
    ChannelPruneReport,
    MaskPruneConfig,
    MaskPruneReport,
    SparsityReport,
    prune_channels,
    prune_masks,
    remove_masks,
    weight_sparsity,
)
from wattwise.optimize.pruned_files import load_pruned, save_pruned
from wattwise.optimize.quantize import (
    AutocastConfig,
    ChannelsLastConfig,
    DynamicInt8Config,
    Int8Module,
    Int8Report,
    QATInt8Config,
    StaticInt8Config,
    graph_tensor_bytes,
    inductor_freezing,
    quantize_dynamic_int8,
    quantize_qat_int8,
    quantize_static_int8,
)
from wattwise.optimize.recipe import (
    RecipeResult,
    RecipeSettings,
    load_recipe_text,
    run_recipe,
)
from wattwise.optimize.variants import VariantResult

__all__ = [
    "AutocastConfig",
    "BaselineConfig",
    "Batches",
    "ChannelPruneConfig",
    "ChannelPruneReport",
    "ChannelsLastConfig",
    "CompareSettings",
    "Comparison",
    "CompileConfig",
    "CompiledModule",
    "DistillConfig",
    "DistillResult",
    "DistillationTask",
    "DynamicInt8Config",
    "Int8Module",
    "Int8Report",
    "MaskPruneConfig",
    "MaskPruneReport",
    "PreparedModel",
    "PruningError",
    "QATInt8Config",
    "QuantizationError",
    "Ratio",
    "RecipeResult",
    "RecipeSettings",
    "SparsityReport",
    "StaticInt8Config",
    "TechniqueConfig",
    "TechniqueContext",
    "TechniqueRegistry",
    "VariantResult",
    "VariantStats",
    "apply_technique",
    "canonical_recipe",
    "compare_variants",
    "distill",
    "format_recipe",
    "graph_tensor_bytes",
    "inductor_freezing",
    "is_checkpoint_path",
    "kd_loss",
    "list_techniques",
    "load_pruned",
    "load_recipe",
    "load_recipe_text",
    "parse_recipe",
    "parse_step",
    "prune_channels",
    "prune_masks",
    "quantize_dynamic_int8",
    "quantize_qat_int8",
    "quantize_static_int8",
    "register_technique",
    "remove_masks",
    "run_recipe",
    "save_pruned",
    "techniques",
    "top1_agreement",
    "weight_sparsity",
]
