"""Loading weights: torchvision downloads, local ``state_dict`` files and in-memory mappings.

All three go through :func:`load_state_dict_adapted`, which loads every tensor that fits,
re-derives the first conv for a different input channel count, skips the head and stem tensors
that no longer fit (recorded in a :class:`WeightsReport`) and refuses anything else that does
not fit: a checkpoint of another architecture or width is an error, not a silent partial load.
:func:`load_state_dict_exact` is the strict form (a checkpoint of this very model).

Files are read by :func:`load_torch_file` (``weights_only=True``): every way a file can be
wrong (missing, a folder, empty, truncated, not from ``torch.save``, holding pickled objects)
is one :class:`~wattwise.errors.ModelError` line, without PyTorch's multi-line advice.
"""

from __future__ import annotations

import http.client
import logging
import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.error import URLError

import torch
from torch import nn

from wattwise.errors import ModelError
from wattwise.models.adapt import adapt_input_channels

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

logger = logging.getLogger(__name__)

#: Wrapper keys under which training scripts commonly nest the state_dict in a checkpoint.
_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
#: Prefixes added by ``nn.DataParallel`` and ``torch.compile``; stripped when on every key.
_STRIPPED_PREFIXES = ("module.", "_orig_mod.")
#: What a torchvision weights name looks like (``DEFAULT``, ``IMAGENET1K_V1``).
_WEIGHTS_NAME = re.compile(r"[A-Z][A-Z0-9_]*")


@dataclass(frozen=True)
class WeightsReport:
    """What a weights load did.

    Attributes:
        source: Where the tensors came from (``torchvision:ResNet18_Weights.IMAGENET1K_V1``,
            a file path, or ``<mapping>``).
        loaded: Keys copied into the model (including adapted ones).
        adapted: Keys whose tensor was transformed to fit (first conv, other input channels).
        skipped: Key -> reason, for head/stem tensors of the source that do not fit and stay
            at their random initialization.
        missing: Head/stem keys of the model that the source does not have (random init kept).
    """

    source: str
    loaded: tuple[str, ...]
    adapted: tuple[str, ...] = ()
    skipped: Mapping[str, str] = field(default_factory=dict)
    missing: tuple[str, ...] = ()


def load_weights(
    model: nn.Module,
    weights: Any,
    *,
    model_name: str,
    stem: str,
    head: str,
    torchvision_name: str | None = None,
    width: float = 1.0,
    progress: bool = False,
) -> WeightsReport:
    """Load ``weights`` into ``model``, a registered architecture (see ``create_model``).

    Args:
        model: The freshly built model.
        weights: ``"DEFAULT"`` / a torchvision weights name (``"IMAGENET1K_V1"``,
            ``"ResNet18_Weights.IMAGENET1K_V1"``) / a ``torchvision`` ``WeightsEnum`` member, a
            path to a ``torch.save``'d state_dict, or a state_dict mapping.
        model_name: The architecture's registry name (for messages).
        stem: Dotted path of the first convolution (may differ from the source's).
        head: Dotted path of the classifier ``nn.Linear`` (may differ from the source's).
        torchvision_name: Name under which torchvision publishes weights for the architecture,
            or ``None`` when there are none.
        width: The width the model was built with (published weights exist only for 1.0).
        progress: Show a download progress bar.

    Returns:
        The :class:`WeightsReport`.

    Raises:
        ModelError: The weights cannot be fetched, read or do not fit the model.
    """
    if isinstance(weights, Mapping):
        state, source = dict(weights), "<mapping>"
    else:
        enum_member = _torchvision_weights(weights, model_name, torchvision_name)
        if enum_member is not None:
            if width != 1.0:
                raise ModelError(
                    f"{model_name}: torchvision publishes weights only for width 1.0, got {width}"
                )
            state = fetch_torchvision_state_dict(enum_member, progress=progress)
            source = f"torchvision:{enum_member}"
        else:
            path = _weights_path(weights, model_name, torchvision_name)
            state, source = read_state_dict(path), str(path)
    return load_state_dict_adapted(
        model, state, stem=stem, head=head, source=source, model_name=model_name
    )


def _torchvision_weights(
    weights: Any, model_name: str, torchvision_name: str | None
) -> WeightsEnum | None:
    """The torchvision weights named by ``weights``, or ``None`` when it is not such a name."""
    from torchvision.models import WeightsEnum, get_model_weights

    if isinstance(weights, WeightsEnum):
        if torchvision_name is None or not isinstance(weights, get_model_weights(torchvision_name)):
            raise ModelError(f"{model_name}: weights {weights} are for another architecture")
        return weights
    if not isinstance(weights, str):
        return None
    if torchvision_name is None:
        if _WEIGHTS_NAME.fullmatch(weights) and not Path(weights).is_file():
            raise ModelError(
                f"{model_name} has no published pretrained weights ({weights!r}); pass "
                "weights=None or the path of a file saved with torch.save(model.state_dict(), path)"
            )
        return None
    enum_cls = get_model_weights(torchvision_name)
    name = weights.removeprefix(f"{enum_cls.__name__}.")
    if name in enum_cls.__members__:
        return enum_cls[name]
    return None


def _weights_path(weights: Any, model_name: str, torchvision_name: str | None) -> Path:
    if not isinstance(weights, str | os.PathLike):
        raise ModelError(
            f"weights must be None, a weights name, a file path or a state_dict, got "
            f"{type(weights).__name__}"
        )
    path = Path(weights).expanduser()
    if path.is_file():
        return path
    if path.exists():
        raise ModelError(f"weights path {str(path)!r} is not a file")
    if torchvision_name is not None and _WEIGHTS_NAME.fullmatch(str(weights)):
        raise ModelError(
            f"unknown weights {str(weights)!r} for {model_name}; use one of "
            f"{', '.join(_weights_names(torchvision_name))} or a state_dict file path"
        )
    raise ModelError(f"weights file {str(weights)!r} not found")


def _weights_names(torchvision_name: str) -> list[str]:
    """``DEFAULT`` and the names of torchvision's weights for an architecture."""
    from torchvision.models import get_model_weights

    members = get_model_weights(torchvision_name).__members__
    return ["DEFAULT", *(name for name in members if name != "DEFAULT")]


def fetch_torchvision_state_dict(
    weights: WeightsEnum, *, progress: bool = False
) -> dict[str, torch.Tensor]:
    """Download (or read from the torch hub cache) torchvision's ``weights``.

    Args:
        weights: A torchvision ``WeightsEnum`` member.
        progress: Show a download progress bar.

    Returns:
        The state_dict (hash-checked, loaded with ``weights_only=True``).

    Raises:
        ModelError: The file could not be fetched (offline, HTTP error, corrupt download).
    """
    try:
        return weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except (URLError, OSError, http.client.HTTPException, RuntimeError) as err:
        if isinstance(err, RuntimeError) and "hash" not in str(err):
            raise
        cache = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        reason = getattr(err, "reason", None) or err
        raise ModelError(
            f"could not fetch pretrained weights {weights} from {weights.url} ({reason}); "
            f"without network access, download that file on another machine and pass "
            f"weights='<path to the file>' (or copy it to {cache})"
        ) from err


def load_torch_file(
    path: str | os.PathLike[str], kind: str, *, trusted: bool = False, refused: str = ""
) -> Any:
    """``torch.load`` a file onto the CPU, ``weights_only=True`` unless ``trusted``.

    Args:
        path: The file.
        kind: What it should be, for messages (``checkpoint``, ``weights file``).
        trusted: Unpickle arbitrary objects (runs code from the file: only for files you made).
        refused: Said after "contains objects that are not plain tensors" (e.g. the fix).

    Raises:
        ModelError: One line, ``cannot read <kind> <path>: <why>``.
    """
    source = Path(path)

    def error(why: str) -> ModelError:
        return ModelError(f"cannot read {kind} {source}: {why}")

    if source.is_dir():
        raise error("it is a folder, not a file")
    try:
        if source.stat().st_size == 0:
            raise error("it is empty (0 bytes), not a file written by torch.save")
        return torch.load(source, map_location="cpu", weights_only=not trusted)
    except ModelError:
        raise
    except FileNotFoundError as err:
        raise error("not found") from err
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):
            raise error(
                f"it contains objects that are not plain tensors{refused}; wattwise loads "
                f"{kind}s with weights_only=True and refuses it"
            ) from err
        raise error("it is not a file written by torch.save (or it is corrupt)") from err
    except (EOFError, RuntimeError) as err:  # the zip reader or unpickler ran out of data
        raise error(f"it is truncated or corrupt ({_first_sentence(err)})") from err
    except Exception as err:  # garbage input fails in many ways, differently across versions
        raise error(f"it is not a file written by torch.save ({_first_sentence(err)})") from err


def _first_sentence(err: BaseException) -> str:
    """``Type: first sentence of the message`` on one line, without terminal escapes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err)).strip().splitlines()
    first = text[0].split(". ")[0].rstrip(".") if text else ""
    return f"{type(err).__name__}: {first}" if first else type(err).__name__


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a state_dict saved with ``torch.save`` (``weights_only=True``: no code is run).

    A checkpoint dict that nests the state_dict under ``state_dict``, ``model_state_dict`` or
    ``model`` is unwrapped, and a ``module.`` / ``_orig_mod.`` prefix on every key is stripped.

    Args:
        path: The file.

    Returns:
        The state_dict, on the CPU.

    Raises:
        ModelError: The file cannot be read or does not hold a state_dict.
    """
    path = Path(path)
    obj = load_torch_file(
        path,
        "weights file",
        refused=" (it is not a state_dict, e.g. a whole pickled model; save "
        "torch.save(model.state_dict(), path))",
    )
    state = _as_state_dict(obj)
    if state is None:
        raise ModelError(
            f"weights file {str(path)!r} holds a {type(obj).__name__}, not a state_dict; "
            "save torch.save(model.state_dict(), path)"
        )
    return state


def _as_state_dict(obj: object) -> dict[str, torch.Tensor] | None:
    if isinstance(obj, Mapping):
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                return _as_state_dict(obj[key])
    if not (
        isinstance(obj, Mapping)
        and obj
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    ):
        return None
    state = dict(obj)
    for prefix in _STRIPPED_PREFIXES:
        if all(k.startswith(prefix) for k in state):
            state = {k.removeprefix(prefix): v for k, v in state.items()}
    return state


def _under(key: str, prefix: str) -> bool:
    return key.startswith(prefix + ".")


def load_state_dict_adapted(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    stem: str,
    head: str,
    source: str = "<mapping>",
    model_name: str = "model",
) -> WeightsReport:
    """Load ``state`` into ``model``, adapting or skipping only the stem conv and the head.

    * The stem conv's weight with another input-channel count but the same output channels and
      kernel size is converted by :func:`~wattwise.models.adapt.adapt_input_channels`.
    * Other stem conv / head tensors that do not fit (new ``num_classes``, small-input 3x3 stem)
      are skipped and keep their random initialization.
    * Anything else that is missing, unexpected or of another shape raises.

    Args:
        model: The model to fill in place.
        state: The source state_dict.
        stem: Dotted path of the model's first conv.
        head: Dotted path of the model's classifier.
        source: Label for messages and the report.
        model_name: Name for messages.

    Returns:
        The :class:`WeightsReport`.

    Raises:
        ModelError: The state_dict does not fit the model.
    """
    if not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{source}: not a state_dict of tensors")
    own = model.state_dict()
    loadable: dict[str, torch.Tensor] = {}
    adapted: list[str] = []
    skipped: dict[str, str] = {}
    mismatched: list[str] = []
    unexpected = [k for k in state if k not in own]
    for key, value in state.items():
        if key not in own:
            continue
        target = own[key]
        if value.shape == target.shape:
            loadable[key] = value
        elif (
            key == f"{stem}.weight"
            and value.ndim == 4
            and value.shape[0] == target.shape[0]
            and value.shape[2:] == target.shape[2:]
        ):
            loadable[key] = adapt_input_channels(value, target.shape[1])
            adapted.append(key)
        elif _under(key, stem) or _under(key, head):
            skipped[key] = f"shape {tuple(value.shape)} in source, {tuple(target.shape)} in model"
        else:
            mismatched.append(f"{key} {tuple(value.shape)} vs {tuple(target.shape)}")
    absent = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    missing = [k for k in absent if _under(k, stem) or _under(k, head)]
    absent = [k for k in absent if k not in missing]
    _check_fit(f"weights {source}", model_name, mismatched, absent, unexpected)
    model.load_state_dict(loadable, strict=False)
    report = WeightsReport(
        source=source,
        loaded=tuple(loadable),
        adapted=tuple(adapted),
        skipped=skipped,
        missing=tuple(missing),
    )
    logger.info(
        "loaded %d tensors from %s into %s; adapted %s; skipped (head/stem changed) %s",
        len(report.loaded),
        source,
        model_name,
        list(report.adapted) or "none",
        list(report.skipped) or "none",
    )
    return report


def load_state_dict_exact(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    *,
    source: str = "<mapping>",
    model_name: str = "model",
) -> None:
    """Load ``state`` into ``model`` strictly: every tensor of the model, each of its shape, and
    nothing else (a checkpoint of this very model).

    Raises:
        ModelError: One line saying how many tensors do not fit, with an example of each kind.
    """
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{source}: not a state_dict of tensors")
    own = model.state_dict()
    mismatched = [
        f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
        for k, v in state.items()
        if k in own and v.shape != own[k].shape
    ]
    absent = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    _check_fit(f"the weights of {source}", model_name, mismatched, absent, unexpected)
    model.load_state_dict(state)


def _check_fit(
    weights: str, model_name: str, mismatched: list[str], absent: list[str], unexpected: list[str]
) -> None:
    """Raises one :class:`ModelError` line when any tensor of ``weights`` does not fit."""
    problems = []
    if mismatched:
        problems.append(f"{len(mismatched)} of another shape (e.g. {mismatched[0]})")
    if absent:
        problems.append(f"{len(absent)} missing from the source (e.g. {absent[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} not in the model (e.g. {unexpected[0]})")
    if problems:
        raise ModelError(
            f"{weights} do not fit {model_name}: tensors "
            + "; ".join(problems)
            + "; were they saved from the same model name and width?"
        )
