"""Diagnosis defaults shared by the library and the CLI (no torch here: the CLI shows them at ``--help``)."""

from __future__ import annotations

DEFAULT_TAU = 0.025  # ReDo's dormant threshold on the normalised unit score (docs/methods.md)
DEFAULT_MAX_IMAGES = 256
DEFAULT_BATCH_SIZE = 32
DEFAULT_DEVICE = "auto"  # CUDA when present, else the CPU
