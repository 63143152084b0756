"""``torch.compile`` as a technique: step ``compile``, the compiler path int8 takes, in fp32.

Int8 PT2E variants run compiled by inductor (with freezing); an fp32 baseline that is not
compiled hands the compiler's saving to int8. This technique compiles a float model the same way,
so a recipe can measure it on its own (``compile``) and every comparison can show a saving
against fp32 eager *and* against fp32 compiled (the technique's share and the compiler's).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from wattwise.optimize.base import (
    STAGE_NUMERICS,
    PreparedModel,
    TechniqueConfig,
    TechniqueContext,
    register_technique,
)
from wattwise.optimize.quantize import inductor_freezing
from wattwise.validation import config_dataclass


@config_dataclass
class CompileConfig(TechniqueConfig):
    """fp32 ``torch.compile`` (inductor, freezing, static shapes) of the model (step
    ``compile``)."""

    step: ClassVar[str] = "compile"
    stage: ClassVar[int] = STAGE_NUMERICS


@dataclass(frozen=True)
class CompileReport:
    """What compiling cost: the first call on the example batch (seconds, one-time)."""

    compile_s: float
    example_batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class CompiledModule(nn.Module):
    """A float model compiled by inductor with freezing; calls run under ``inference_mode``.

    Args:
        module: The float model (kept as a submodule: its parameters and ``state_dict``).
        compiled: ``torch.compile(module, dynamic=False)``.
    """

    def __init__(self, module: nn.Module, compiled: Any):
        super().__init__()
        self.module = module
        object.__setattr__(self, "compiled", compiled)

    def train(self, mode: bool = True) -> CompiledModule:
        self.training = mode  # a frozen graph does not switch modes
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with inductor_freezing(), torch.inference_mode():
            return self.compiled(x)


def compile_module(module: nn.Module, example: torch.Tensor) -> tuple[CompiledModule, float]:
    """``module`` (eval mode) compiled and run once on ``example``; returns it and the seconds
    the first call took (compiling)."""
    module.eval()
    wrapped = CompiledModule(module, torch.compile(module, dynamic=False))
    started = time.perf_counter()
    wrapped(example)
    return wrapped, time.perf_counter() - started


@register_technique(CompileConfig)
def _apply_compile(model: nn.Module, config: CompileConfig, ctx: TechniqueContext) -> Any:
    example = ctx.need_example(config.step)
    wrapped, seconds = compile_module(model, example)
    report = CompileReport(seconds, int(example.shape[0]))
    notes = (
        "compiled for the example's input shape: another batch size compiles again "
        f"(first call {seconds:.1f} s, a one-time cost)",
    )
    text = "fp32 torch.compile (inductor, freezing)"
    return PreparedModel(
        wrapped, applied=config.to_step(), description=text, notes=notes, report=report
    )
