"""Pretraining: configuration, the training loop, checkpoints and distributed setup."""
