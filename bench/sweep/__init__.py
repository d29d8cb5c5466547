"""Sweeps: the spec, the cells it expands to, the learning-rate policy, and the executors that run the cells."""
