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
]
