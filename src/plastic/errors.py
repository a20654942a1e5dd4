"""Exceptions raised by the plastic library.

The library never prints or exits: it raises a :class:`PlasticError` subclass with a message written for
the person at the terminal. The CLI turns every one of them into a single ``Error: ...`` line and exit 2.
"""

from __future__ import annotations


class PlasticError(Exception):
    """Base class: bad input or a request that cannot be satisfied (exit code 2 in the CLI)."""


class CheckpointError(PlasticError):
    """A checkpoint file is missing, truncated, corrupt, or of an unknown kind."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle would need to run code (an unsafe global) to load; it is refused, never executed."""


class UsageError(PlasticError):
    """Options that contradict each other or name something that does not exist."""


class ArchitectureError(PlasticError):
    """The architecture is unknown, ambiguous, or does not match the checkpoint."""


class DataError(PlasticError):
    """The calibration data cannot be used (missing folder, no readable image)."""


class DeviceError(PlasticError):
    """The requested device is not available (e.g. ``--device cuda`` without CUDA)."""


class OutputError(PlasticError):
    """An output cannot be written (would overwrite the input or an existing file without --force)."""


class ResourceError(PlasticError):
    """The machine ran out of something plastic needs: memory (RAM, a ``ulimit -v`` address-space cap)."""


def is_allocation_failure(e: BaseException) -> bool:
    """A memory failure, as Python (MemoryError) or PyTorch's CPU allocator (a RuntimeError) reports it."""
    if isinstance(e, MemoryError):
        return True
    text = str(e)
    return isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "DefaultCPUAllocator" in text or "std::bad_alloc" in text
    )


MEMORY_HINT = "lower --batch-size or --max-images, or raise the memory limit (ulimit -v)"
