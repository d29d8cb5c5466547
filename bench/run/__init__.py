"""One run: its config and settings, the budget, the model, the plan (checks and run key) and the execution."""
