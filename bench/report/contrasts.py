"""Seed-paired contrasts that test the plateau claim: does a method keep improving over its last decade of budgets
where LoRA and DoRA do not, does a curve fall past its peak, and how small a difference could the design see.

Model. Per view (one task, or the per-seed mean over tasks) and per comparison: score ~ cell + seed by ordinary least
squares (statsmodels OLS), fitted to the runs of the cells the comparison uses, where a cell is a method at a budget
(log-budget as a factor: the method × log-budget interaction with one mean per budget, because a saturating curve
is not a line in log-budget) and the seed effect is additive. The comparison is a contrast of cell means with its
95 % t-interval on the model's residual degrees of freedom. Why this model:
- seeds are paired: one seed shares its data order across methods and budgets, and its effect shows in the stores,
  so the seed term takes that shared part out of every within-seed difference (a Welch interval between cells counts
  it as noise);
- fitted to the comparison's own cells, the noise is theirs (seed spreads differ by cell: small sparse budgets are
  noisier); every cell enters with weight ±1, so the residual variance times Σw²/n estimates the contrast's variance
  without bias even when the cells' variances differ;
- two cells (a gain, a decline) make it exactly the paired t-test on per-seed differences; four cells (a difference
  of gains) pool the three within-seed contrasts of the four cells: 3(n − 1) degrees of freedom instead of n − 1;
- a seed-paired permutation test has 2^n sign flips, so with three seeds its smallest p-value is 0.25 and it can
  never reject; a mixed model cannot estimate a seed variance from three seeds, so seeds are fixed effects.

Last decade: a method's largest budget in the view and its budget nearest one decade below (plateau.decade_below),
from that method's own budgets, so the endpoints and the width (in decades, listed) differ by method; the gain is
the top's mean minus the base's. A gain difference is a method's gain minus a reference's (REFERENCES: LoRA and
DoRA), for every other method whose last decade overlaps the reference's in trainable parameters: a method whose
curve ends below the reference's last decade (SVFit, which runs out of singular values early) has its own gain only.

Decline: for a method whose best seed mean lies below its largest budget, the largest minus the peak, one-sided
(H1: lower than at the peak), with its p-value and 95 % upper bound. The peak is picked from the same means, which
makes a decline easier to find than the p-value says: "no decline detected" is the conservative reading.

Power: the smallest true difference a contrast detects with 80 % power (two-sided 5 % test; one-sided for declines),
given its standard error (the observed residual seed noise) and degrees of freedom, from the noncentral t
distribution (for two cells, statsmodels' TTestPower on the per-seed differences).

Intervals and p-values are per contrast, not adjusted for the number of contrasts in a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import optimize
from scipy import stats as scipy_stats

from bench.report import plateau, text
from bench.report.plots import display_name
from bench.report.stats import ALPHA, CONFIDENCE
from bench.run.budget import FIXED_KNOBS

REFERENCES = ("lora", "dora")
Weights = dict[tuple[str, str], float]  # (method, budget) cell -> its weight in a contrast
POWER = 0.8
COLUMNS = [
    "kind",
    "model",
    "task",
    "method",
    "reference",
    "base_params",
    "top_params",
    "decades",
    "seeds",
    "estimate",
    "se",
    "df",
    "ci_low",  # two-sided 95 % interval; for a decline -inf and the one-sided 95 % upper bound
    "ci_high",
    "p",  # two-sided; one-sided (lower) for a decline
    "detectable",
]


@dataclass(frozen=True)
class Estimate:
    """A contrast of cell means with its standard error and residual degrees of freedom (df 0: no interval)."""

    value: float
    se: float
    df: int

    def interval(self) -> tuple[float, float] | None:
        """Two-sided CONFIDENCE t-interval."""
        if self.df < 1:
            return None
        half = scipy_stats.t.ppf((1 + CONFIDENCE) / 2, self.df) * self.se
        return self.value - half, self.value + half

    def upper_bound(self) -> float | None:
        """One-sided CONFIDENCE upper bound."""
        return None if self.df < 1 else self.value + scipy_stats.t.ppf(CONFIDENCE, self.df) * self.se

    def p_value(self, alternative: str = "two-sided") -> float | None:
        """p of "the contrast is zero" against "not zero" ("two-sided") or "below zero" ("less")."""
        if self.df < 1:
            return None
        # identical per-seed differences (se 0): t is infinite with the value's sign, or 0 for no difference
        t = self.value / self.se if self.se else math.copysign(math.inf, self.value) if self.value else 0.0
        return float(
            2 * scipy_stats.t.sf(abs(t), self.df) if alternative == "two-sided" else scipy_stats.t.cdf(t, self.df)
        )

    def detectable(self, alternative: str = "two-sided") -> float | None:
        """The smallest true contrast detected with POWER (`detectable_difference`)."""
        return None if self.df < 1 else detectable_difference(self.se, self.df, alternative)


def detectable_difference(se: float, df: int, alternative: str = "two-sided") -> float:
    """The true difference that a t-test of an estimate with standard error `se` on `df` degrees of freedom rejects
    with probability POWER at level ALPHA ("two-sided", or one-sided "less"/"greater", which are symmetric)."""
    if se == 0:
        return 0.0
    two_sided = alternative == "two-sided"
    critical = scipy_stats.t.ppf(1 - ALPHA / 2 if two_sided else 1 - ALPHA, df)

    def shortfall(shift: float) -> float:
        # the lower tail is negligible for a positive shift, and scipy's nct.cdf returns nan for some far ones
        lower = np.nan_to_num(scipy_stats.nct.cdf(-critical, df, shift)) if two_sided else 0.0
        return scipy_stats.nct.sf(critical, df, shift) + lower - POWER

    high = critical + 1.0
    while shortfall(high) < 0:
        high *= 2
    return float(optimize.brentq(shortfall, 0.0, high)) * se


def contrast(runs: pd.DataFrame, weights: Weights) -> Estimate:
    """Σ weight × mean of the (method, budget) cells in `weights`, under score ~ cell + seed fitted to their runs
    (`runs`: method, budget, seed, score): one column per cell, one per seed but the first."""
    used = runs[[cell in weights for cell in zip(runs["method"], runs["budget"])]]
    cells, seeds = list(weights), sorted(set(used["seed"]))
    design = np.zeros((len(used), len(cells) + len(seeds) - 1))
    design[np.arange(len(used)), [cells.index(cell) for cell in zip(used["method"], used["budget"])]] = 1.0
    for column, seed in enumerate(seeds[1:], start=len(cells)):
        design[:, column] = (used["seed"] == seed).to_numpy()
    fit = sm.OLS(used["score"].to_numpy(dtype=float), design).fit()
    vector = np.concatenate([list(weights.values()), np.zeros(len(seeds) - 1)])
    if fit.df_resid < 1:
        return Estimate(float(vector @ fit.params), math.nan, 0)
    tested = fit.t_test(vector)
    return Estimate(float(np.squeeze(tested.effect)), float(np.squeeze(tested.sd)), round(fit.df_resid))


@dataclass(frozen=True)
class Curve:
    """One method's cells in a view: trainable parameters and seed mean per budget (label)."""

    method: str
    params: dict[str, float]
    means: dict[str, float]

    def budget_at(self, params: float) -> str:
        """The budget label of a parameter count of this curve."""
        return next(budget for budget, count in self.params.items() if count == params)

    def decade(self) -> tuple[str, str] | None:
        """The (base, top) budgets of the last decade; None for a single budget."""
        base = plateau.decade_below(list(self.params.values()))
        return None if base is None else (self.budget_at(base), self.budget_at(max(self.params.values())))

    def steps(self, low: str, high: str, sign: float = 1.0) -> Weights:
        """Contrast weights of sign × (mean at `high` − mean at `low`)."""
        return {(self.method, high): sign, (self.method, low): -sign}


def _curves(view: pd.DataFrame) -> dict[str, Curve]:
    """Every method of a view with a budget axis (`view`: method, budget, seed, score, params)."""
    budgeted = view[~view["budget"].isin(FIXED_KNOBS)]
    return {
        method: Curve(
            method, runs.groupby("budget")["params"].mean().to_dict(), runs.groupby("budget")["score"].mean().to_dict()
        )
        for method, runs in budgeted.groupby("method", sort=True)
    }


def _row(
    view: pd.DataFrame, kind: str, curve: Curve, span: tuple[str, str], weights: Weights, reference: str = ""
) -> dict[str, object]:
    """A row of COLUMNS but model and task: the contrast `weights` over the `span` (low, high budgets) of `curve`."""
    estimate = contrast(view, weights)
    alternative = "less" if kind == "decline" else "two-sided"
    if kind == "decline":  # one-sided: only an upper bound
        low, high = -math.inf, estimate.upper_bound()
    else:
        low, high = estimate.interval() or (math.nan, math.nan)
    used = view[[cell in weights for cell in zip(view["method"], view["budget"])]]
    base, top = curve.params[span[0]], curve.params[span[1]]
    values = {
        "kind": kind,
        "method": curve.method,
        "reference": reference,
        "base_params": base,
        "top_params": top,
        "decades": math.log10(top / base),
        "seeds": used["seed"].nunique(),
        "estimate": estimate.value,
        "se": estimate.se,
        "df": estimate.df,
        "ci_low": low,
        "ci_high": high,
        "p": estimate.p_value(alternative),
        "detectable": estimate.detectable(alternative),
    }
    return {name: math.nan if value is None else value for name, value in values.items()}


def _overlap(first: Curve, second: Curve) -> bool:
    """Whether two curves' last decades share trainable-parameter counts (both curves have one)."""
    (low, high), (other_low, other_high) = (
        [curve.params[budget] for budget in curve.decade()] for curve in (first, second)
    )
    return low < other_high and other_low < high


def view_contrasts(view: pd.DataFrame) -> list[dict[str, object]]:
    """One view's rows (COLUMNS but model and task): every method's last-decade gain, each other method's gain minus
    each reference's whose last decade overlaps it, and every method's decline past a peak below its largest budget."""
    by_method = _curves(view)
    decades = {method: decade for method, curve in by_method.items() if (decade := curve.decade()) is not None}
    rows = [
        _row(view, "gain", by_method[method], decade, by_method[method].steps(*decade))
        for method, decade in decades.items()
    ]
    for method, decade in decades.items():
        for reference in REFERENCES:
            if (
                method in REFERENCES
                or reference not in decades
                or not _overlap(by_method[method], by_method[reference])
            ):
                continue
            weights = by_method[method].steps(*decade) | by_method[reference].steps(*decades[reference], sign=-1.0)
            rows.append(_row(view, "difference", by_method[method], decade, weights, reference))
    for curve in by_method.values():
        peak, top = max(curve.means, key=curve.means.get), max(curve.params, key=curve.params.get)
        if peak != top:
            rows.append(_row(view, "decline", curve, (peak, top), curve.steps(peak, top)))
    return rows


def plateau_contrasts(views: list[tuple[tuple[str, str], pd.DataFrame]]) -> pd.DataFrame:
    """The contrasts of every (model, task or "average") view (write.plateau_views), one row each (COLUMNS)."""
    rows = [{"model": model, "task": task, **row} for (model, task), view in views for row in view_contrasts(view)]
    return pd.DataFrame(rows, columns=COLUMNS)


def _interval_text(row: pd.Series) -> str:
    """The estimate with its interval: "+1.2 [-0.4, +2.8]", or "-0.3 [≤ +0.7]" for a one-sided bound."""
    if math.isnan(row["ci_high"]):
        return f"{row['estimate']:+.1f}"
    if math.isinf(row["ci_low"]):
        return f"{row['estimate']:+.1f} [≤ {row['ci_high']:+.1f}]"
    return f"{row['estimate']:+.1f} [{row['ci_low']:+.1f}, {row['ci_high']:+.1f}]"


def _verdict(row: pd.Series) -> str:
    """What the row's interval says."""
    if math.isnan(row["ci_high"]):
        return "one seed"
    if row["kind"] == "decline":
        return "declines" if row["ci_high"] < 0 else "no decline detected"
    words = ("rises", "falls", "flat") if row["kind"] == "gain" else ("larger", "smaller", "no difference detected")
    return words[0] if row["ci_low"] > 0 else words[1] if row["ci_high"] < 0 else words[2]


def _span_text(row: pd.Series) -> str:
    return f"{row['base_params']:,.0f} → {row['top_params']:,.0f} ({row['decades']:.2f})"


def _number(value: float, digits: int) -> str:
    return "–" if math.isnan(value) else f"{value:.{digits}f}"


def _table(frame: pd.DataFrame, kind: str) -> str:
    """The rows of one kind as a Markdown table."""
    rows = frame[frame["kind"] == kind]
    head = {
        "gain": ("Method", "Last decade (params, decades)", "Gain [95% CI]"),
        "difference": ("Method − reference", "Method's last decade (params, decades)", "Gain difference [95% CI]"),
        "decline": ("Method", "Peak → largest (params, decades)", "Largest − peak [one-sided 95% bound]"),
    }[kind]
    table = pd.DataFrame(
        {
            "Model": rows["model"],
            "Task": rows["task"],
            head[0]: [
                display_name(row["method"]) + (f" − {display_name(row['reference'])}" if row["reference"] else "")
                for _, row in rows.iterrows()
            ],
            head[1]: [_span_text(row) for _, row in rows.iterrows()],
            "Seeds": rows["seeds"].astype(str),
            head[2]: [_interval_text(row) for _, row in rows.iterrows()],
            "p" + (" (one-sided)" if kind == "decline" else ""): [_number(p, 3) for p in rows["p"]],
            "Verdict": [_verdict(row) for _, row in rows.iterrows()],
            f"Detectable at {POWER:.0%} power": [_number(value, 1) for value in rows["detectable"]],
        }
    )
    return table.to_markdown(index=False, disable_numparse=True)


def _power_lines(frame: pd.DataFrame) -> list[str]:
    """Per view, the gain differences and the declines the design detects with POWER (their range over contrasts)."""
    lines = []
    for (model, task), rows in frame.groupby(["model", "task"], sort=False):
        parts = []
        for kind, label in (("difference", "gain differences"), ("decline", "declines")):
            values = rows.loc[rows["kind"] == kind, "detectable"].dropna().round(1)
            if len(values):
                span = f"{values.min():.1f}" + (f" to {values.max():.1f}" if values.max() > values.min() else "")
                parts.append(f"{label} of {span} points")
        if parts:
            lines.append(f"- {model} · {task}: {' and '.join(parts)}.")
    return lines


def contrasts_markdown(frame: pd.DataFrame) -> str:
    """The contrasts section of results.md: how they are computed, the three tables and the power statement."""
    lines = ["## Plateau contrasts", "", text.CONTRASTS.format(power=POWER, alpha=ALPHA)]
    for kind, title in (
        ("gain", "Last-decade gains"),
        ("difference", "Last-decade gain differences"),
        ("decline", "Declines past the peak"),
    ):
        if (frame["kind"] == kind).any():
            lines += ["", f"### {title}", "", _table(frame, kind)]
    power = _power_lines(frame)
    if power:
        lines += ["", f"The smallest true differences detected with {POWER:.0%} power, per view:", "", *power]
    return "\n".join(lines)
