"""Plateau detection: a saturating curve fitted to score against log10(trainable parameters), with bootstrap CIs.

Model: y(x) = a − b·exp(−c·(x − x0)), x = log10(params), x0 = the smallest x of the sweep, b ≥ 0, c > 0.
`a` is the asymptote. The onset of the plateau is the smallest parameter count where the curve is within
ONSET_TOLERANCE points of its asymptote (x0 if it already is at the smallest budget; "beyond the sweep" if the curve
only gets there past the largest budget). CIs: 2.5–97.5 percentiles over BOOTSTRAP refits, each on per-budget means
of seeds drawn with replacement within every budget. A fit needs at least MIN_BUDGETS distinct budgets (three
parameters plus one degree of freedom); with fewer the method is reported as having too few points.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import OptimizeWarning, curve_fit

ONSET_TOLERANCE = 1.0  # points
MIN_BUDGETS = 4
BOOTSTRAP = 300


@dataclass
class PlateauFit:
    """A method's fitted plateau on one task (or the average), or why there is none."""

    status: str  # "ok", "too few points", "fit failed"
    budgets: int
    asymptote: float | None = None
    asymptote_ci: tuple[float, float] | None = None
    onset_params: float | None = None
    onset_ci: tuple[float, float] | None = None
    onset_beyond_sweep: bool = False
    peak_params: float | None = None
    peak_score: float | None = None
    declines_after_peak: bool = False
    coefficients: tuple[float, float, float, float] | None = None  # a, b, c, x0
    notes: list[str] = field(default_factory=list)

    def curve(self, params: np.ndarray) -> np.ndarray:
        a, b, c, x0 = self.coefficients
        return _model(np.log10(params) - x0, a, b, c)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "coefficients"} | {"coefficients": self.coefficients}


def _model(dx: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    return a - b * np.exp(-c * dx)


def _fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float] | None:
    span = max(float(np.ptp(y)), 1e-3)
    start = (float(y.max()), span, 1.0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)
            coefficients, _ = curve_fit(_model, x, y, p0=start, bounds=([-np.inf, 0.0, 1e-3], [np.inf, np.inf, 50.0]), maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return tuple(float(v) for v in coefficients)


def _onset(a: float, b: float, c: float, x0: float, x_max: float) -> tuple[float, bool]:
    """log10 params of the onset, and whether it lies beyond the largest budget of the sweep."""
    dx = math.log(b / ONSET_TOLERANCE) / c if b > ONSET_TOLERANCE else 0.0
    return x0 + dx, x0 + dx > x_max


def fit_plateau(points: dict[float, list[float]], seed: int = 0) -> PlateauFit:
    """Fit `points` ({trainable params: [score per seed]}); see the module docstring."""
    budgets = sorted(points)
    means = np.array([np.mean(points[p]) for p in budgets])
    peak = int(np.argmax(means))
    fit = PlateauFit(status="ok", budgets=len(budgets), peak_params=budgets[peak], peak_score=float(means[peak]))
    spread = max((np.std(points[p], ddof=1) if len(points[p]) > 1 else 0.0) for p in budgets) if budgets else 0.0
    fit.declines_after_peak = peak < len(budgets) - 1 and means[peak] - means[-1] > max(ONSET_TOLERANCE, spread)
    if fit.declines_after_peak:
        fit.notes.append("the score declines after its peak; a saturating curve cannot show the decline")
    if len(budgets) < MIN_BUDGETS:
        fit.status = "too few points"
        fit.notes.append(f"{len(budgets)} budget(s); a plateau fit needs at least {MIN_BUDGETS}")
        return fit
    x = np.log10(np.array(budgets, dtype=float))
    x0 = float(x[0])
    coefficients = _fit(x - x0, means)
    if coefficients is None:
        fit.status = "fit failed"
        fit.notes.append("the saturating curve did not converge")
        return fit
    a, b, c = coefficients
    fit.coefficients = (a, b, c, x0)
    fit.asymptote = a
    onset_x, fit.onset_beyond_sweep = _onset(a, b, c, x0, float(x[-1]))
    fit.onset_params = 10**onset_x

    rng = np.random.default_rng(seed)
    asymptotes, onsets = [], []
    for _ in range(BOOTSTRAP):
        resampled = np.array([np.mean(rng.choice(points[p], size=len(points[p]), replace=True)) for p in budgets])
        refit = _fit(x - x0, resampled)
        if refit is not None:
            asymptotes.append(refit[0])
            onsets.append(_onset(*refit, x0, float(x[-1]))[0])
    if len(asymptotes) >= BOOTSTRAP // 2:
        fit.asymptote_ci = tuple(float(v) for v in np.percentile(asymptotes, [2.5, 97.5]))
        fit.onset_ci = tuple(float(10**v) for v in np.percentile(onsets, [2.5, 97.5]))
    else:
        fit.notes.append(f"only {len(asymptotes)}/{BOOTSTRAP} bootstrap refits converged; no CI")
    if all(len(points[p]) == 1 for p in budgets):
        fit.notes.append("one seed per budget: the bootstrap CI is degenerate")
    return fit
