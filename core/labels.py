"""The label of a token the training loss skips (prompt and padding): transformers' ignore index."""

IGNORED = -100
