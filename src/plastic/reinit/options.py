"""The words of a re-initialization, as enums the library and the CLI share (no torch here: the CLI
reads the choices and defaults at ``--help`` time).

They are string enums: a member equals, prints and JSON-encodes as its string, so documents and
manifests read the same as when these were bare strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from plastic.errors import UsageError


class StrEnum(str, Enum):
    """``enum.StrEnum`` for Python 3.10: the member is its value wherever a string is expected."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)


class Value(StrEnum):
    """``--value``: where re-initialized values come from."""

    RESAMPLE = "resample"  # the architecture's own init
    MEAN = "mean"  # the init distribution's mean


class Fill(StrEnum):
    """Where one planned change takes its new values (the ``--value`` choices and the fixed ones)."""

    RESAMPLE = "resample"
    MEAN = "mean"
    ZERO = "zero"  # dormant-units' outgoing weights
    SHRINK_PERTURB = "shrink-perturb"  # shrink x old + perturb x init


class Kind(StrEnum):
    """What one planned change does to its tensor."""

    TENSOR = "tensor"  # the whole tensor
    UNITS = "units"  # rows (output units) along a dim
    ZERO_OUTGOING = "zero-outgoing"  # consumers' columns that read re-initialized units
    WEIGHTS = "weights"  # a boolean mask of single weights
    NORM_RESET = "norm-reset"  # the norm after a re-initialized layer: gain 1, bias 0, fresh statistics
    SHRINK_PERTURB = "shrink-perturb"


class Unit(StrEnum):
    """``--unit``: what topk-layers ranks."""

    LAYER = "layer"
    BLOCK = "block"


class Utility(StrEnum):
    """``--utility``: which weights count as least useful."""

    MAGNITUDE = "magnitude"
    GRADIENT = "gradient"
    RANDOM = "random"


class Need(StrEnum):
    """What reinit must build before a strategy runs."""

    REPORT = "report"  # layer statistics: a diagnose report, or a diagnosis run on --data
    LOADED = "loaded"  # the model with the checkpoint's own weights, not the meta one
    GRADIENTS = "gradients"  # dL/dW on the calibration images (only with --utility gradient)


@dataclass
class Options:
    """Every strategy option, with the defaults the CLI shows. A strategy reads only some of them
    (``StrategyInfo.uses``); setting another away from its default is refused, not ignored.

    Args:
        value: Where new values come from: the architecture's init (``"resample"``) or its mean.
        k: topk-layers: how many layers (or blocks).
        unit: topk-layers: rank single layers (``"layer"``) or timm blocks (``"block"``).
        layers: Globs over tensor names (layers, weights, shrink-perturb).
        from_block: from-block: the first block re-initialized, e.g. ``"stages.2"``.
        fraction: weights: the fraction of each tensor, in (0, 1].
        utility: weights: which weights count as least useful (magnitude, gradient, random).
        shrink: shrink-perturb: lambda.
        perturb: shrink-perturb: sigma.
        include_head: Let the classifier be selected too.
        seed: Seeds the new values (same seed, same bytes).

    Example:
        >>> import plastic
        >>> plastic.Options(from_block="layer4", seed=1).from_block
        'layer4'
    """

    value: Value = Value.RESAMPLE
    k: int = 3
    unit: Unit = Unit.LAYER
    layers: list[str] = field(default_factory=list)
    from_block: str | None = None
    fraction: float = 0.25
    utility: Utility = Utility.MAGNITUDE
    shrink: float = 0.4
    perturb: float = 0.1
    include_head: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        """Arguments mean one thing: a lone string for ``layers`` is one glob, as ``--layers fc`` is on
        the command line (never its characters); a choice given as its string is the choice, and a
        string that is none of them is refused here, naming the choices."""
        if isinstance(self.layers, str):
            self.layers = [self.layers]
        elif isinstance(self.layers, tuple):
            self.layers = list(self.layers)
        for name, kind in (("value", Value), ("unit", Unit), ("utility", Utility)):
            given = getattr(self, name)
            if isinstance(given, kind):
                continue
            if not isinstance(given, str):
                raise TypeError(f"{name} must be a str ({', '.join(kind)}), not {type(given).__name__}")
            try:
                setattr(self, name, kind(given))
            except ValueError:
                raise UsageError(f"--{name} must be one of {', '.join(kind)}, not {given!r}") from None


def check_reinit_options(opts: Options) -> None:
    """Every option in range, before any file is read or written (the CLI and library callers alike)."""
    from plastic.documents.validation import check_count, check_finite, check_seed, wrong_type

    if not isinstance(opts, Options):
        raise wrong_type("options", opts, "a plastic.Options")
    check_seed(opts.seed)
    check_count("--k", opts.k)
    if not isinstance(opts.fraction, int | float) or isinstance(opts.fraction, bool):
        raise wrong_type("fraction", opts.fraction, "a number")
    if not math.isfinite(opts.fraction) or not 0 < opts.fraction <= 1:  # one range in every message
        raise UsageError(f"--fraction must be a number in (0, 1], not {opts.fraction!r}")
    check_finite("--shrink", opts.shrink)
    check_finite("--perturb", opts.perturb)
    if not isinstance(opts.include_head, bool):
        raise wrong_type("include_head", opts.include_head, "a bool")
    if opts.from_block is not None and not isinstance(opts.from_block, str):
        raise wrong_type("from_block", opts.from_block, "a str or None")
    if not isinstance(opts.layers, list):
        raise wrong_type("layers", opts.layers, "a list of globs (str)")
    for pattern in opts.layers:
        if not isinstance(pattern, str):
            raise wrong_type("layers", pattern, "a list of globs (str)")
        if not pattern:
            raise UsageError("--layers takes a non-empty glob")
