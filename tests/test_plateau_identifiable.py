"""Plateau fits that say when they cannot be read: a hand-built 4-point curve whose rate sits at its bound is "not
identifiable", with every reason, and no asymptote or onset; a 6-budget, 5-seed curve is identifiable and gets both;
and the onset bootstrap draws whole seeds (a seed brings its score at every budget), which a per-budget bootstrap
would not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.report import plateau

PARAMS = [1e4, 3e4, 1e5, 3e5, 1e6, 3e6]


def saturating(params: float) -> float:
    return 80 - 30 * math.exp(-1.5 * (math.log10(params) - 4))


def test_a_four_point_fit_with_its_rate_at_the_bound_is_not_identifiable() -> None:
    # the decoder's shape: flat, then a jump at the last budget; the best saturating curve has no curvature
    means = {2.6e5: 37.6, 8.3e5: 38.1, 2.6e6: 38.4, 8.3e6: 40.5}
    fit = plateau.fit_plateau({p: {0: m - 0.2, 1: m + 0.2} for p, m in means.items()})
    assert fit.status == "not identifiable"
    assert fit.reasons[0] == "4 budget(s); a fit needs at least 5"
    assert fit.reasons[1].startswith("rate c = 0.001 at its lower bound")
    assert fit.reasons[2] == (
        "2 seed(s) at every budget allow 3 distinct paired bootstrap resamples; an interval needs at least 100"
    )
    assert (fit.asymptote, fit.asymptote_ci, fit.onset_params, fit.onset_ci, fit.coefficients) == (None,) * 5
    assert fit.peak_params == 8.3e6 and fit.last_decade_from == 8.3e5  # the direct comparisons are still given


def test_each_reason_alone_makes_a_fit_not_identifiable() -> None:
    five = {p: {seed: saturating(p) + 0.1 * seed for seed in range(5)} for p in PARAMS}
    assert plateau.fit_plateau(five).status == "ok"
    assert plateau.fit_plateau({p: five[p] for p in PARAMS[:4]}).reasons == ["4 budget(s); a fit needs at least 5"]
    four_seeds = plateau.fit_plateau({p: {seed: five[p][seed] for seed in range(4)} for p in PARAMS})
    assert four_seeds.reasons == [
        "4 seed(s) at every budget allow 35 distinct paired bootstrap resamples; an interval needs at least 100"
    ]
    accelerating = {p: {seed: 70 + 0.5 * i**2 + 0.1 * seed for seed in range(5)} for i, p in enumerate(PARAMS)}
    assert plateau.fit_plateau(accelerating).reasons[0].startswith("rate c = 0.001 at its lower bound")
    # a seed missing at one budget: only the seeds present at every budget can be drawn in pairs
    gap = {p: dict(scores) for p, scores in five.items()}
    del gap[PARAMS[2]][4]
    assert plateau.paired_seeds(gap) == [0, 1, 2, 3] and plateau.fit_plateau(gap).status == "not identifiable"
    assert [plateau.distinct_resamples(n) for n in (1, 2, 3, 4, 5)] == [1, 3, 10, 35, 126]


def test_an_identifiable_fit_gives_its_asymptote_and_onset_with_intervals() -> None:
    rng = np.random.default_rng(4)
    fit = plateau.fit_plateau({p: {seed: saturating(p) + rng.normal(0, 0.3) for seed in range(5)} for p in PARAMS})
    assert fit.status == "ok" and fit.reasons == []
    assert fit.asymptote == pytest.approx(80, abs=1.0) and fit.asymptote_ci[0] <= fit.asymptote <= fit.asymptote_ci[1]
    assert fit.onset_ci[0] <= fit.onset_params <= fit.onset_ci[1]


def test_the_onset_bootstrap_draws_whole_seeds() -> None:
    # each seed shifts every budget by the same amount and there is no other noise: a resample of whole seeds moves
    # the curve up or down and leaves its shape, so every refit has the same onset; drawing seeds independently per
    # budget would bend the curve and spread the onset
    offsets = [-4.0, -2.0, 0.0, 2.0, 4.0]
    fit = plateau.fit_plateau({p: {seed: saturating(p) + offsets[seed] for seed in range(5)} for p in PARAMS})
    assert fit.status == "ok"
    assert fit.onset_ci == pytest.approx((fit.onset_params, fit.onset_params), rel=1e-6)
    assert fit.asymptote_ci[1] - fit.asymptote_ci[0] > 2.0  # the shift itself is resampled
