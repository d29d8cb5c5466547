"""Plateau detection: a saturating curve fitted to score against log10(trainable parameters), with bootstrap CIs.

Model: y(x) = a − b·exp(−c·(x − x0)), x = log10(params), x0 = the smallest x of the sweep, b ≥ 0, c > 0.
`a` is the asymptote. The onset of the plateau is the smallest parameter count where the curve is within
ONSET_TOLERANCE points of its asymptote, clipped to the measured range: the smallest budget if the curve is already
there, and "not reached" (None) if it only gets there past the largest budget, since an extrapolated count says
nothing measured; the asymptote is then not reported either, for the same reason. CIs: percentile intervals of
scipy.stats.bootstrap over BOOTSTRAP refits, each on per-budget means of seeds drawn with replacement within every
budget (needs two seeds at every budget); a refit whose onset lies past the largest budget counts as "not reached"
for both, so an upper bound among such refits reads "not reached". A fit needs at least MIN_BUDGETS distinct
budgets (three parameters plus one degree of freedom); with fewer the method is reported as having too few points.

A saturating curve cannot fall, so direct comparisons answer "levels off, falls or keeps improving" without it: the
largest budget against the budget nearest one decade below it (the last decade), against the best-scoring budget (a
decline after the peak) and against full fine-tuning, each as a difference of seed means with a Welch 95% t-interval
over the seeds (runs at different budgets are independent trainings). A difference whose interval excludes zero
"rises" or "falls"; otherwise it is "flat".
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import DegenerateDataWarning

ONSET_TOLERANCE = 1.0  # points
UNREACHED_SCORE = 1e9  # stands for "no asymptote within the sweep" in bootstrap samples; far above any score
MIN_BUDGETS = 4
BOOTSTRAP = 300


@dataclass(frozen=True)
class Change:
    """mean(after) − mean(before) in points, with a Welch 95% t-interval; no interval with fewer than two seeds a side."""

    delta: float
    ci: tuple[float, float] | None

    @property
    def verdict(self) -> str:
        if self.ci is None:
            return "one seed"
        return "rises" if self.ci[0] > 0 else "falls" if self.ci[1] < 0 else "flat"


def welch_change(before: list[float], after: list[float]) -> Change:
    """The change from the runs `before` to the runs `after` (independent samples, unequal variances)."""
    delta = float(np.mean(after) - np.mean(before))
    if min(len(before), len(after)) < 2:
        return Change(delta, None)
    if np.ptp(before) == 0 and np.ptp(after) == 0:
        return Change(delta, (delta, delta))
    interval = stats.ttest_ind(after, before, equal_var=False).confidence_interval(0.95)
    return Change(delta, (float(interval.low), float(interval.high)))


@dataclass
class PlateauFit:
    """A method's fitted plateau on one task (or the average), or why there is none."""

    status: str  # "ok", "too few points", "fit failed"
    budgets: int
    asymptote: float | None = None  # None when the onset is not reached: the fitted a would be an extrapolation
    asymptote_ci: tuple[float, float | None] | None = None  # upper bound None: refits past it do not reach it
    onset_params: float | None = None  # None when the fit is ok but the onset is not reached within the sweep
    onset_ci: tuple[float, float | None] | None = None  # upper bound None: not reached within the sweep
    peak_params: float | None = None
    peak_score: float | None = None
    declines_after_peak: bool = False
    last_decade_from: float | None = None  # the budget nearest one decade below the largest
    last_decade: Change | None = None  # largest budget minus `last_decade_from`
    versus_full: Change | None = None  # largest budget minus full fine-tuning
    coefficients: tuple[float, float, float, float] | None = None  # a, b, c, x0
    notes: list[str] = field(default_factory=list)

    def curve(self, params: np.ndarray) -> np.ndarray:
        a, b, c, x0 = self.coefficients
        return _model(np.log10(params) - x0, a, b, c)

    def as_dict(self) -> dict[str, Any]:
        fields = asdict(self)
        for name in ("last_decade", "versus_full"):
            change = getattr(self, name)
            if change is not None:
                fields[name]["verdict"] = change.verdict
        return fields


def _model(dx: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.exp(-c * dx)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    span = max(float(np.ptp(y)), 1e-3)
    start = (float(y.max()), span, 1.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            coefficients, _ = curve_fit(
                _model, x, y, p0=start, bounds=([-np.inf, 0.0, 1e-3], [np.inf, np.inf, 50.0]), maxfev=5000
            )
    except (RuntimeError, ValueError):
        return None
    return tuple(float(v) for v in coefficients)


def _onset(a: float, b: float, c: float, x0: float, x_max: float) -> float | None:
    """log10 params of the onset within [x0, x_max], or None when the curve reaches it only past x_max."""
    x = x0 + (math.log(b / ONSET_TOLERANCE) / c if b > ONSET_TOLERANCE else 0.0)
    return x if x <= x_max else None


def fit_plateau(points: dict[float, list[float]], full: list[float] | None = None, seed: int = 0) -> PlateauFit:
    """Fit `points` ({trainable params: [score per seed]}); compare the largest budget with the scores of full
    fine-tuning, `full`, when given. See the module docstring."""
    budgets = sorted(points)
    means = np.array([np.mean(points[p]) for p in budgets])
    peak = int(np.argmax(means))
    fit = PlateauFit(status="ok", budgets=len(budgets), peak_params=budgets[peak], peak_score=float(means[peak]))
    if len(budgets) > 1:
        top = budgets[-1]
        fit.last_decade_from = min(budgets[:-1], key=lambda p: abs(math.log10(top / p) - 1.0))
        fit.last_decade = welch_change(points[fit.last_decade_from], points[top])
    if full:
        fit.versus_full = welch_change(full, points[budgets[-1]])
    fit.declines_after_peak = (
        peak < len(budgets) - 1 and welch_change(points[budgets[peak]], points[budgets[-1]]).verdict == "falls"
    )
    if fit.declines_after_peak:
        fit.notes.append("the largest budget scores below the peak (Welch 95% CI); a saturating curve cannot show it")
    if len(budgets) < MIN_BUDGETS:
        fit.status = "too few points"
        fit.notes.append(f"{len(budgets)} budget(s); a plateau fit needs at least {MIN_BUDGETS}")
        return fit
    x = np.log10(np.array(budgets, dtype=float))
    x0, x_max = float(x[0]), float(x[-1])
    coefficients = _fit(x - x0, means)
    if coefficients is None:
        fit.status = "fit failed"
        fit.notes.append("the saturating curve did not converge")
        return fit
    a, b, c = coefficients
    fit.coefficients = (a, b, c, x0)
    onset = _onset(a, b, c, x0, x_max)
    fit.onset_params = None if onset is None else 10**onset
    fit.asymptote = None if onset is None else a
    if onset is None:
        fit.notes.append("onset not reached within the sweep, so no asymptote: it would be an extrapolation")

    if any(len(points[p]) < 2 for p in budgets):
        fit.notes.append("a budget has one seed: no bootstrap CI")
        return fit
    # stand-ins for "not reached" in the bootstrap distribution: an onset past x_max, an asymptote above any score
    beyond, unreached = x_max + 1.0, UNREACHED_SCORE

    def refit(*samples: np.ndarray) -> np.ndarray:
        refitted = _fit(x - x0, np.array([sample.mean() for sample in samples]))
        if refitted is None:
            return np.array([np.nan, np.nan])
        onset = _onset(*refitted, x0, x_max)
        return np.array([unreached, beyond] if onset is None else [refitted[0], onset])

    samples = tuple(np.asarray(points[p], dtype=float) for p in budgets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # identical seeds: a zero-width interval is the answer
        result = stats.bootstrap(samples, refit, vectorized=False, n_resamples=BOOTSTRAP, method="percentile", rng=seed)
    failed = int(np.isnan(result.bootstrap_distribution[0]).sum())
    if failed:
        fit.notes.append(f"{failed}/{BOOTSTRAP} bootstrap refits did not converge; no CI")
        return fit
    (asymptote_low, onset_low), (asymptote_high, onset_high) = result.confidence_interval
    if asymptote_low < unreached / 2:
        fit.asymptote_ci = (float(asymptote_low), float(asymptote_high) if asymptote_high < unreached / 2 else None)
    if onset_low <= x_max:
        fit.onset_ci = (float(10**onset_low), float(10**onset_high) if onset_high <= x_max else None)
    return fit
