"""Training: the loop (one step of a method at a time, model selection), its data,
checkpoints and resume."""
