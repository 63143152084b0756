"""How a technique config is written as a recipe step (the printing half of the grammar).

:mod:`wattwise.optimize.grammar` reads steps; this module prints them, so that
``TechniqueConfig.to_step()`` needs nothing above it. Shorthands (``bf16`` for
``autocast:bf16``) are registered by the module that defines the technique.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from wattwise.validation import fields_of

#: Step names that stand for a step with fixed arguments (``bf16`` is ``autocast:bf16``).
SHORTHANDS: dict[str, str] = {}


def register_shorthand(name: str, step_text: str) -> None:
    """Let ``name`` stand for ``step_text`` in recipes (and print it back as ``name``)."""
    SHORTHANDS[name] = step_text


def format_step(config: Any) -> str:
    """The canonical text of one step: trailing positional and options at their defaults are
    left out, numbers normalized (``0.50`` -> ``0.5``, ``4.0`` -> ``4``)."""
    positional, options = config.step_args()
    defaults = _defaults(type(config))
    while positional and len(positional) > (
        len(config.positional) if config.required is None else config.required
    ):
        if positional[-1] != defaults.get(config.positional[len(positional) - 1], _MISSING):
            break
        positional.pop()
    aliases = {v: k for k, v in config.option_aliases.items()}
    parts = [config.step, *(value_text(v) for v in positional)]
    for name, value in options.items():
        if value == defaults.get(name, _MISSING):
            continue
        if isinstance(value, Mapping):
            parts += [f"{aliases.get(name, name)}.{k}={value_text(v)}" for k, v in value.items()]
        else:
            parts.append(f"{aliases.get(name, name)}={value_text(value)}")
    text = ":".join(parts)
    for short, full in SHORTHANDS.items():
        if text == full:
            return short
    return text


_MISSING = object()


def _defaults(config_type: type) -> dict[str, Any]:
    from pydantic_core import PydanticUndefined

    out: dict[str, Any] = {}
    for name, info in fields_of(config_type).items():
        if info.default is not PydanticUndefined:
            out[name] = info.default
        elif info.default_factory is not None:
            out[name] = info.default_factory()  # type: ignore[call-arg]
    # compare in the JSON shapes that step_args() returns (tuples as lists...)
    return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def value_text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, list | tuple):
        return "|".join(value_text(v) for v in value)
    return str(value)
