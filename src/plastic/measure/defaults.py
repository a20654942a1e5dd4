"""Diagnosis defaults and options, shared by the library and the CLI (no torch here: the CLI shows the
defaults at ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plastic.documents.validation import check_diagnose_options

DEFAULT_TAU = 0.025  # ReDo's dormant threshold on the normalised unit score (docs/methods.md)
DEFAULT_MAX_IMAGES = 256
DEFAULT_BATCH_SIZE = 32
DEFAULT_DEVICE = "auto"  # CUDA when present, else the CPU


@dataclass(frozen=True)
class DiagnoseOptions:
    """Every option of one diagnosis, in one frozen object: what ``diagnose_checkpoint`` takes as
    keywords, what ``reinit`` passes on to a diagnosis or gradient pass it runs itself, and what the
    report's ``options`` records. Checked once (:meth:`check`) by whoever runs it."""

    key: str | None = None  # the entry of a training checkpoint that holds the weights
    arch: str | None = None  # a timm name, torchvision:NAME or transformers:CLASS
    in_chans: int | None = None
    device: str = DEFAULT_DEVICE
    amp: bool = False  # bf16 autocast, CUDA only
    max_images: int = DEFAULT_MAX_IMAGES
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: int = 0
    tau: float = DEFAULT_TAU
    seed: int = 0
    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    reference: bool = True  # score against a fresh model of the architecture
    reference_images: int | None = None  # the fresh reference on a seeded subset of the images
    cache: bool = True  # the fresh reference's metrics from (and into) the user's cache
    trial: bool = False
    trial_data: str | Path | None = None  # implies ``trial``
    trial_budget: int | None = None

    @property
    def wants_trial(self) -> bool:
        return self.trial or self.trial_data is not None

    def check(self, progress: object = None) -> None:
        """The same checks, one rule per field, as every other way in (``documents/validation``)."""
        check_diagnose_options(
            device=self.device, max_images=self.max_images, batch_size=self.batch_size, workers=self.workers,
            tau=self.tau, seed=self.seed, input_size=self.input_size, mean=self.mean, std=self.std,
            in_chans=self.in_chans, arch=self.arch, progress=progress, reference_images=self.reference_images,
        )  # fmt: skip

    def recorded(self, batch_size: int) -> dict[str, Any]:
        """The report's ``options``: what shaped the figures (the batch size the pass ended with)."""
        return {"tau": self.tau, "seed": self.seed, "batch_size": batch_size, "max_images": self.max_images,
                "workers": self.workers, "reference": self.reference,
                "reference_images": self.reference_images}  # fmt: skip
