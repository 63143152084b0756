"""Quantization and precision: int8 PT2E (static and QAT), dynamic int8 Linear, autocast, NHWC.

* ``int8_static`` — post-training static int8 for convnets **on CPU** by PT2E (in torchao):
  ``torch.export(strict=True)`` -> ``prepare_pt2e`` with ``X86InductorQuantizer`` ->
  calibration on real batches -> ``convert_pt2e`` -> ``torch.compile`` with inductor freezing.
  Without the compile step the int8 graph is *slower* than fp32 (measured: docs/optimize.md).
* ``int8_qat`` — the same path with ``prepare_qat_pt2e``: fake-quantized training, then convert.
* ``int8_dynamic`` — ``torch.ao.quantization.quantize_dynamic`` of ``nn.Linear`` only: on a
  convnet it converts the classifier and nothing else (the report counts the layers).
* ``autocast`` (bf16/fp16) and ``channels_last`` — settings of the inference protocol.

Sizes: a converted PT2E module still holds the unused fp32 weights, so its ``state_dict`` is
no measure; :func:`graph_tensor_bytes` counts only the tensors the int8 graph reads.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from wattwise.errors import ConfigError, QuantizationError
from wattwise.optimize.base import (
    STAGE_LAYOUT,
    Batches,
    PreparedModel,
    TechniqueConfig,
    TechniqueContext,
    iter_batches,
    model_device,
    register_technique,
    split_batch,
)
from wattwise.optimize.step_text import register_shorthand
from wattwise.validation import Bool, PositiveInt, config_dataclass

# Inductor's int8 conv lowering warns about its own torch.tensor(tensor) call on every compile:
# noise for users, nothing they can act on.
warnings.filterwarnings(
    "ignore",
    message="To copy construct from a tensor",
    category=UserWarning,
    module=r"torch\._inductor",
)

SIZE_METHOD = (
    "bytes of the tensors the int8 graph reads (get_attr nodes: int8 weights, scales, zero "
    "points, fp32 biases) at their stored dtype; unused fp32 copies in the module excluded"
)
CPU_ONLY = (
    "int8 PT2E (X86InductorQuantizer + inductor) is a CPU path; move the model to CPU "
    "(model.cpu()) or use fp16/bf16 autocast on the GPU"
)
TrainFn = Callable[[nn.Module, int, int], Any]


@config_dataclass
class StaticInt8Config(TechniqueConfig):
    """Post-training static int8 (PT2E, x86 inductor; CPU) (step ``quantize:int8``).

    Attributes:
        calibration_batches: At most this many calibration batches are run (>= 1).
        dynamic_batch: Export with a symbolic batch size, so other batch sizes run (each new
            size compiles once). If export refuses it, the model is specialized to the
            example's batch size and other sizes raise :class:`QuantizationError`.
        compile: ``torch.compile`` with inductor freezing (the fast path); ``False`` keeps the
            converted reference graph (slower than fp32; for inspection).
    """

    step: ClassVar[str] = "quantize:int8"
    int8: ClassVar[bool] = True
    cpu_only: ClassVar[bool] = True
    calibration_batches: PositiveInt = 16
    dynamic_batch: Bool = True
    compile: Bool = True


@config_dataclass
class QATInt8Config(TechniqueConfig):
    """Quantization-aware training on the PT2E path (``TechniqueContext.train_fn`` trains)
    (step ``quantize:int8_qat``); ``dynamic_batch`` and ``compile`` as in
    :class:`StaticInt8Config`."""

    step: ClassVar[str] = "quantize:int8_qat"
    int8: ClassVar[bool] = True
    cpu_only: ClassVar[bool] = True
    dynamic_batch: Bool = True
    compile: Bool = True


@config_dataclass
class DynamicInt8Config(TechniqueConfig):
    """Dynamic int8 of ``nn.Linear`` layers (int8 weights, activations quantized per batch)
    (step ``quantize:int8_dynamic``)."""

    step: ClassVar[str] = "quantize:int8_dynamic"
    int8: ClassVar[bool] = True
    cpu_only: ClassVar[bool] = True


@config_dataclass
class AutocastConfig(TechniqueConfig):
    """Run under autocast: ``bf16`` (CPU with native bf16, GPU) or ``fp16`` (GPU only)
    (step ``autocast:<precision>``, written ``bf16`` / ``fp16`` in recipes)."""

    step: ClassVar[str] = "autocast"
    positional: ClassVar[tuple[str, ...]] = ("precision",)
    precision: Literal["bf16", "fp16"] = "bf16"


@config_dataclass
class ChannelsLastConfig(TechniqueConfig):
    """Weights and inputs in channels-last (NHWC) memory format (step ``channels_last``)."""

    step: ClassVar[str] = "channels_last"
    stage: ClassVar[int] = STAGE_LAYOUT


register_shorthand("bf16", "autocast:bf16")
register_shorthand("fp16", "autocast:fp16")


@dataclass(frozen=True)
class Int8Report:
    """What int8 quantization did and what the int8 model really weighs (bytes).

    Attributes:
        method: ``pt2e-static``, ``pt2e-qat`` or ``dynamic-linear``.
        quantized_layers / float_layers: Conv/Linear layers with int8 weights / left float.
        fp32_bytes: Parameters + buffers of the float model.
        int8_bytes: Tensors the int8 model uses (see ``size_method``).
        int8_weight_bytes: Of which int8 weights.
        held_bytes: Everything the quantized module holds (with unused fp32 copies).
        calibration_batches / calibration_images: Real data run through the observers.
        export_batch_size: Batch size of the example the graph was exported with.
        dynamic_batch: Whether other batch sizes run.
        prepare_s: Export + prepare + calibrate/train + convert (one-time cost, seconds).
        compile_s: First ``torch.compile`` run on the example batch (one-time cost, seconds).
    """

    method: str
    quantized_layers: int
    float_layers: int
    fp32_bytes: int
    int8_bytes: int
    int8_weight_bytes: int
    held_bytes: int
    calibration_batches: int = 0
    calibration_images: int = 0
    export_batch_size: int | None = None
    dynamic_batch: bool = True
    compiled: bool = False
    prepare_s: float = 0.0
    compile_s: float = 0.0
    size_method: str = SIZE_METHOD

    @property
    def size_ratio(self) -> float:
        """``int8_bytes / fp32_bytes``."""
        return self.int8_bytes / self.fp32_bytes if self.fp32_bytes else 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "size_ratio": self.size_ratio}


@contextlib.contextmanager
def inductor_freezing() -> Iterator[None]:
    """Set ``torch._inductor.config.freezing = True``; restore the previous value after.

    Compiling is lazy (at the first call, and again for each new input shape), so this must
    surround the *calls*, not ``torch.compile`` itself. ``torch.compile(options={"freezing":
    True})`` fails here (``UnsupportedOperatorException: onednn.qconv_prepack``).
    """
    import torch._inductor.config as inductor_config

    previous = inductor_config.freezing
    inductor_config.freezing = True
    try:
        yield
    finally:
        inductor_config.freezing = previous


class Int8Module(nn.Module):
    """An int8 PT2E graph, callable like a model (``evaluate`` and ``measure_inference`` work).

    Calls run under inductor freezing and ``torch.inference_mode`` (stable guards: no silent
    recompile without freezing). The graph is not a registered submodule (its ``state_dict``
    holds unused fp32 copies). ``train()``/``eval()`` only set the flag.

    Args:
        graph: The ``convert_pt2e`` output.
        compiled: ``torch.compile(graph, dynamic=False)``, or ``graph`` itself.
        batch_size: Batch size it was exported with.
        dynamic_batch: Whether other batch sizes are allowed.
    """

    def __init__(self, graph: nn.Module, compiled: Any, batch_size: int, dynamic_batch: bool):
        super().__init__()
        object.__setattr__(self, "graph", graph)
        object.__setattr__(self, "compiled", compiled)
        self.batch_size, self.dynamic_batch = batch_size, dynamic_batch

    def train(self, mode: bool = True) -> Int8Module:
        self.training = mode
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for ``x`` (float32, on CPU)."""
        if not self.dynamic_batch and x.shape[0] != self.batch_size:
            raise QuantizationError(
                f"this int8 model is specialized to batch size {self.batch_size} (export could "
                f"not keep the batch size dynamic); got {x.shape[0]}"
            )
        with inductor_freezing(), torch.inference_mode():
            return self.compiled(x)


def _pt2e() -> SimpleNamespace:
    """torchao's PT2E entry points (they left ``torch.ao`` for torchao)."""
    try:
        import torchao.quantization.pt2e as pt2e
        from torchao.quantization.pt2e import quantize_pt2e as q
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as x86
    except ImportError as err:
        raise QuantizationError(f"int8 PT2E needs torchao (pip install torchao): {err}") from err
    return SimpleNamespace(
        allow_train_eval=pt2e.allow_exported_model_train_eval,
        to_eval=pt2e.move_exported_model_to_eval,
        convert=q.convert_pt2e,
        prepare=q.prepare_pt2e,
        prepare_qat=q.prepare_qat_pt2e,
        quantizer=x86.X86InductorQuantizer,
        config=x86.get_default_x86_inductor_quantization_config,
    )


def _bytes(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def graph_tensor_bytes(graph: torch.fx.GraphModule) -> tuple[int, int]:
    """Bytes of the tensors a graph reads: ``(all, int8 only)``.

    Walks the ``get_attr`` nodes (each constant once) and sums ``numel x element_size`` at
    the stored dtype. Tensors the module holds but the graph never reads are not counted.
    """
    targets = {str(n.target) for n in graph.graph.nodes if n.op == "get_attr"}
    values = [functools.reduce(getattr, t.split("."), graph) for t in sorted(targets)]
    tensors = [v for v in values if isinstance(v, torch.Tensor)]
    return _bytes(tensors), _bytes(t for t in tensors if t.dtype == torch.int8)


def _layer_counts(graph: torch.fx.GraphModule) -> tuple[int, int]:
    """(int8, float) conv/linear nodes: int8 when the weight comes from a dequantize node."""
    ops = {torch.ops.aten.conv2d.default, torch.ops.aten.linear.default}
    layers = [n for n in graph.graph.nodes if n.op == "call_function" and n.target in ops]
    int8 = sum("dequantize" in str(getattr(n.args[1], "target", "")) for n in layers)
    return int8, len(layers) - int8


def _export(model: nn.Module, example: torch.Tensor, dynamic: bool) -> tuple[Any, bool]:
    """Strict export (the x86 quantizer fails on non-strict graphs); batch dynamic if it can."""
    if dynamic:
        shapes = ({0: torch.export.Dim("batch", min=1)},)
        with contextlib.suppress(Exception):
            exported = torch.export.export(model, (example,), dynamic_shapes=shapes, strict=True)
            return exported.module(), True
    try:
        return torch.export.export(model, (example,), strict=True).module(), False
    except Exception as err:
        raise QuantizationError(
            f"torch.export (strict, as the x86 int8 quantizer needs) cannot capture "
            f"{type(model).__name__}: {err}".splitlines()[0]
        ) from err


def _pt2e_int8(
    model: nn.Module,
    config: StaticInt8Config | QATInt8Config,
    example: torch.Tensor,
    calibration: Batches | None = None,
    train_fn: TrainFn | None = None,
) -> PreparedModel:
    """Export, prepare, calibrate (or train, for QAT), convert, compile; measure the sizes."""
    api, qat = _pt2e(), train_fn is not None
    if model_device(model).type != "cpu" or example.device.type != "cpu":
        raise QuantizationError(CPU_ONLY)
    started = time.perf_counter()
    graph, dynamic = _export(copy.deepcopy(model).train(qat), example, config.dynamic_batch)
    quantizer = api.quantizer().set_global(api.config(is_qat=qat))
    try:
        prepared = (api.prepare_qat if qat else api.prepare)(graph, quantizer)
    except Exception as err:
        raise QuantizationError(f"PT2E prepare failed: {err}".splitlines()[0]) from err
    batches = images = 0
    if train_fn is not None:
        api.allow_train_eval(prepared)  # so that fit() may call .train() / .eval()
        train_fn(prepared, 1, 1)
        api.to_eval(prepared)
    else:
        with torch.no_grad():
            for batch in iter_batches(calibration, getattr(config, "calibration_batches", None)):
                x, _ = split_batch(batch)
                prepared(x.cpu())
                batches, images = batches + 1, images + int(x.shape[0])
        if batches == 0:
            raise ConfigError(f"{config.step} needs calibration batches of real inputs")
    converted = api.convert(prepared)
    prepare_s, started = time.perf_counter() - started, time.perf_counter()
    compiled = torch.compile(converted, dynamic=False) if config.compile else converted
    module = Int8Module(converted, compiled, int(example.shape[0]), dynamic)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="To copy construct from a tensor")
            module(example)
    except Exception as err:
        raise QuantizationError(
            f"compiling the int8 graph failed ({type(err).__name__}: {err}".splitlines()[0]
            + "); this path needs an x86 CPU and a C++ compiler"
        ) from err
    used, int8_weights = graph_tensor_bytes(converted)
    quantized, float_layers = _layer_counts(converted)
    report = Int8Report(
        method="pt2e-qat" if qat else "pt2e-static",
        quantized_layers=quantized,
        float_layers=float_layers,
        fp32_bytes=_bytes([*model.parameters(), *model.buffers()]),
        int8_bytes=used,
        int8_weight_bytes=int8_weights,
        held_bytes=_bytes(converted.state_dict().values()),
        calibration_batches=batches,
        calibration_images=images,
        export_batch_size=int(example.shape[0]),
        dynamic_batch=dynamic,
        compiled=config.compile,
        prepare_s=prepare_s,
        compile_s=time.perf_counter() - started,
    )
    notes = ["CPU only; compiling is a one-time cost, again for each new batch size"]
    if not config.compile:
        notes.append("not compiled: the reference int8 graph is slower than fp32")
    if not dynamic:
        notes.append(f"specialized to batch size {example.shape[0]}")
    text = f"int8 {report.method}: {quantized} layers int8, size x{report.size_ratio:.2f}"
    return PreparedModel(
        module, applied=config.to_step(), description=text, notes=tuple(notes), report=report
    )


def quantize_static_int8(
    model: nn.Module, config: StaticInt8Config, example_inputs: torch.Tensor, calibration: Batches
) -> PreparedModel:
    """Static int8 by PT2E on CPU; the input model is left untouched.

    Args:
        model: A float convnet on CPU.
        config: Calibration batches, dynamic batch, compile.
        example_inputs: One batch ``[B, C, H, W]`` (B >= 2 keeps the batch size dynamic).
        calibration: Real input batches (tensors or ``(inputs, labels)``: a ``TensorLoader``).

    Returns:
        A :class:`PreparedModel` around an :class:`Int8Module`, with an :class:`Int8Report`.

    Raises:
        QuantizationError: torchao missing, model on GPU, export or compile failed.
        ConfigError: No calibration batches.
    """
    return _pt2e_int8(model, config, example_inputs, calibration=calibration)


def quantize_qat_int8(
    model: nn.Module, config: QATInt8Config, example_inputs: torch.Tensor, train_fn: TrainFn
) -> PreparedModel:
    """Quantization-aware training by PT2E, then convert and compile (CPU).

    Args:
        model: A float convnet on CPU (left untouched; a copy is trained).
        config: Dynamic batch, compile.
        example_inputs: One batch ``[B, C, H, W]``.
        train_fn: ``train_fn(prepared, 1, 1)`` trains the fake-quantized graph in place, e.g.
            with ``wattwise.train.fit`` (``.train()``/``.eval()`` are allowed on it).

    Returns:
        As :func:`quantize_static_int8` (no calibration: observers learn during training).
    """
    if not callable(train_fn):
        raise ConfigError("int8_qat needs a training callable (TechniqueContext.train_fn)")
    return _pt2e_int8(model, config, example_inputs, train_fn=train_fn)


def quantize_dynamic_int8(model: nn.Module, config: DynamicInt8Config) -> PreparedModel:
    """Dynamic int8 of every ``nn.Linear`` (CPU); the input model is left untouched.

    Uses ``torch.ao.quantization.quantize_dynamic`` (deprecated, working from torch 2.11 to
    2.15; its warnings are silenced here): int8 kernels, eager, no compile. torchao's
    ``Int8DynamicActivationInt8WeightConfig`` ran slower than fp32 on CPU here, even compiled.
    Convolutions are never converted: the report and notes count what was.
    """
    del config
    if model_device(model).type != "cpu":
        raise QuantizationError("dynamic int8 runs on CPU only; move the model to CPU")
    linear = [m for m in model.modules() if isinstance(m, nn.Linear)]
    convs = sum(isinstance(m, nn.modules.conv._ConvNd) for m in model.modules())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(deprecated|quantized tensor creation).*")
        quantized = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
        dynamic = torch.ao.nn.quantized.dynamic.Linear
        converted = [m for m in quantized.modules() if isinstance(m, dynamic)]
        int8_weights = sum(m.weight().numel() for m in converted)
        biases = _bytes(b for b in (m.bias() for m in converted) if b is not None)
    fp32 = _bytes([*model.parameters(), *model.buffers()])
    int8 = fp32 - _bytes(t for m in linear for t in m.parameters()) + int8_weights + biases
    float_layers = convs + len(linear) - len(converted)
    report = Int8Report(
        "dynamic-linear", len(converted), float_layers, fp32, int8, int8_weights, held_bytes=int8
    )
    note = f"{len(converted)} of {len(linear)} Linear layers int8; {convs} conv layers fp32"
    return PreparedModel(
        quantized,
        applied=DynamicInt8Config().to_step(),
        description=f"dynamic int8 ({note})",
        notes=(f"{note} (dynamic int8 converts only nn.Linear: on convnets it changes little)",),
        report=report,
    )


@register_technique(StaticInt8Config)
def _apply_static(model: nn.Module, config: StaticInt8Config, ctx: TechniqueContext) -> Any:
    if ctx.calibration is None:
        raise ConfigError("int8_static needs calibration batches (TechniqueContext.calibration)")
    return quantize_static_int8(model, config, ctx.need_example(config.step), ctx.calibration)


@register_technique(QATInt8Config)
def _apply_qat(model: nn.Module, config: QATInt8Config, ctx: TechniqueContext) -> Any:
    if ctx.train_fn is None:
        raise ConfigError("int8_qat needs a training callable (TechniqueContext.train_fn)")
    return quantize_qat_int8(model, config, ctx.need_example(config.step), ctx.train_fn)


@register_technique(DynamicInt8Config)
def _apply_dynamic(model: nn.Module, config: DynamicInt8Config, ctx: TechniqueContext) -> Any:
    return quantize_dynamic_int8(model, config)


@register_technique(AutocastConfig)
def _apply_autocast(model: nn.Module, config: AutocastConfig, ctx: TechniqueContext) -> Any:
    device = model_device(model)
    if config.precision == "fp16" and device.type != "cuda":
        raise ConfigError("fp16 autocast is for GPUs; on CPU use precision bf16")
    notes = [f"weights stay fp32 in memory; convs and matmuls run in {config.precision}"]
    if device.type == "cpu" and not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        notes.append("this CPU has no native bf16: expect a slowdown")
    text = f"{config.precision} autocast"
    return PreparedModel(
        model, config.precision, applied=config.to_step(), description=text, notes=tuple(notes)
    )


@register_technique(ChannelsLastConfig)
def _apply_channels_last(
    model: nn.Module, config: ChannelsLastConfig, ctx: TechniqueContext
) -> Any:
    model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    notes = ("converts the model's weights in place, as module.to() does",)
    text = "channels_last (NHWC) weights and inputs"
    return PreparedModel(
        model, channels_last=True, applied=config.to_step(), description=text, notes=notes
    )
