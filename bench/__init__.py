"""peft-bench: the sweep harness, results store, reports and command line."""
