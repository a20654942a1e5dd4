"""Every option, checked once, at the library's boundary, before any file is read or written.

The CLI and library callers reach the same checks: :func:`check_reinit_options` from ``reinit()``,
:func:`check_diagnose_options` from ``diagnose()``. A value that would make a run meaningless or
destructive (a negative k, a NaN shrink, a seed no generator accepts) is a :class:`UsageError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from plastic.errors import DeviceError, UsageError

if TYPE_CHECKING:
    import torch

MAX_WORKERS = 64  # decoder processes; more never helps one calibration pass, and each costs memory
MAX_SEED = 2**63 - 1  # every generator plastic seeds (torch, random) accepts 0..2**63-1


def wrong_type(name: str, value: object, expected: str) -> TypeError:
    """Python's convention for an argument of the wrong type, naming it as a caller spells it
    (``--max-images`` -> ``max_images``): only the library can pass one, the CLI parses first."""
    return TypeError(f"{name.lstrip('-').replace('-', '_')} must be {expected}, not {type(value).__name__}")


def _integer(name: str, value: object) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise wrong_type(name, value, "an int")


def check_seed(seed: int) -> None:
    _integer("--seed", seed)
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"--seed must be an integer in 0..{MAX_SEED}, not {seed!r}")


def check_finite(name: str, value: float, *, low: float | None = None, high: float | None = None) -> None:
    """A finite number, optionally within [low, high]."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise wrong_type(name, value, "a number")
    if not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, not {value!r}")
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else f"{low:g}"
        hi = "inf" if high is None else f"{high:g}"
        raise UsageError(f"{name} must be in [{lo}, {hi}], not {value:g}")


def check_count(name: str, value: int, *, low: int = 1) -> None:
    _integer(name, value)
    if value < low:
        raise UsageError(f"{name} must be an integer >= {low}, not {value!r}")


def check_workers(workers: int) -> None:
    """0 (decode in this process) to MAX_WORKERS; fewer start when there are fewer cores or batches."""
    _integer("--workers", workers)
    if not 0 <= workers <= MAX_WORKERS:
        raise UsageError(f"--workers must be an integer in 0..{MAX_WORKERS}, not {workers!r}")


def check_tau(tau: float) -> None:
    check_finite("--tau", tau, low=0.0, high=1.0)


# --- preprocessing fields, from any source: options, timm's config.json, metadata, a report ----------------

MAX_SIDE = 4096  # pixels per side; the largest timm pretrained configs use 1024
MAX_CHANNELS = 64
MAX_CLASSES = 1_000_000
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "box", "hamming", "lanczos")  # timm's eval transforms
CROP_MODES = ("center", "squash", "border")
MAX_CROP_PCT = 2.0  # timm's largest is 1.15 (volo): more than 1 scales the image below the crop


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: object) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _input_size_problem(value: object) -> str | None:
    if not isinstance(value, list | tuple) or len(value) != 3 or not all(_is_int(v) for v in value):
        return "must be [channels, height, width], three integers"
    c, h, w = value
    if not 1 <= c <= MAX_CHANNELS or not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
        return f"must have 1..{MAX_CHANNELS} channels and sides of 1..{MAX_SIDE} pixels"
    return None


def _channels_problem(value: object, positive: bool) -> str | None:
    if (
        not isinstance(value, list | tuple)
        or not 1 <= len(value) <= MAX_CHANNELS
        or not all(_is_number(v) for v in value)
    ):
        return "must be a list of finite numbers, one per channel"
    if positive and min(value) <= 0:
        return "must be > 0 (the images are divided by it)"
    return None


def _in_range(value: object, low: float, high: float, *, integer: bool, low_open: bool = False) -> bool:
    ok = _is_int(value) if integer else _is_number(value)
    return ok and (low < value if low_open else low <= value) and value <= high  # type: ignore[operator]


_RULES: dict[str, Callable[[object], str | None]] = {
    "input_size": _input_size_problem,
    "mean": lambda v: _channels_problem(v, positive=False),
    "std": lambda v: _channels_problem(v, positive=True),
    "interpolation": lambda v: None if v in INTERPOLATIONS else f"must be one of {', '.join(INTERPOLATIONS)}",
    "crop_mode": lambda v: None if v in CROP_MODES else f"must be one of {', '.join(CROP_MODES)}",
    "crop_pct": lambda v: (
        None
        if _in_range(v, 0, MAX_CROP_PCT, integer=False, low_open=True)
        else f"must be a number in (0, {MAX_CROP_PCT:g}]"
    ),
    "in_chans": lambda v: (
        None if _in_range(v, 1, MAX_CHANNELS, integer=True) else f"must be an integer in 1..{MAX_CHANNELS}"
    ),
    "num_classes": lambda v: (
        None if _in_range(v, 0, MAX_CLASSES, integer=True) else f"must be an integer in 0..{MAX_CLASSES}"
    ),
}


def field_problem(name: str, value: object) -> str | None:
    """What is wrong with one preprocessing or architecture field (None: nothing). The one rule for a
    value whatever its source; callers name the source (option, file and key, report field)."""
    rule = _RULES.get(name)
    return rule(value) if rule is not None else None


def describe(value: object, limit: int = 60) -> str:
    """A value as an error message shows it: repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_fields(fields: dict[str, object], where: str, error: type[Exception] = UsageError) -> None:
    """Every present field of ``fields`` by :func:`field_problem`; the first problem raises ``error``
    naming ``where`` (a file, a report) and the field. A dotted name (``pretrained_cfg.std``) is shown
    whole and checked by its last part."""
    for name, value in fields.items():
        problem = field_problem(name.rpartition(".")[2], value)
        if problem:
            raise error(f"{where}: {name} {problem}, not {describe(value)}")


def check_preprocessing(
    input_size: Sequence[int] | None, mean: Sequence[float] | None, std: Sequence[float] | None
) -> None:
    for name, given in (("--input-size", input_size), ("--mean", mean), ("--std", std)):
        if given is not None and (isinstance(given, str | bytes) or not isinstance(given, Sequence)):
            raise wrong_type(name, given, "a sequence of numbers (a tuple)")
    for side in input_size or ():
        _integer("--input-size", side)
    if input_size is not None and (
        len(input_size) != 3
        or not 0 <= input_size[0] <= MAX_CHANNELS
        or min(input_size[1:]) < 1
        or max(input_size[1:]) > MAX_SIDE
    ):  # channel 0: "the model's" (S or H,W given)
        raise UsageError(f"--input-size must be C,H,W with sides in 1..{MAX_SIDE}, not {tuple(input_size)}")
    for name, vals in (("--mean", mean), ("--std", std)):
        if vals is not None and len(vals) == 0:
            raise UsageError(f"{name} takes one value, or one per channel; not none")
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
    arch: object = None,
    progress: object = None,
    reference_images: int | None = None,
) -> None:
    check_arch_type(arch)
    check_progress(progress)
    check_device(device)
    if in_chans is not None:
        check_count("--in-chans", in_chans)
    if reference_images is not None:
        check_count("--reference-images", reference_images)
    check_count("--max-images", max_images)
    check_count("--batch-size", batch_size)
    check_workers(workers)
    check_tau(tau)
    check_seed(seed)
    check_preprocessing(input_size, mean, std)


def check_progress(progress: object) -> None:
    if progress is not None and not callable(progress):
        raise wrong_type("progress", progress, "a callable (phase or done, total) or None")


def check_arch_type(arch: object) -> None:
    """``arch`` is a name or None (whether the name is known, the model layer says)."""
    if arch is not None and not isinstance(arch, str):
        raise wrong_type("--arch", arch, "a str (a timm name, torchvision:NAME or transformers:CLASS)")


def check_device(device: str) -> None:
    """Syntax only (cheap, no torch): auto, cpu, cuda or cuda:N."""
    if not isinstance(device, str):
        raise wrong_type("--device", device, "a str (auto, cpu, cuda or cuda:N)")
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
