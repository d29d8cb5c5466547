"""The prose of results.md: what each section says about its protocol, statistics and caveats, as templates that
bench.report.write fills with `.format(...)`."""

RESULTS_INTRO = (
    "Store: `{store}`; {runs} runs in {cells} cells; {unfinished} runs failed or missing. Test split, every metric the "
    "task records, in points (×100): mean ± sample std [95 % CI] over seeds."
)

SCORE_MARKS = (
    "**Bold**: best in the column (format-failure rates are diagnostics and not ranked). †: not significantly "
    "different from the best on the primary metric (two-sided paired permutation test over the shared test examples, "
    "per-example scores averaged over seeds, p ≥ 0.05, scipy.stats.permutation_test). CIs: Student-t intervals over "
    "seeds, clipped to the metric's range, since seeds are the unit of replication; with 2-3 seeds they are wide, and "
    "that width is the uncertainty of a cell mean (a bootstrap cannot resample 2-3 values, and one over test examples "
    'would leave the seed-to-seed spread out). "failed": a seed\'s value is not finite; failed cells are not ranked, '
    "fitted or plotted."
)

COLLAPSED_NOTE = (
    "**Collapsed predictions:** {pairs} cell and test-set pair(s) where a seed gave one answer to {share:.0%} or more "
    "of the examples; those scores measure the label balance, not the method (marked ‡, listed under Collapsed "
    "predictions)."
)

NO_UNFINISHED = "None: every run the sweep names has an ok record with finite metrics."

NO_COLLAPSES = "None: no final run gave one answer to {share:.0%} or more of any test set's examples."

FIGURES = (
    "Plateau curves: one colour per method in every figure; lines through the seed means, shaded bands from the seed "
    "minimum to maximum (the legend says over how many seeds), dashed the saturating fit, dotted its onset when "
    "reached; black dotted the majority answer's score (accuracy metrics; given in the legend instead when it lies "
    "further from the scores than their span); with `--variant`, each other store (the papers' fixed recipes, another "
    "target arm) in a panel of its own, drawn the same way without fits (those are in that store's own report); every "
    "panel's score axis spans its own scores with a margin, so no store's curves are flattened by another's. Learning "
    "curves (runs with `--eval-every`): validation score against steps for each method's largest "
    "budget. Pareto: score against peak memory measured in isolation only."
)

NO_PARETO = (
    "No Pareto plot for {model} · {task}: no cell's peak memory was measured in isolation (rerun with `bench sweep "
    "--isolate`, or on a GPU)."
)

TUNING_SELECTION = (
    "Selection: {selection}. {seeds}, {grid_size} learning rates per method (the same tuning budget for every method)."
)

ONE_TUNING_SEED = "Tuning seed {seed}"

TUNING_SEEDS = "Tuning seeds {seeds} (a rate's score is their mean; each seed's in brackets)"

TUNING_SETTINGS = "Tuning runs of {pair} differ from its final runs in {settings}; the final runs use the chosen rates."

TWO_RATE_GRID = (
    "With two rates per grid every choice is one of its ends: the grid brackets the best rate, not locates it."
)

GRID_EDGES = (
    "{edges} of {tuned} tuned cells chose the lowest or highest learning rate of their grid (marked): their best rate "
    "may lie outside it."
)

PLATEAU_FITS = (
    "Fit y = a − b·exp(−c·(log10 p − log10 p_min)) to the seed means; asymptote a; onset = fewest trainable parameters "
    'p where the curve is within {tolerance:g} point of a, within the measured budgets ("not reached" when the curve '
    "gets there only past the largest budget: then a is an extrapolation and is not given either); 95% percentile CIs "
    "from {bootstrap} bootstrap refits that draw whole seeds (a drawn seed brings its score at every budget, since it "
    "shares its data order across budgets; scipy.stats.bootstrap, paired). Not identifiable, with the reason in the "
    "notes, and no asymptote or onset given: fewer than {min_budgets} budgets, a fitted parameter at a bound of its "
    "range, a fit that does not converge, or fewer than {min_resamples} distinct bootstrap resamples (n seeds allow "
    "C(2n − 1, n) of them). "
    "The fit cannot fall, so two differences of seed means answer whether a curve levels off, falls or keeps "
    "improving: the largest budget against the budget nearest one decade below it (last decade) and against full "
    "fine-tuning, in points with Welch 95% t-intervals over seeds; rises or falls when the interval excludes zero, "
    "flat otherwise."
)

LEARNING_CURVES = (
    "Each method's largest budget: validation score (points, seed means) at every evaluation, and the last interval's "
    "change (final minus the evaluation before it) with a 95% t-interval over seeds. flat: the interval contains zero, "
    "so the last interval shows no measurable gain; rises or falls otherwise."
)

VARIANT = (
    "Test score in points, seed means; the difference is the variant minus this store, with a Welch 95% t-interval "
    "over seeds when both sides have two or more. {unmatched} cell(s) of {label} have no counterpart in this store and "
    "are not listed."
)

CONTRASTS = (
    "Seed-paired tests of the plateau reading (bench.report.contrasts). Each comparison fits score ~ cell + seed "
    "(ordinary least squares; a cell is a method at a budget, the seed effect is shared by every cell, since a seed "
    "shares its data order across methods and budgets) to the runs of the cells it compares, and reads a contrast of "
    "the cell means with its 95% t-interval. Last decade: a method's largest budget against its own budget nearest one "
    "decade below (the width in decades is given); gain = top minus base. Gain difference: a method's gain minus LoRA's "
    "or DoRA's, where their last decades overlap. Decline: for a method whose best mean lies below its largest budget, "
    "largest minus peak, one-sided (the peak is picked from the same means, so the test finds declines more easily "
    "than its p says). Detectable: the smallest true contrast the test would detect with {power:.0%} power at level "
    "{alpha:g} (two-sided; one-sided for declines), given the contrast's standard error and degrees of freedom "
    "(noncentral t). Intervals and p-values are per contrast, not adjusted for the number of contrasts."
)
