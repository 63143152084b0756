"""The one validation mechanism: pydantic dataclasses, constraints in annotations, ConfigError.

Every configuration value of wattwise (training, measuring, carbon, study sections, technique
configs) is a frozen dataclass declared with :func:`config_dataclass`; its constraints live in
the field annotations (the types below), each default is written once, and a failure raises
:class:`~wattwise.errors.ConfigError` whose message is one line naming the key::

    @config_dataclass
    class FinetuneSettings:
        epochs: NonNegativeInt = 2
        lr: PositiveNumber = 0.01

    FinetuneSettings(epochs=-1)
    # ConfigError: FinetuneSettings: epochs: must be >= 0, got -1

:func:`validate` builds one from plain data (parsed YAML, JSON, CLI options) and names the
source in the message (``study.yaml: train.momentum: ...``); :func:`dump` is its inverse;
:func:`validate_nested` builds a part of a config inside the outer config's validator.
Cross-field checks raise :class:`KeyedError` (a ``ValueError``) from ``__post_init__`` or a
``model_validator`` so that the message names the sub-key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeVar

from annotated_types import Ge, Gt, Le, Lt
from pydantic import AllowInfNan, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter
from pydantic import ValidationError as _ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass

from wattwise.errors import ConfigError

T = TypeVar("T")

#: The largest integer a setting may hold: counts, sizes and seeds fit in a signed 32-bit int
#: (a batch size of 10**20 is a typo, not a request, and would end in an OverflowError).
MAX_INT = 2**31 - 1


def _number_from_text(value: Any) -> Any:
    # PyYAML reads ``1e-3`` (no dot) as a string; accept it as the number it obviously is.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


Int = Annotated[int, Strict(), Ge(-MAX_INT), Le(MAX_INT)]
PositiveInt = Annotated[int, Strict(), Gt(0), Le(MAX_INT)]
NonNegativeInt = Annotated[int, Strict(), Ge(0), Le(MAX_INT)]
Number = Annotated[float, BeforeValidator(_number_from_text), Strict(), AllowInfNan(False)]
#: A finite number given as a number (text such as ``"0.1"`` is refused): for settings that code
#: passes, where a string is a bug rather than YAML's reading of ``1e-3``.
StrictNumber = Annotated[float, Strict(), AllowInfNan(False)]
PositiveNumber = Annotated[Number, Gt(0)]
NonNegativeNumber = Annotated[Number, Ge(0)]
#: A share in [0, 1).
Fraction = Annotated[Number, Ge(0), Lt(1)]
#: A share in (0, 1).
OpenFraction = Annotated[Number, Gt(0), Lt(1)]
#: A share in [0, 1].
ClosedFraction = Annotated[Number, Ge(0), Le(1)]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(min_length=1)]

_CONFIG = ConfigDict(extra="forbid", validate_default=True, arbitrary_types_allowed=True)


class KeyedError(ValueError):
    """A validation error that knows the sub-key it is about (``("address",)``)."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.path = path


def config_dataclass(cls: type[T] | None = None, /, **options: Any) -> Any:
    """Declare a frozen, validated config dataclass (unknown keys refused).

    Construction validates every field against its annotation and raises
    :class:`ConfigError` with a one-line message; ``options`` go to
    ``pydantic.dataclasses.dataclass`` (``config=`` extends the default config).
    """

    def wrap(klass: type[T]) -> type[T]:
        config = ConfigDict(**{**_CONFIG, **options.pop("config", {})})
        built = _pydantic_dataclass(frozen=True, config=config, **options)(klass)
        original = built.__init__

        @functools.wraps(original)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                original(self, *args, **kwargs)
            except _ValidationError as err:
                raise ConfigError(one_line(err, built.__name__, built)) from None

        built.__init__ = __init__  # type: ignore[method-assign]
        return built

    return wrap if cls is None else wrap(cls)


@functools.cache
def _adapter(cls: Any) -> TypeAdapter[Any]:
    return TypeAdapter(cls)


def validate(cls: type[T], data: Any, source: str | None = None) -> T:
    """``cls`` built from plain data (a mapping); failures raise a one-line ConfigError.

    Args:
        cls: A :func:`config_dataclass` (or any type pydantic validates).
        data: Parsed YAML/JSON, or keyword arguments as a mapping.
        source: What the message starts with (a file name); default the class name.
    """
    try:
        return _adapter(cls).validate_python(data)
    except _ValidationError as err:
        raise ConfigError(
            one_line(err, source or getattr(cls, "__name__", "config"), cls)
        ) from None


def validate_nested(cls: type[T], data: Any, keys: Mapping[str, str] | None = None) -> T:
    """``cls`` built from ``data`` inside another config's validator.

    A failure raises :class:`KeyedError` naming the sub-key, so that the outer config's message
    reads ``study.yaml: train.momentum: must be < 1, got 1.5``.

    Args:
        cls: A :func:`config_dataclass`.
        data: A mapping of its fields.
        keys: Field name -> the key the user wrote, where the two differ.
    """
    try:
        return _adapter(cls).validate_python(data)
    except _ValidationError as err:
        loc, message = _located(err.errors()[0], cls)
        if loc and keys and isinstance(loc[0], str):
            loc = (keys.get(loc[0], loc[0]), *loc[1:])
        raise KeyedError(loc, message) from None


def dump(value: Any) -> Any:
    """A config as plain JSON data (tuples as lists); :func:`validate` reads it back."""
    return _adapter(type(value)).dump_python(value, mode="json")


def fields_of(cls: Any) -> dict[str, Any]:
    """Field name -> pydantic FieldInfo of a pydantic dataclass or model."""
    found = getattr(cls, "__pydantic_fields__", None)
    if found is None:
        found = getattr(cls, "model_fields", None)
    return dict(found or {})


# --- one-line messages -----------------------------------------------------------------------

_TYPE_WORDS = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "finite_number": "expected a finite number",
    "string_type": "expected a string",
    "bool_type": "expected true or false",
    "tuple_type": "expected a list",
    "list_type": "expected a list",
    "dict_type": "expected a mapping (key: value)",
    "model_type": "expected a mapping (key: value)",
    "model_attributes_type": "expected a mapping (key: value)",
    "dataclass_type": "expected a mapping (key: value)",
    "dataclass_args_type": "expected a mapping (key: value)",
    "none_required": "expected null",
}


def one_line(err: _ValidationError, source: str, cls: Any = None) -> str:
    """The first error of ``err`` as one line: ``source: key.sub[2]: what is wrong, got X``."""
    errors = err.errors()
    loc, message = _located(errors[0], cls)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    where = format_loc(loc)
    return flat(f"{source}: {where + ': ' if where else ''}{message}{more}")


def _located(first: Mapping[str, Any], cls: Any) -> tuple[tuple[str | int, ...], str]:
    """The key path of one pydantic error (a :class:`KeyedError`'s sub-key included) and its
    message."""
    loc = tuple(first["loc"])
    error = (first.get("ctx") or {}).get("error")
    if isinstance(error, KeyedError):
        loc += error.path
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        section = _section_at(cls, loc[:-1]) if cls is not None else None
        allowed = ", ".join(fields_of(section)) if section is not None else "?"
        return loc, f"unknown key; allowed keys: {allowed}"
    return loc, describe(first)


def describe(error: Mapping[str, Any]) -> str:
    """One pydantic error (``err.errors()[i]``) in words."""
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = _short(error.get("input"))
    if kind in _TYPE_WORDS:
        return f"{_TYPE_WORDS[kind]}, got {got}"
    if kind in ("missing", "missing_argument", "missing_keyword_argument"):
        return "required key is missing"
    if kind == "literal_error":
        choices = ctx.get("expected", "").replace("'", "").replace(" or ", ", ")
        return f"got {got}; choose from: {choices}"
    if kind in ("greater_than", "greater_than_equal", "less_than", "less_than_equal"):
        sign = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<"}.get(kind, "<=")
        bound = next(iter(ctx.values()), "?")
        return f"must be {sign} {bound}, got {got}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    if kind in ("value_error", "assertion_error"):
        return str(ctx.get("error", error["msg"]))
    return f"{error['msg']}, got {got}"


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_loc(loc: Sequence[str | int]) -> str:
    """``("train", "momentum")`` -> ``train.momentum``; ``("models", 1)`` -> ``models[1]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _section_at(cls: Any, loc: Sequence[str | int]) -> Any:
    for part in loc:
        info = fields_of(cls).get(part) if isinstance(part, str) else None
        if info is None:
            return None
        annotation = info.annotation
        if not (isinstance(annotation, type) and fields_of(annotation)):
            return None
        cls = annotation
    return cls


def flat(text: str) -> str:
    """``text`` on one line (runs of whitespace -> one space)."""
    return " ".join(text.split())


def checked(check: Callable[[Any], Any]) -> Any:
    """A ``pydantic.AfterValidator`` running ``check`` (raise ``ValueError`` to refuse)."""
    from pydantic import AfterValidator

    return AfterValidator(check)
