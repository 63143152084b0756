"""The recipe grammar: every technique option reachable from text, canonical text, one-line errors.

The grammar knows no technique by name: each config declares its step, positional arguments and
stage, and these tests pin down what that gives a user (moved here from tests/test_config.py
when the grammar left wattwise.config).
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import nn

from wattwise.errors import ConfigError
from wattwise.optimize import (
    AutocastConfig,
    BaselineConfig,
    ChannelPruneConfig,
    ChannelsLastConfig,
    DistillConfig,
    DynamicInt8Config,
    MaskPruneConfig,
    PreparedModel,
    QATInt8Config,
    StaticInt8Config,
    TechniqueConfig,
    apply_technique,
    format_recipe,
    list_techniques,
    parse_recipe,
    parse_step,
    register_technique,
)
from wattwise.optimize.base import STAGE_LAYOUT, techniques
from wattwise.validation import PositiveInt, config_dataclass


def test_parse_recipe_chains_and_canonical_text() -> None:
    steps = parse_recipe(" Distill:resnet18:2:0.50 , prune:Structured:0.50,quantize:int8 ")
    assert steps == (
        DistillConfig(teacher="resnet18", temperature=2.0, alpha=0.5),
        ChannelPruneConfig(ratio=0.5),
        StaticInt8Config(),
    )
    assert format_recipe(steps) == "distill:resnet18:2:0.5,prune:structured:0.5,quantize:int8"
    assert parse_recipe("baseline") == (BaselineConfig(),)
    assert parse_recipe("channels_last,bf16") == (ChannelsLastConfig(), AutocastConfig("bf16"))
    assert parse_recipe("distill:runs/teacher")[0] == DistillConfig(
        teacher_checkpoint="runs/teacher"
    )
    # defaults are left out of the canonical text, so equal configs have one text
    assert format_recipe(parse_recipe("distill:resnet18:4:0.9")) == "distill:resnet18"


@pytest.mark.parametrize(
    ("text", "config"),
    [
        (
            "prune:structured:0.5:importance=taylor:steps=3",
            ChannelPruneConfig(ratio=0.5, importance="taylor", iterative_steps=3),
        ),
        (
            "prune:structured:0.4:global_pruning=true:round_to=none:max_layer_ratio=0.8",
            ChannelPruneConfig(ratio=0.4, global_pruning=True, round_to=None, max_layer_ratio=0.8),
        ),
        (
            "prune:structured:0.5:head=fc:ignore=layer4.0|layer4.1:taylor_batches=2",
            ChannelPruneConfig(
                ratio=0.5, head="fc", ignore=("layer4.0", "layer4.1"), taylor_batches=2
            ),
        ),
        ("prune:unstructured:0.7:scope=layer", MaskPruneConfig(amount=0.7, scope="layer")),
        ("quantize:int8:calibration_batches=4", StaticInt8Config(calibration_batches=4)),
        ("quantize:int8:dynamic_batch=false:compile=false", StaticInt8Config(16, False, False)),
        ("quantize:int8_qat", QATInt8Config()),
        ("quantize:int8_dynamic", DynamicInt8Config()),
        ("fp16", AutocastConfig("fp16")),
        ("autocast:bf16", AutocastConfig("bf16")),
        (
            "distill:resnet18:2:feature_weight=0.5:precompute_teacher=false",
            DistillConfig(
                teacher="resnet18", temperature=2.0, feature_weight=0.5, precompute_teacher=False
            ),
        ),
        (
            "distill:resnet50:teacher_kwargs.width=0.5",
            DistillConfig(teacher="resnet50", teacher_kwargs={"width": 0.5}),
        ),
        (
            "distill:runs/t/checkpoint.pt:3",
            DistillConfig(teacher_checkpoint="runs/t/checkpoint.pt", temperature=3.0),
        ),
    ],
)
def test_every_option_is_reachable_and_round_trips(text: str, config: TechniqueConfig) -> None:
    assert parse_step(text) == config
    assert parse_step(config.to_step()) == config  # canonical text reads back to the same config
    assert parse_recipe(format_recipe([config])) == (config,)


def test_every_registered_step_documents_its_options() -> None:
    from wattwise.optimize.grammar import usage_of

    steps = list_techniques()
    assert {"baseline", "prune:structured", "prune:unstructured", "quantize:int8"} <= set(steps)
    assert {"quantize:int8_qat", "quantize:int8_dynamic", "distill", "autocast"} <= set(steps)
    usage = usage_of(techniques.config_type("prune:structured"))
    for option in ("importance", "steps", "global_pruning", "round_to", "ignore", "head"):
        assert option in usage


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "a technique must be a non-empty string"),
        ("baseline,quantize:int8", "'baseline' cannot be chained"),
        ("prune:structured:0.5,prune:unstructured:0.2", "prune:structured:0.5 and "),
        ("bf16,fp16", "bf16 and fp16 are both 'autocast' steps"),
        ("quantize:int8,", "empty step"),
        ("prune:structured:1.5", "prune:structured takes <ratio>"),
        ("prune:structured:half", "prune:structured takes"),
        ("prune:sideways:0.5", "prune takes prune:structured:<ratio>"),
        ("prune:structured:0.5:bogus=1", "prune:structured takes"),
        ("prune:structured:0.5:steps=0", "prune:structured takes"),
        ("prune:structured:0.5:steps=99999999999", "prune:structured takes"),
        ("prune:structured:importance=taylor:0.5", "prune:structured takes"),
        ("distill:resnet18:0", "distill takes <teacher>"),
        ("distill:resnet18:4:1.5", "distill takes"),
        ("distill:resnet18:4:0.5:x", "distill takes"),
        ("distill:resnet19", "distill takes"),
        ("bf16:yes", "bf16 takes no arguments"),
        ("shrink", "unknown technique step 'shrink'"),
        ("bf16,prune:structured:0.3", "prune:structured:0.3 must come before bf16"),
        ("quantize:int8,channels_last", "channels_last must come before quantize:int8"),
        ("prune:structured:0.3,distill:resnet18", "distill:resnet18 must come before"),
    ],
)
def test_parse_recipe_errors_are_one_line(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_recipe(text)
    assert str(info.value).startswith(message), str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "detail"),
    [
        ("prune:structured:1.5", "ratio: must be < 1"),
        ("prune:structured:0.5:bogus=1", "unknown option 'bogus'"),
        ("prune:structured:0.5:steps=0", "iterative_steps: must be > 0"),
        ("prune:structured:0.5:steps=99999999999", "must be <= 2147483647"),
        ("distill:resnet19", "unknown teacher model 'resnet19'"),
    ],
)
def test_errors_name_the_argument(text: str, detail: str) -> None:
    with pytest.raises(ConfigError, match=detail):
        parse_recipe(text)


# --- adding a technique touches one module: the worked example of docs/optimize.md ---------------


@config_dataclass
class HalveWidthConfig(TechniqueConfig):
    """A toy technique: scales the first conv's weights (stands for any new technique)."""

    step: ClassVar[str] = "toy:scale"
    positional: ClassVar[tuple[str, ...]] = ("factor",)
    stage: ClassVar[int] = STAGE_LAYOUT
    factor: PositiveInt = 2


def test_a_new_technique_needs_only_its_config_and_handler() -> None:
    if techniques.config_type("toy:scale") is None:

        @register_technique(HalveWidthConfig)
        def _scale(model: nn.Module, config: Any, ctx: Any) -> PreparedModel:
            with torch.no_grad():
                for p in model.parameters():
                    p.mul_(config.factor)
            return PreparedModel(model, applied=config.to_step())

    assert parse_recipe("prune:structured:0.5,toy:scale:3") == (
        ChannelPruneConfig(ratio=0.5),
        HalveWidthConfig(3),
    )
    assert HalveWidthConfig(3).to_step() == "toy:scale:3"
    with pytest.raises(ConfigError, match="toy:scale takes <factor>"):
        parse_recipe("toy:scale:0")
    layer = nn.Linear(2, 2)
    before = layer.weight.detach().clone()
    prepared = apply_technique(layer, HalveWidthConfig(3))
    assert prepared.applied == "toy:scale:3"
    torch.testing.assert_close(layer.weight.detach(), 3 * before)
