"""Every option, checked once, at the library's boundary, before any file is read or written.

The CLI and library callers reach the same checks: :func:`check_reinit_options` from ``reinit()``,
:func:`check_diagnose_options` from ``diagnose()``. A value that would make a run meaningless or
destructive (a negative k, a NaN shrink, a seed no generator accepts) is a :class:`UsageError`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from plastic.errors import DeviceError, UsageError

if TYPE_CHECKING:
    import torch

    from plastic.reinit.options import Options

MAX_SEED = 2**63 - 1  # every generator plastic seeds (torch, random) accepts 0..2**63-1


def check_seed(seed: int) -> None:
    if not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be an integer in 0..{MAX_SEED}, not {seed!r}")


def check_finite(name: str, value: float, *, low: float | None = None, high: float | None = None) -> None:
    """A finite number, optionally within [low, high]."""
    if not isinstance(value, int | float) or not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise UsageError(f"{name} must be in [{lo}, {hi}], not {value:g}")


def check_count(name: str, value: int, *, low: int = 1) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        raise UsageError(f"{name} must be an integer >= {low}, not {value!r}")


def check_tau(tau: float) -> None:
    check_finite("--tau", tau, low=0.0, high=1.0)


def check_reinit_options(opts: Options) -> None:
    check_seed(opts.seed)
    check_count("--k", opts.k)
    check_finite("--fraction", opts.fraction, low=0.0, high=1.0)
    if opts.fraction == 0:
        raise UsageError("--fraction must be in (0, 1], not 0")
    check_finite("--shrink", opts.shrink)
    check_finite("--perturb", opts.perturb)
    for pattern in opts.layers:
        if not pattern:
            raise UsageError("--layers takes a non-empty glob")


def check_preprocessing(
    input_size: Sequence[int] | None, mean: Sequence[float] | None, std: Sequence[float] | None
) -> None:
    if input_size is not None and (
        len(input_size) != 3 or input_size[0] < 0 or min(input_size[1:]) < 1 or max(input_size) > 16384
    ):  # channel 0: "the model's" (S or H,W given)
        raise UsageError(f"--input-size must be C,H,W with sizes in 1..16384, not {tuple(input_size)}")
    for name, vals in (("--mean", mean), ("--std", std)):
        for v in vals or ():
            check_finite(name, v)
    if std is not None and min(std) <= 0:
        raise UsageError("--std values must be > 0")


def check_diagnose_options(
    *,
    device: str,
    max_images: int,
    batch_size: int,
    workers: int,
    tau: float,
    seed: int,
    input_size: Sequence[int] | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    in_chans: int | None = None,
) -> None:
    check_device(device)
    if in_chans is not None:
        check_count("--in-chans", in_chans)
    check_count("--max-images", max_images)
    check_count("--batch-size", batch_size)
    check_count("--workers", workers, low=0)
    check_tau(tau)
    check_seed(seed)
    check_preprocessing(input_size, mean, std)


def check_device(device: str) -> None:
    """Syntax only (cheap, no torch): auto, cpu, cuda or cuda:N."""
    if device in ("auto", "cpu", "cuda"):
        return
    if device.startswith("cuda:") and device[5:].isdigit():
        return
    raise UsageError(f"--device must be auto, cpu, cuda or cuda:N, not {device!r}")


def pick_device(device: str) -> torch.device:
    """The torch device for ``device``; a CUDA device this machine does not have is a DeviceError."""
    import torch

    check_device(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise DeviceError(
            f"--device {device}: CUDA is not available on this machine (use --device cpu or auto)"
        )
    index = int(device[5:]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise DeviceError(
            f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0..)"
        )
    return torch.device(device)
