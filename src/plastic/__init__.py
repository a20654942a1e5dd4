"""plastic: find where a pretrained image model has lost plasticity and re-initialize exactly that.

The package is a library first: functions return dataclasses and raise :class:`PlasticError`
subclasses; the command line lives in :mod:`plastic.cli`. Importing ``plastic`` is cheap: torch and
timm are imported only by the functions that need them.
"""

from __future__ import annotations

from plastic.errors import (
    ArchitectureError,
    CheckpointError,
    DataError,
    DeviceError,
    OutputError,
    PlasticError,
    UnsafeCheckpointError,
    UsageError,
)

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``plastic.diagnose_model`` and ``plastic.reinit_model``, imported on first use: ``import plastic``
    stays cheap (no torch, no timm) for the command line."""
    if name == "diagnose_model":
        from plastic.measure.live import diagnose_model

        return diagnose_model
    if name == "reinit_model":
        from plastic.reinit.live import reinit_model

        return reinit_model
    raise AttributeError(f"module 'plastic' has no attribute {name!r}")


__all__ = [
    "ArchitectureError",
    "CheckpointError",
    "DataError",
    "DeviceError",
    "OutputError",
    "PlasticError",
    "UnsafeCheckpointError",
    "UsageError",
    "__version__",
    "diagnose_model",
    "reinit_model",
]
