"""The one recipe grammar: ``distill:resnet50,prune:structured:0.5:steps=3,quantize:int8``.

A recipe is steps separated by commas, applied in order. A step is its name, then its
positional arguments, then ``key=value`` options, all separated by colons::

    prune:structured:<ratio>[:importance=taylor][:steps=3][:global_pruning=true]...
    distill:<teacher model or checkpoint path>[:<temperature>[:<alpha>]][:feature_weight=0.1]

Every name, argument and option comes from the technique's config class (its ``step``,
``positional`` and fields, see :class:`~wattwise.optimize.base.TechniqueConfig`): this module
knows no technique by name. Values are written as in YAML: numbers, ``true``/``false``,
``none``, text; a tuple option joins its items with ``|`` (``ignore=layer4.1|fc``); a mapping
option is set key by key (``teacher_kwargs.width=0.5``). :func:`format_recipe` prints the
canonical text (lower-case names, numbers normalized, defaults left out), which
:func:`parse_recipe` reads back to equal configs. ``wattwise optimize --list-techniques``
and docs/optimize.md show every step with its options.
"""

from __future__ import annotations

import itertools
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from wattwise.errors import ConfigError
from wattwise.optimize.base import STAGE_TRAIN, TechniqueConfig, techniques
from wattwise.optimize.step_text import SHORTHANDS
from wattwise.validation import fields_of


def parse_recipe(text: str) -> tuple[TechniqueConfig, ...]:
    """The configs of a recipe such as ``"prune:structured:0.5,quantize:int8"``.

    ``baseline`` stands alone; a kind of step (``prune``, ``quantize``...) appears at most
    once, and steps come in stage order (training, pruning, layout, numerics).

    Raises:
        ConfigError: Unknown step, malformed or invalid argument, or an impossible order (one
            line, with the step's usage).
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"a technique must be a non-empty string, got {text!r}")
    configs = tuple(parse_step(part.strip(), text) for part in text.split(","))
    check_recipe(configs, text)
    return configs


def check_recipe(configs: Sequence[TechniqueConfig], text: str | None = None) -> None:
    """Raises ConfigError unless ``configs`` is a valid recipe (see :func:`parse_recipe`)."""
    where = text if text is not None else format_recipe(configs)
    kinds = [c.kind for c in configs]
    if "baseline" in kinds and len(configs) > 1:
        raise ConfigError(f"'baseline' cannot be chained with other steps in {where!r}")
    for i, config in enumerate(configs):
        again = next((c for c in configs[i + 1 :] if c.kind == config.kind), None)
        if again is not None:
            raise ConfigError(
                f"{config.to_step()} and {again.to_step()} are both {config.kind!r} steps in "
                f"{where!r}: a recipe takes one of each kind"
            )
    for before, after in itertools.pairwise(configs):
        if after.stage < before.stage:
            first = "distill" if after.stage == STAGE_TRAIN else after.kind
            raise ConfigError(
                f"{after.to_step()} must come before {before.to_step()} in {where!r} "
                f"({first} steps go {_stage_words(after.stage)})"
            )


def _stage_words(stage: int) -> str:
    return ("first: they train the model", "before layout and numeric steps",
            "before numeric steps", "last")[stage]  # fmt: skip


def format_recipe(configs: Iterable[TechniqueConfig]) -> str:
    """The canonical text of a recipe (what :func:`parse_recipe` reads back)."""
    return ",".join(c.to_step() for c in configs)


def canonical_recipe(text: str) -> str:
    """``format_recipe(parse_recipe(text))``."""
    return format_recipe(parse_recipe(text))


def parse_step(part: str, text: str | None = None) -> TechniqueConfig:
    """One step (``prune:structured:0.5:importance=taylor``) as its config."""
    config_type, positional, options, usage = _split_step(part, text)
    return _build(config_type, positional, options, usage)


def _split_step(
    part: str, text: str | None = None
) -> tuple[type[TechniqueConfig], list[Any], dict[str, Any], str]:
    """A step's config type, positional values, options and usage line (not yet validated)."""
    where = f" in {text!r}" if text is not None and text != part else ""
    if not part:
        raise ConfigError(f"empty step{where or ' in the recipe'}")
    tokens = [t.strip() for t in part.split(":")]
    head = tokens[0].lower()
    if head in SHORTHANDS:
        if len(tokens) > 1:
            raise ConfigError(f"{head} takes no arguments, got {part!r}{where}")
        tokens = SHORTHANDS[head].split(":")
    config_type, used = _match(tokens, part, where)
    positional: list[Any] = []
    options: dict[str, Any] = {}
    usage = f"{config_type.step} takes {usage_of(config_type)}, got {part!r}{where}"
    for arg in tokens[used:]:
        key, eq, raw = arg.partition("=")
        if eq:
            _set_option(config_type, options, key.strip(), raw.strip(), usage)
        elif options:
            raise ConfigError(f"{usage}: positional argument {arg!r} after an option")
        else:
            positional.append(_parse_value(arg))
    return config_type, positional, options, usage


def _build(
    config_type: type[TechniqueConfig],
    positional: list[Any],
    options: dict[str, Any],
    usage: str,
) -> TechniqueConfig:
    required = len(config_type.positional) if config_type.required is None else config_type.required
    if not required <= len(positional) <= len(config_type.positional):
        raise ConfigError(usage)
    try:
        return config_type.from_args(positional, options)
    except ConfigError as err:
        detail = str(err).split(": ", 1)[-1]
        raise ConfigError(f"{usage}: {detail}") from None


def _match(tokens: list[str], part: str, where: str) -> tuple[type[TechniqueConfig], int]:
    """The config type whose step is the longest prefix of ``tokens``, and its token count."""
    for used in range(len(tokens), 0, -1):
        found = techniques.config_type(":".join(t.lower() for t in tokens[:used]))
        if found is not None:
            return found, used
    kind = tokens[0].lower()
    forms = [s for s in techniques.steps() if s.split(":", 1)[0] == kind]
    if forms:
        choices = " or ".join(f"{s}:{usage_of(techniques.config_type(s))}" for s in forms)
        raise ConfigError(f"{kind} takes {choices}, got {part!r}{where}")
    known = sorted({s.split(":", 1)[0] for s in techniques.steps()} | set(SHORTHANDS))
    raise ConfigError(
        f"unknown technique step {kind!r}{where or f' in {part!r}'}; choose from: "
        + ", ".join(known)
    )


def usage_of(config_type: type[TechniqueConfig] | None) -> str:
    """``<ratio>[:key=value...]`` for the step of ``config_type``, naming every option."""
    if config_type is None:
        return ""
    required = len(config_type.positional) if config_type.required is None else config_type.required
    parts = [f"<{n}>" if i < required else f"[<{n}>]" for i, n in enumerate(config_type.positional)]
    aliases = {v: k for k, v in config_type.option_aliases.items()}
    options = [aliases.get(n, n) for n in config_type.option_names()]
    text = ":".join(parts)
    if options:
        text += (":" if text else "") + "[" + "|".join(options) + "=<value>...]"
    return text or "no arguments"


def _set_option(
    config_type: type[TechniqueConfig], options: dict[str, Any], key: str, raw: str, usage: str
) -> None:
    name, _, sub = key.partition(".")
    name = config_type.option_aliases.get(name, name)
    known = config_type.option_names()
    known_fields = fields_of(config_type)
    if name not in known:
        aliases = {v: k for k, v in config_type.option_aliases.items()}
        names = [aliases.get(n, n) for n in known]
        raise ConfigError(f"{usage}: unknown option {key!r}; options: {', '.join(names)}")
    value = _parse_value(raw, tuple_ok=True)
    if typing.get_origin(known_fields[name].annotation) is tuple and not isinstance(value, tuple):
        value = (value,)  # one item of a tuple option: ``ignore=fc``
    if sub:
        options.setdefault(name, {})[sub] = value
    elif name in options:
        raise ConfigError(f"{usage}: option {key!r} given twice")
    else:
        options[name] = value


_INT = re.compile(r"[+-]?\d+")


def _parse_value(text: str, *, tuple_ok: bool = False) -> Any:
    """A step argument as the value it spells: int, float, bool, None, tuple or text."""
    if tuple_ok and "|" in text:
        return tuple(_parse_value(item.strip()) for item in text.split("|") if item.strip())
    lower = text.lower()
    if lower in ("true", "false"):
        return lower == "true"
    if lower in ("none", "null"):
        return None
    if _INT.fullmatch(text):
        return int(text)
    try:
        return float(text)
    except ValueError:
        return text


def load_recipe(text: str) -> tuple[TechniqueConfig, ...]:
    """A recipe given as text, or as a YAML file: a list of steps, or a mapping with ``steps``.

    Each step in YAML is a step string (``prune:structured:0.5``) or a mapping naming the step
    and its options (``{step: prune:structured, ratio: 0.5, importance: taylor}``).
    """
    path = Path(text)
    if not (text.endswith((".yaml", ".yml")) or path.is_file()):
        return parse_recipe(text)
    import yaml

    from wattwise.files import read_regular_text

    try:
        data = yaml.safe_load(read_regular_text(path))
    except (OSError, UnicodeDecodeError) as err:
        why = getattr(err, "strerror", None) or err
        raise ConfigError(f"cannot read recipe {path}: {why}") from err
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML: {err}".splitlines()[0]) from err
    steps = data.get("steps") if isinstance(data, dict) else data
    shape = f"{path}: a recipe is a list of steps such as 'prune:structured:0.5'"
    if not isinstance(steps, list) or not steps:
        raise ConfigError(shape)
    configs = []
    for i, item in enumerate(steps):
        if isinstance(item, str):
            configs.append(parse_step(item.strip()))
        elif isinstance(item, dict) and isinstance(item.get("step"), str):
            configs.append(_step_from_mapping(item, f"{path}: steps[{i}]"))
        else:
            raise ConfigError(f"{shape} or mappings with a 'step' key (steps[{i}])")
    configs_t = tuple(configs)
    check_recipe(configs_t)
    return configs_t


def _step_from_mapping(item: Mapping[str, Any], where: str) -> TechniqueConfig:
    values = dict(item)
    head = str(values.pop("step")).strip()
    config_type, positional, options, _ = _split_step(head)
    usage = f"{where}: {config_type.step} takes {usage_of(config_type)}"
    for key, value in values.items():
        name = config_type.option_aliases.get(key, key)
        value = tuple(value) if isinstance(value, list) else value
        if name in config_type.positional:
            index = config_type.positional.index(name)
            positional += [None] * (index + 1 - len(positional))
            positional[index] = value
        elif name in config_type.option_names():
            options[name] = value
        else:
            known = ", ".join((*config_type.positional, *config_type.option_names()))
            raise ConfigError(
                f"{where}: unknown key {key!r} of {config_type.step}; allowed: {known}"
            )
    return _build(config_type, positional, options, usage)
