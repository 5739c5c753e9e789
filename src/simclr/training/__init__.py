"""Pretraining: the loop over a small run state, the training step, gradient caching, the time budget,
diagnostics and the kNN monitor."""
