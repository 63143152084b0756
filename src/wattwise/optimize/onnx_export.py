"""A recipe's final model as ONNX, and its J/image in ONNX Runtime beside PyTorch's.

Many deploy in ONNX Runtime, not in PyTorch, so a saving measured in PyTorch alone says little
about theirs. :func:`export_onnx` writes ``model.onnx`` with PyTorch's own exporter
(``torch.onnx.export(dynamo=True)``, onnxscript; batch dimension dynamic where the graph allows);
:func:`onnx_beside_pytorch` checks that the two runtimes agree on one batch and measures both by
the comparison protocol (:func:`~wattwise.optimize.compare.compare_variants`: interleaved rounds,
the same thread count, paired ratios with their intervals), so "ONNX Runtime uses 1.3x less
energy per image" carries its interval like every other ratio.

What is exported is the float model the variant runs: a compiled variant's model before
``torch.compile``; an autocast variant's fp32 weights (autocast is a setting of the call, not of
the file: the ONNX file runs in fp32, and the result says so); an int8 PT2E variant's
``convert_pt2e`` graph where the exporter translates its quantize/dequantize ops. What the
exporter cannot translate is refused with a :class:`~wattwise.errors.ModelError` in one line and
recorded: the recipe's results still count.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from wattwise.errors import ModelError
from wattwise.optimize.base import PreparedModel

#: Format tag of the ONNX file (``SavedModel.format``).
ONNX_FORMAT = "onnx"
#: The two runners' names in the comparison.
PYTORCH, ONNXRUNTIME = "pytorch", "onnxruntime"


@dataclass(frozen=True)
class OnnxExport:
    """Where :func:`export_onnx` wrote the model and what it holds.

    Attributes:
        path: The ``.onnx`` file.
        opset: Its default-domain opset.
        dynamic_batch: Whether any batch size runs (else only the example's).
        precision: What the file computes in (``fp32``, or ``int8`` QDQ for an int8 graph).
        contents: One line: what the file holds and how to run it.
    """

    path: Path
    opset: int | None
    dynamic_batch: bool
    precision: str
    contents: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path), "format": ONNX_FORMAT}


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as err:
        raise ModelError("ONNX Runtime is not installed: pip install 'wattwise[onnx]'") from err
    return onnxruntime


def _float_module(prepared: PreparedModel) -> tuple[torch.nn.Module, str]:
    """The module to export and the precision the file computes in."""
    from wattwise.optimize.quantize import Int8Module
    from wattwise.optimize.saved_model import packed_int8_layer, stored_module

    module = stored_module(prepared)
    if isinstance(module, Int8Module):
        return module.graph, "int8"
    packed = packed_int8_layer(module)
    if packed is not None:
        raise ModelError(
            f"{prepared.applied}: {packed} (dynamic int8) has no ONNX export; not exported"
        )
    return module, "fp32"


def export_onnx(
    prepared: PreparedModel, path: str | os.PathLike[str], example: torch.Tensor
) -> OnnxExport:
    """Export ``prepared`` to ``path`` (written atomically), batch dynamic where possible.

    Args:
        prepared: The variant (``RecipeResult.final``).
        path: The ``.onnx`` file to write.
        example: An input batch ``[B, C, H, W]`` on the CPU (an int8 graph specialized to one
            batch size needs that size).

    Returns:
        What was written.

    Raises:
        ModelError: onnxscript missing, or an export the exporter cannot do (one line).
    """
    try:
        import onnxscript  # noqa: F401  (torch.onnx's dynamo exporter needs it)
    except ImportError as err:
        raise ModelError("ONNX export needs onnxscript: pip install 'wattwise[onnx]'") from err
    module, precision = _float_module(prepared)
    if precision == "fp32":
        module = module.cpu().eval()
    example = example.cpu()
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.tmp{target.suffix}")
    program, errors = None, []
    for dynamic in (True, False):
        shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic else None
        try:
            # The exporter prints its progress on stdout: noise beside wattwise's own lines.
            with contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
                program = torch.onnx.export(
                    module, (example,), dynamo=True, dynamic_shapes=shapes, verbose=False
                )
            break
        except Exception as err:  # the exporter raises many types; each is one line here
            errors.append(str(err).strip().splitlines()[0] if str(err).strip() else repr(err))
    if program is None:
        raise ModelError(f"ONNX export of {prepared.applied} failed: {errors[-1]}; not exported")
    try:
        program.save(str(tmp), external_data=False)
        os.replace(tmp, target)
    except Exception as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise ModelError(f"cannot write {target}: {err}") from err
    model = program.model_proto
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dynamic_batch = bool(dims) and bool(dims[0].dim_param)
    batch = "any batch size" if dynamic_batch else f"batch size {example.shape[0]} only"
    notes = "" if prepared.precision == "fp32" else f"; autocast {prepared.precision} not in it"
    return OnnxExport(
        target,
        opset,
        dynamic_batch,
        precision,
        f"{precision} ONNX of {prepared.applied} ({batch}{notes}): "
        "onnxruntime.InferenceSession(path).run(None, {input: images})",
    )


def ort_runner(path: str | os.PathLike[str], threads: int) -> Callable[[torch.Tensor], Any]:
    """A callable on an image batch that runs the ONNX file in ONNX Runtime on the CPU with
    ``threads`` intra-op threads (the thread count PyTorch gets: a fair comparison)."""
    ort = _import_ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only: its warnings are not ours
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(x: torch.Tensor) -> Any:
        return session.run(None, {name: x.detach().cpu().numpy()})[0]

    return run


@dataclass(frozen=True)
class OnnxComparison:
    """The ONNX file in ONNX Runtime beside the variant in PyTorch.

    Attributes:
        export: What was written.
        max_abs_diff: Largest difference of the two runtimes' logits on the batch.
        top1_agreement: Fraction of the batch's images whose top-1 class agrees.
        comparison: Both measured by the comparison protocol (``None`` without measuring).
    """

    export: OnnxExport
    max_abs_diff: float
    top1_agreement: float
    comparison: Any | None

    def saving(self) -> Any | None:
        """PyTorch J/image / ONNX Runtime J/image, with its interval (> 1: ORT uses less)."""
        if self.comparison is None:
            return None
        return self.comparison.ratio(ONNXRUNTIME, PYTORCH)

    def to_dict(self) -> dict[str, Any]:
        return {
            "export": self.export.to_dict(),
            "max_abs_diff": self.max_abs_diff,
            "top1_agreement": self.top1_agreement,
            "comparison": self.comparison.to_dict() if self.comparison is not None else None,
        }


def onnx_beside_pytorch(
    prepared: PreparedModel,
    export: OnnxExport,
    batch: torch.Tensor,
    *,
    settings: Any | None = None,
    monitor: Any | None = None,
    measure: bool = True,
) -> OnnxComparison:
    """Check that ONNX Runtime agrees with PyTorch on ``batch``, then measure both.

    Args:
        prepared: The variant as PyTorch runs it (int8: compiled by inductor).
        export: Its :func:`export_onnx` file.
        batch: The inference protocol's input batch (CPU).
        settings: :class:`~wattwise.optimize.comparison.CompareSettings` (the recipe's).
        monitor: The EnergyMonitor whose windows measure the rounds.
        measure: False: only the agreement check.

    Raises:
        ModelError: ONNX Runtime missing, or a variant that does not run on the CPU.
    """
    from wattwise.optimize.compare import compare_variants
    from wattwise.optimize.comparison import CompareSettings
    from wattwise.train.device import num_threads

    settings = settings or CompareSettings()
    batch = batch.cpu()
    with num_threads(settings.threads):
        threads = torch.get_num_threads()
    run = ort_runner(export.path, threads)
    module = prepared.module
    if next((p.device.type for p in module.parameters()), "cpu") != "cpu":
        raise ModelError("ONNX Runtime is measured on the CPU: optimize with --device cpu")
    with torch.inference_mode():
        ours = prepared(batch).float()
    theirs = torch.from_numpy(run(batch)).float()
    diff = float((ours - theirs).abs().max())
    agree = float((ours.argmax(1) == theirs.argmax(1)).float().mean())
    comparison = None
    if measure:
        comparison = compare_variants(
            {PYTORCH: prepared, ONNXRUNTIME: run},
            batch,
            references=(PYTORCH,),
            settings=settings,
            monitor=monitor,
        )
    return OnnxComparison(export, diff, agree, comparison)
