"""Plateau detection: a saturating curve fitted to score against log10(trainable parameters), with bootstrap CIs.

Model: y(x) = a − b·exp(−c·(x − x0)), x = log10(params), x0 = the smallest x of the sweep, b ≥ 0, c in [0.001, 50].
`a` is the asymptote. The onset of the plateau is the smallest parameter count where the curve is within
ONSET_TOLERANCE points of its asymptote, clipped to the measured range: the smallest budget if the curve is already
there, and "not reached" (None) if it only gets there past the largest budget, since an extrapolated count says
nothing measured; the asymptote is then not reported either, for the same reason.

CIs: percentile intervals of scipy.stats.bootstrap over BOOTSTRAP refits, each on the per-budget means of seeds drawn
with replacement once for the whole curve (paired: a drawn seed brings its score at every budget, since one seed
shares its data order across budgets, so its runs are not independent draws per budget). Only seeds present at every
budget take part. A refit whose onset lies past the largest budget counts as "not reached" for both, so an upper bound
among such refits reads "not reached".

Not identifiable: no asymptote or onset is given, and the fit says why, when it cannot be read: fewer than
MIN_BUDGETS budgets (three parameters need two degrees of freedom to spare), a fitted parameter at a bound of its
range (the data do not locate it), a fit that does not converge, or fewer than MIN_RESAMPLES distinct bootstrap
resamples (n paired seeds allow C(2n − 1, n) of them: 10 for three seeds, 126 for five).

A saturating curve cannot fall, so direct comparisons answer "levels off, falls or keeps improving" without it: the
largest budget against the budget nearest one decade below it (the last decade), against the best-scoring budget (a
decline after the peak) and against full fine-tuning, each as a difference of seed means with a Welch 95% t-interval
over the seeds. A difference whose interval excludes zero "rises" or "falls"; otherwise it is "flat". The
seed-paired contrasts between methods are bench.report.contrasts'.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.stats import DegenerateDataWarning

ONSET_TOLERANCE = 1.0  # points
UNREACHED_SCORE = 1e9  # stands for "no asymptote within the sweep" in bootstrap samples; far above any score
MIN_BUDGETS = 5
MIN_RESAMPLES = 100
BOOTSTRAP = 300
# the fit's parameter ranges (a, b, c) and their names in the reasons a fit is not identifiable
LOWER, UPPER = (-np.inf, 0.0, 1e-3), (np.inf, np.inf, 50.0)
PARAMETERS = ("asymptote a", "amplitude b", "rate c")


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

    status: str  # "ok" or "not identifiable" (`reasons` says why)
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
    coefficients: tuple[float, float, float, float] | None = None  # a, b, c, x0; None when not identifiable
    reasons: list[str] = field(default_factory=list)  # why the fit is not identifiable
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
            coefficients, _ = curve_fit(_model, x, y, p0=start, bounds=(LOWER, UPPER), maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return tuple(float(v) for v in coefficients)


def _onset(a: float, b: float, c: float, x0: float, x_max: float) -> float | None:
    """log10 params of the onset within [x0, x_max], or None when the curve reaches it only past x_max."""
    x = x0 + (math.log(b / ONSET_TOLERANCE) / c if b > ONSET_TOLERANCE else 0.0)
    return x if x <= x_max else None


def decade_below(budgets: list[float]) -> float | None:
    """Of `budgets`, the one nearest one decade below the largest (None for a single budget): the last decade's base."""
    top, below = max(budgets), [p for p in budgets if p < max(budgets)]
    return min(below, key=lambda p: abs(math.log10(top / p) - 1.0)) if below else None


def _at_bounds(coefficients: tuple[float, float, float]) -> list[str]:
    """The fitted parameters that sit at a bound of their range, as reasons."""
    return [
        f"{name} = {value:.4g} at its {side} bound"
        for name, value, low, high in zip(PARAMETERS, coefficients, LOWER, UPPER)
        for side, bound in (("lower", low), ("upper", high))
        if math.isfinite(bound) and math.isclose(value, bound, rel_tol=1e-4, abs_tol=1e-6)
    ]


def paired_seeds(points: Mapping[float, Mapping[int, float]]) -> list[int]:
    """The seeds with a score at every budget: the ones a paired bootstrap draws."""
    return sorted(set.intersection(*(set(scores) for scores in points.values())))


def distinct_resamples(seeds: int) -> int:
    """How many different multisets a bootstrap of `seeds` paired seeds can draw: C(2n − 1, n)."""
    return math.comb(2 * seeds - 1, seeds) if seeds else 0


def _reasons(budgets: int, coefficients: tuple[float, float, float] | None, seeds: int) -> list[str]:
    """Why a fit of `budgets` points with `seeds` paired seeds cannot be read (none when it can)."""
    reasons = [] if budgets >= MIN_BUDGETS else [f"{budgets} budget(s); a fit needs at least {MIN_BUDGETS}"]
    if coefficients is not None:
        reasons += _at_bounds(coefficients)
    elif budgets >= len(PARAMETERS):
        reasons.append("the saturating curve did not converge")
    if distinct_resamples(seeds) < MIN_RESAMPLES:
        reasons.append(
            f"{seeds} seed(s) at every budget allow {distinct_resamples(seeds)} distinct paired bootstrap resamples; "
            f"an interval needs at least {MIN_RESAMPLES}"
        )
    return reasons


def fit_plateau(
    points: Mapping[float, Mapping[int, float]], full: list[float] | None = None, seed: int = 0
) -> PlateauFit:
    """Fit `points` ({trainable params: {seed: score}}); compare the largest budget with the scores of full
    fine-tuning, `full`, when given. See the module docstring."""
    budgets = sorted(points)
    scores = {p: list(points[p].values()) for p in budgets}
    means = np.array([np.mean(scores[p]) for p in budgets])
    peak = int(np.argmax(means))
    fit = PlateauFit(status="ok", budgets=len(budgets), peak_params=budgets[peak], peak_score=float(means[peak]))
    fit.last_decade_from = decade_below(budgets)
    if fit.last_decade_from is not None:
        fit.last_decade = welch_change(scores[fit.last_decade_from], scores[budgets[-1]])
    if full:
        fit.versus_full = welch_change(full, scores[budgets[-1]])
    fit.declines_after_peak = (
        peak < len(budgets) - 1 and welch_change(scores[budgets[peak]], scores[budgets[-1]]).verdict == "falls"
    )
    if fit.declines_after_peak:
        fit.notes.append("the largest budget scores below the peak (Welch 95% CI); a saturating curve cannot show it")
    x = np.log10(np.array(budgets, dtype=float))
    x0, x_max = float(x[0]), float(x[-1])
    coefficients = _fit(x - x0, means) if len(budgets) >= len(PARAMETERS) else None
    seeds = paired_seeds(points)
    fit.reasons = _reasons(len(budgets), coefficients, len(seeds))
    if fit.reasons:
        fit.status = "not identifiable"
        return fit
    a, b, c = coefficients
    fit.coefficients = (a, b, c, x0)
    onset = _onset(a, b, c, x0, x_max)
    fit.onset_params = None if onset is None else 10**onset
    fit.asymptote = None if onset is None else a
    if onset is None:
        fit.notes.append("onset not reached within the sweep, so no asymptote: it would be an extrapolation")
    _bootstrap_intervals(fit, [np.array([points[p][s] for s in seeds]) for p in budgets], x - x0, seed)
    return fit


def _bootstrap_intervals(fit: PlateauFit, samples: list[np.ndarray], dx: np.ndarray, seed: int) -> None:
    """Set the fit's asymptote and onset CIs from a paired bootstrap of `samples` (one array per budget, aligned by
    seed); a note instead when a refit does not converge."""
    x0 = fit.coefficients[3]
    x_max = x0 + float(dx[-1])
    # stand-ins for "not reached" in the bootstrap distribution: an onset past x_max, an asymptote above any score
    beyond, unreached = x_max + 1.0, UNREACHED_SCORE

    def refit(*resampled: np.ndarray) -> np.ndarray:
        refitted = _fit(dx, np.array([sample.mean() for sample in resampled]))
        if refitted is None:
            return np.array([np.nan, np.nan])
        onset = _onset(*refitted, x0, x_max)
        return np.array([unreached, beyond] if onset is None else [refitted[0], onset])

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DegenerateDataWarning)  # identical seeds: a zero-width interval is the answer
        result = stats.bootstrap(
            tuple(samples),
            refit,
            paired=True,
            vectorized=False,
            n_resamples=BOOTSTRAP,
            method="percentile",
            rng=seed,
        )
    failed = int(np.isnan(result.bootstrap_distribution[0]).sum())
    if failed:
        fit.notes.append(f"{failed}/{BOOTSTRAP} bootstrap refits did not converge; no CI")
        return
    (asymptote_low, onset_low), (asymptote_high, onset_high) = result.confidence_interval
    if asymptote_low < unreached / 2:
        fit.asymptote_ci = (float(asymptote_low), float(asymptote_high) if asymptote_high < unreached / 2 else None)
    if onset_low <= x_max:
        fit.onset_ci = (float(10**onset_low), float(10**onset_high) if onset_high <= x_max else None)
