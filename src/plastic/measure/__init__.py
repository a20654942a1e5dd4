"""Measuring a checkpoint: weights without data, activations and gradients with it."""
