"""The distillation technique's config: step ``distill:<teacher>[:<temperature>[:<alpha>]]``.

Kept apart from :mod:`wattwise.optimize.distill` (the loss, the teacher pass and the training)
so that the grammar and the study validation read it without the training code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import field
from typing import Annotated, Any, ClassVar

from annotated_types import Ge, Gt, Le

from wattwise.optimize.base import STAGE_TRAIN, TechniqueConfig
from wattwise.validation import (
    Bool,
    KeyedError,
    StrictNumber,
    Text,
    checked,
    config_dataclass,
    dump,
    validate,
)

Positive = Annotated[StrictNumber, Gt(0)]
Weight = Annotated[StrictNumber, Ge(0), Le(1)]

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")


def is_checkpoint_path(text: str) -> bool:
    """Whether a teacher given as text is a checkpoint (a path) rather than a model name."""
    return "/" in text or "\\" in text or text.endswith(CHECKPOINT_SUFFIXES)


#: The teacher that is the model being optimized (``distill:self``).
SELF_TEACHER = "self"


def _check_teacher_name(name: str | None) -> str | None:
    from wattwise.models import list_models

    if name is not None and name != SELF_TEACHER and name not in list_models():
        raise ValueError(
            f"unknown teacher model {name!r}; choose from: {', '.join(list_models())}, "
            f"{SELF_TEACHER} (the model being optimized), or give a checkpoint path"
        )
    return name


@config_dataclass
class DistillConfig(TechniqueConfig):
    """How to distill (step ``distill:<teacher>[:<temperature>[:<alpha>]][:key=value...]``;
    the teacher is ``self``, a registered model name or a checkpoint path). A teacher is always
    a trained model, never a random network (see docs/distill.md).

    Attributes:
        temperature: Softmax temperature ``T`` (> 0) of both teacher and student in the KD term.
        alpha: Weight of the KD term; the label cross-entropy gets ``1 - alpha`` (in [0, 1]).
        teacher: ``self`` (the model being optimized: the student's weights as distillation
            starts, e.g. the checkpoint of ``wattwise optimize``) or the registered model name
            of the teacher (see ``wattwise.models.list_models``). A registered teacher without
            weights that fill all its tensors is trained first, on the same data with the
            student's training settings (in a study, with the trial's settings).
        teacher_kwargs: ``create_model`` arguments for ``teacher``; ``num_classes``,
            ``in_channels`` and ``input_size`` default to the dataset's. Trained weights go
            here (``weights="path/to/state_dict.pt"``); then the teacher is not trained again.
        teacher_checkpoint: A wattwise checkpoint (file or run folder) to load the teacher from;
            exactly one of ``teacher`` and ``teacher_checkpoint`` is set.
        precompute_teacher: Compute the teacher's logits once, over the un-augmented training
            split, and look them up per batch (default); ``False`` runs the teacher every step.
        feature_weight: If set (> 0), also match the student's penultimate features (the input
            of its last ``nn.Linear``), through a learned linear projection, to the teacher's,
            with mean-squared error weighted by this factor.
    """

    step: ClassVar[str] = "distill"
    positional: ClassVar[tuple[str, ...]] = ("teacher", "temperature", "alpha")
    required: ClassVar[int | None] = 1
    stage: ClassVar[int] = STAGE_TRAIN
    temperature: Positive = 4.0
    alpha: Weight = 0.9
    teacher: Annotated[Text | None, checked(_check_teacher_name)] = None
    teacher_kwargs: dict[str, Any] = field(default_factory=dict)
    teacher_checkpoint: Text | None = None
    precompute_teacher: Bool = True
    feature_weight: Positive | None = None

    def __post_init__(self) -> None:
        if (self.teacher is None) == (self.teacher_checkpoint is None):
            raise KeyedError(
                ("teacher",), "give exactly one of teacher (a model name) and teacher_checkpoint"
            )
        kwargs = self.teacher_kwargs
        if "name" in kwargs or (kwargs and self.teacher in (None, SELF_TEACHER)):
            raise KeyedError(
                ("teacher_kwargs",),
                "teacher_kwargs must be create_model arguments (without 'name') of a registry "
                f"teacher, got {kwargs!r}",
            )

    @property
    def teacher_source(self) -> str:
        """The teacher as a recipe writes it: its model name or checkpoint path."""
        return self.teacher if self.teacher is not None else str(self.teacher_checkpoint)

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        return tuple(n for n in super().option_names() if n != "teacher_checkpoint")

    @classmethod
    def from_args(cls, positional: Sequence[Any], options: Mapping[str, Any]) -> DistillConfig:
        values = dict(zip(cls.positional, positional, strict=False))
        source = values.pop("teacher", None)
        if isinstance(source, str) and is_checkpoint_path(source):
            values["teacher_checkpoint"] = source
        else:
            values["teacher"] = source
        return cls(**values, **options)

    def step_args(self) -> tuple[list[Any], dict[str, Any]]:
        values = dump(self)
        values.pop("teacher"), values.pop("teacher_checkpoint")
        return [self.teacher_source, values.pop("temperature"), values.pop("alpha")], values

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DistillConfig:
        """A config from plain data (``to_dict()`` output or a YAML mapping)."""
        return validate(cls, {k: v for k, v in data.items() if k != "step"})
