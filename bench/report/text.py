"""The prose of results.md: what each section says about its protocol, statistics and caveats, as templates that
bench.report.write fills with `.format(...)`."""

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
    "from {bootstrap} bootstrap refits over seeds (scipy.stats.bootstrap). At least {min_budgets} budgets are needed. "
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
