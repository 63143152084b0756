"""How a study runs: where its trials run (``executor:``), which trials (``search:``) and where
else they are logged (``tracking:``). Sections of :class:`wattwise.config.StudyConfig`, which
re-exports them; validated by the one mechanism of :mod:`wattwise.validation`. See
docs/experiments.md and docs/integrations.md.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Strict, model_serializer

from wattwise.validation import (
    KeyedError,
    NonNegativeInt,
    PositiveInt,
    PositiveNumber,
    Text,
    checked,
    config_dataclass,
    fields_of,
)


@config_dataclass
class ExecutorSettings:
    """Where trials run: ``local`` (one at a time, this process), ``local-gpus`` (one worker per
    GPU; ``gpus`` picks them, default all visible), ``ray`` (``address`` of a cluster, default:
    start a local one) or ``slurm`` (SLURM job arrays through submitit: the settings from
    ``cluster`` on, which only it takes; ``None`` is the default that
    :mod:`wattwise.experiment.executor_slurm` names, ``cluster: local`` runs the same code path
    on this machine, for testing). A study of another kind writes none of the slurm keys."""

    kind: Literal["local", "local-gpus", "ray", "slurm"] = "local"
    address: Text | None = None
    gpus: tuple[NonNegativeInt, ...] | None = None
    # only the slurm executor's from here on (SLURM_KEYS)
    cluster: Literal["slurm", "local"] | None = None
    partition: Text | None = None
    account: Text | None = None
    qos: Text | None = None
    cpus_per_task: PositiveInt | None = None
    mem_gb: PositiveNumber | None = None
    gpus_per_task: NonNegativeInt | None = None
    timeout_min: PositiveInt | None = None
    array_parallelism: PositiveInt | None = None
    trials_per_task: PositiveInt | None = None
    max_timeouts: NonNegativeInt | None = None
    log_dir: Text | None = None
    setup: tuple[Text, ...] | None = None

    @model_serializer(mode="wrap")
    def _slurm_keys_for_slurm(self, handler: Any) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if self.kind == "slurm":
            return out
        return {key: value for key, value in out.items() if key not in SLURM_KEYS}

    def __post_init__(self) -> None:
        for key in SLURM_KEYS:
            if getattr(self, key) is not None and self.kind != "slurm":
                raise KeyedError(
                    (key,), f"only the 'slurm' executor takes {key}, not {self.kind!r}"
                )
        if self.address is not None and self.kind != "ray":
            raise KeyedError(
                ("address",), f"only the 'ray' executor takes an address, not {self.kind!r}"
            )
        if self.gpus is not None and self.kind != "local-gpus":
            raise KeyedError(
                ("gpus",), f"only the 'local-gpus' executor takes gpus, not {self.kind!r}"
            )
        if self.gpus is not None and not self.gpus:
            raise KeyedError(("gpus",), "must not be empty (leave it out to use all visible GPUs)")


_EXECUTOR_KEYS = list(fields_of(ExecutorSettings))
#: The :class:`ExecutorSettings` keys only the ``slurm`` executor takes.
SLURM_KEYS = tuple(_EXECUTOR_KEYS[_EXECUTOR_KEYS.index("cluster") :])


@config_dataclass
class SearchSettings:
    """How the trials are chosen: the whole ``grid``, or ``n_trials`` picked by ``optuna`` over the
    same space, optimizing ``objectives`` (record metrics) in ``directions``."""

    kind: Literal["grid", "optuna"] = "grid"
    n_trials: PositiveInt | None = None
    objectives: tuple[str, ...] = ("accuracy", "train_energy_j")
    directions: tuple[Literal["maximize", "minimize"], ...] = ("maximize", "minimize")

    def __post_init__(self) -> None:
        from wattwise.experiment.record import METRICS

        if self.kind == "optuna" and self.n_trials is None:
            raise KeyedError(("n_trials",), "required by the 'optuna' search (a positive integer)")
        if self.kind == "grid" and self.n_trials is not None:
            raise KeyedError(("n_trials",), "the 'grid' search runs every trial; remove n_trials")
        if not self.objectives:
            raise KeyedError(("objectives",), "must not be empty")
        for i, metric in enumerate(self.objectives):
            if metric not in METRICS:
                raise KeyedError(
                    ("objectives", i),
                    f"unknown metric {metric!r}; choose from: {', '.join(METRICS)}",
                )
        if len(self.directions) != len(self.objectives):
            raise KeyedError(
                ("directions",),
                f"give one direction per objective ({len(self.objectives)}), "
                f"got {len(self.directions)}",
            )


#: The URI schemes of MLflow's tracking stores (a ``+driver`` suffix is allowed: ``mysql+pymysql``).
MLFLOW_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "http", "https", "file", "databricks")


def _check_mlflow_uri(text: str) -> str:
    """A URI with one of :data:`MLFLOW_SCHEMES` and something after it (a host for http)."""
    scheme, _, rest = text.strip().partition(":")
    base = scheme.split("+", 1)[0].lower()
    no_host = base in ("http", "https") and not rest.removeprefix("//").split("/", 1)[0]
    if text.strip() != "databricks" and (
        base not in MLFLOW_SCHEMES or not rest.strip("/") or no_host
    ):
        raise ValueError(
            f"not an MLflow tracking URI: {text!r}; use sqlite:///PATH/mlflow.db, "
            "http(s)://HOST:PORT, postgresql://..., file:///PATH or databricks"
        )
    return text.strip()


MlflowUri = Annotated[str, Strict(), checked(_check_mlflow_uri)]


@config_dataclass
class MlflowSettings:
    """MLflow tracking of a study's trials (``tracking.mlflow``; see docs/integrations.md).

    Attributes:
        uri: The tracking store (``None``: ``sqlite:///<study folder>/mlflow.db``).
        experiment: The MLflow experiment (``None``: the study's name).
    """

    uri: MlflowUri | None = None
    experiment: Text | None = None


@config_dataclass
class TrackingSettings:
    """Where a study's trials are also logged: ``mlflow`` (default ``None``: nowhere)."""

    mlflow: MlflowSettings | None = None
