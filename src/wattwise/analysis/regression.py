"""What drives energy: OLS of log energy on the swept settings (statsmodels).

    model = energy_drivers(rows)              # rows: TrialMetrics.to_dict() of ok trials
    model.formula, model.r_squared            # "log_energy ~ batch_size + C(technique)", 0.93
    [c.percent_effect for c in model.coefficients]

Numeric settings (batch size, learning rate, epochs) enter as they are; categorical ones (dataset,
model, technique, device) as treatment contrasts against a reference level (``baseline`` for the
technique). Too little data is a result: ``reason`` says what was missing.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from wattwise.analysis.base import Result, finite

# --- what drives energy: OLS --------------------------------------------------------------------

#: Settings the energy model may use: numeric ones and categorical ones (``device_id``: the device
#: a trial ran on, so that energy from several devices is not pooled into one level).
NUMERIC_TERMS = ("batch_size", "lr", "epochs")
CATEGORICAL_TERMS = ("dataset", "model", "technique", "device_id")


@dataclass(frozen=True)
class Coefficient(Result):
    """One OLS coefficient on log energy; ``percent_effect = 100 x (exp(estimate) - 1)`` is the
    change in energy per unit of a numeric setting, or against the reference level (``None`` for
    the intercept)."""

    term: str
    estimate: float | None
    std_err: float | None
    p_value: float | None
    ci_low: float | None
    ci_high: float | None
    percent_effect: float | None


@dataclass(frozen=True)
class TermEffect(Result):
    """A setting's overall effect (type-II ANOVA of the OLS fit): F and its p-value."""

    term: str
    df: float | None
    f: float | None
    p_value: float | None


@dataclass(frozen=True)
class EnergyModel(Result):
    """OLS of ``log(energy)`` on the settings that vary; ``reason`` is set when it could not run.

    Attributes:
        formula: The statsmodels formula actually fitted.
        references: Reference level of each categorical setting.
        skipped: Settings left out, with why (a single level, missing values).
    """

    response: str
    formula: str | None
    n: int
    r_squared: float | None
    adj_r_squared: float | None
    coefficients: tuple[Coefficient, ...]
    terms: tuple[TermEffect, ...]
    references: Mapping[str, str]
    skipped: Mapping[str, str]
    reason: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None

    def to_dict(self) -> dict[str, Any]:
        return super().to_dict() | {"ok": self.ok}


def energy_drivers(
    rows: Iterable[Mapping[str, Any]], *, response: str = "train_energy_j", min_residual_df: int = 2
) -> EnergyModel:
    """Which settings drive energy: OLS of ``log(response)`` on batch size, learning rate and
    epochs (numeric) and dataset, model, technique and device (categorical; ``baseline`` is the
    reference technique when present), with ``statsmodels.formula.api.ols``.

    Settings with a single value are skipped. Rows without a positive ``response`` are dropped.
    With fewer than ``parameters + min_residual_df`` rows the result says "not enough data".

    Args:
        rows: Mappings with the settings and ``response`` (``TrialMetrics.to_dict()``, store rows).
        response: The energy column (J), e.g. ``train_energy_j`` or
            ``inference_energy_per_image_j``.
    """
    import pandas as pd

    table = [dict(r) for r in rows]
    frame = pd.DataFrame(table)
    base: dict[str, Any] = dict(
        response=response,
        formula=None,
        n=0,
        r_squared=None,
        adj_r_squared=None,
        coefficients=(),
        terms=(),
        references={},
        skipped={},
    )
    if frame.empty or response not in frame:
        return EnergyModel(**base, reason=f"not enough data: no trial has {response}")
    frame = frame[pd.to_numeric(frame[response], errors="coerce") > 0].copy()
    skipped: dict[str, str] = {}
    used_num, used_cat, references = [], [], {}
    for term in (*NUMERIC_TERMS, *CATEGORICAL_TERMS):
        if term not in frame or frame[term].isna().all():
            skipped[term] = "not recorded"
            continue
        if frame[term].isna().any():
            skipped[term] = "missing in some trials"
            continue
        levels = frame[term].nunique()
        if levels < 2:
            skipped[term] = f"a single value ({frame[term].iloc[0]})"
            continue
        if term in NUMERIC_TERMS:
            frame[term] = pd.to_numeric(frame[term], errors="coerce").astype(float)
            used_num.append(term)
        else:
            values = [str(v) for v in frame[term]]
            order = sorted(set(values))
            if term == "technique" and "baseline" in order:
                order.remove("baseline")
                order.insert(0, "baseline")
            frame[term] = pd.Categorical(values, categories=order)
            references[term] = order[0]
            used_cat.append(term)
    n = len(frame)
    base.update(n=n, skipped=skipped, references=references)
    if not used_num and not used_cat:
        return EnergyModel(**base, reason="no setting varies: nothing to explain energy with")
    n_params = 1 + len(used_num) + sum(frame[t].cat.categories.size - 1 for t in used_cat)
    if n < n_params + min_residual_df:
        return EnergyModel(
            **base,
            reason=f"not enough data: {n} trial(s) for {n_params} parameters; "
            f"need at least {n_params + min_residual_df}",
        )
    frame["log_energy"] = np.log(frame[response].astype(float))
    formula = "log_energy ~ " + " + ".join([*used_num, *(f"C({t})" for t in used_cat)])
    base["formula"] = formula
    return _fit(frame, formula, base)


def _fit(frame: Any, formula: str, base: dict[str, Any]) -> EnergyModel:
    import statsmodels.api as sm
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = smf.ols(formula, data=frame).fit()
        ci = fit.conf_int()
        coefficients = tuple(
            Coefficient(
                term=_pretty_term(name, base["references"]),
                estimate=finite(fit.params[name]),
                std_err=finite(fit.bse[name]),
                p_value=finite(fit.pvalues[name]),
                ci_low=finite(ci.loc[name, 0]),
                ci_high=finite(ci.loc[name, 1]),
                percent_effect=finite(100 * math.expm1(fit.params[name]))
                if name != "Intercept" and abs(fit.params[name]) < 700
                else None,
            )
            for name in fit.params.index
        )
        try:
            table = sm.stats.anova_lm(fit, typ=2)
            terms = tuple(
                TermEffect(
                    term=_pretty_term(str(name), {}),
                    df=finite(row["df"]),
                    f=finite(row["F"]),
                    p_value=finite(row["PR(>F)"]),
                )
                for name, row in table.iterrows()
                if name != "Residual"
            )
        except (ValueError, np.linalg.LinAlgError):
            terms = ()
    return EnergyModel(
        **base
        | {
            "coefficients": coefficients,
            "terms": terms,
            "r_squared": finite(fit.rsquared),
            "adj_r_squared": finite(fit.rsquared_adj),
        }
    )


def _pretty_term(name: str, references: Mapping[str, str]) -> str:
    """``C(technique)[T.prune:structured:0.5]`` -> ``technique = prune:structured:0.5 (vs
    baseline)``; ``C(model)`` -> ``model``."""
    if name.startswith("C(") and ")" in name:
        var = name[2 : name.index(")")]
        rest = name[name.index(")") + 1 :]
        if rest.startswith("[T.") and rest.endswith("]"):
            ref = references.get(var)
            return f"{var} = {rest[3:-1]}" + (f" (vs {ref})" if ref else "")
        return var
    return name
