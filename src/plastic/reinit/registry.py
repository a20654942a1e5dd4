"""The strategy registry: what a strategy is given (:class:`Context`), what it returns (:class:`Plan` of
:class:`Change` entries), and the decorator that registers it, as timm's ``_registry.py`` is for models.

The built-in strategies live in :mod:`plastic.reinit.strategies`; a plug-in registers its own the same
way (``plastic.register_strategy``), and is checked at the door.
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from plastic.documents.schema import DiagnoseDoc
from plastic.errors import PlasticError, StrategyError, UsageError, is_allocation_failure
from plastic.files.checkpoint import Checkpoint
from plastic.model.structure import Structure
from plastic.reinit.options import Fill, Kind, Need, Options, Utility, Value


@dataclass
class Change:
    tensor: str
    kind: Kind
    value: Fill
    index: torch.Tensor | None = None  # units: indices along ``dim``
    dim: int = 0
    mask: torch.Tensor | None = None  # weights: bool mask, the tensor's shape


@dataclass
class Plan:
    changes: list[Change] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (what, why)
    notes: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # what the strategy decided (auto: its layers)


@dataclass
class Context:
    ckpt: Checkpoint
    options: Options
    report: DiagnoseDoc | None  # a diagnose --json document
    structure: Structure | None  # None without an architecture
    gradients: Callable[[], dict[str, torch.Tensor]] | None = None  # tensor -> dL/dW, on demand
    unknown: str = ""  # why the architecture is unknown (resolution's message: which --arch may read it)

    @property
    def names(self) -> list[str]:
        return [t.name for t in self.ckpt.tensors]

    def matching(self, patterns: list[str]) -> list[str]:
        """Tensor names that a glob selects: by the tensor's name or its key as stored in the file (wrapper
        prefix included), or by a module it belongs to, so that a layer name from diagnose's table
        (``layer4.0.conv1``) or a block (``blocks.5``) selects its tensors as ``layer4.0.conv1.*`` does."""

        def selected(name: str, p: str) -> bool:
            parts = name.split(".")
            return any(fnmatch.fnmatchcase(".".join(parts[:i]), p) for i in range(1, len(parts) + 1))

        return [
            t.name
            for t in self.ckpt.tensors
            if any(selected(t.name, p) or selected(t.key, p) for p in patterns)
        ]

    def tensors_of(self, module: str) -> list[str]:
        return [n for n in self.names if n.rpartition(".")[0] == module]

    def under(self, module: str) -> list[str]:
        return [n for n in self.names if n.startswith(module + ".")]

    def classifier_modules(self) -> list[str]:
        if self.structure is not None and self.structure.classifier:
            return self.structure.classifier
        if self.report is not None:
            return [la["name"] for la in self.report["layers"] if la.get("classifier")]
        return []

    def need_report(self, strategy: str) -> DiagnoseDoc:
        if self.report is None:
            raise UsageError(
                f"--strategy {strategy} needs layer statistics: pipe or pass a `plastic diagnose --json` "
                "report (--report FILE), or give --data DIR to run the diagnosis now"
            )
        return self.report

    def why_unknown(self) -> str:
        """Why no architecture, for an error that needs one: what resolution said (which --arch reads it)."""
        return f" ({self.unknown})" if self.unknown else ""

    def need_structure(self, strategy: str) -> Structure:
        if self.structure is None:
            raise UsageError(
                f"--strategy {strategy} needs the architecture: pass --arch NAME" + self.why_unknown()
            )
        return self.structure


Strategy = Callable[[Context], Plan]


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    help: str
    fn: Strategy
    values: tuple[Value, ...]  # which --value choices apply
    uses: tuple[str, ...] = ("value",)  # the Options fields it reads: what its output records
    needs: frozenset[Need] = frozenset()  # what reinit must build for it before it runs

    def check_value(self, options: Options, flag: str = "--value") -> None:
        """``--value`` applies where the strategy reads it, and only with the values it offers."""
        if "value" in self.uses and options.value not in self.values:
            choices = ", ".join(self.values)
            raise UsageError(f"{flag} {str(options.value)!r} does not apply to {self.name}; choose {choices}")

    def check_options(self, options: Options) -> None:
        """An option set away from its default that this strategy never reads is refused: silently
        ignoring ``--value mean`` (say) would write a checkpoint other than the one asked for."""
        defaults = Options()
        ignored = [
            flag
            for name, flag in OPTION_FLAGS.items()
            if name not in self.uses and getattr(options, name) != getattr(defaults, name)
        ]
        if ignored:
            reads = ", ".join(OPTION_FLAGS[n] for n in self.uses if n in OPTION_FLAGS) or "no option"
            raise UsageError(
                f"{', '.join(ignored)} {'does' if len(ignored) == 1 else 'do'} not apply to --strategy "
                f"{self.name} (it reads {reads}); leave {'it' if len(ignored) == 1 else 'them'} out"
            )

    def plan(self, ctx: Context) -> Plan:
        """Run the strategy on ``ctx`` and check its plan before anything is written.

        A plug-in is code plastic did not write: whatever it raises (other than a ``PlasticError``,
        which already says what is wrong) becomes one :class:`StrategyError` naming the strategy, the
        original chained; a plan that names no tensor of the checkpoint, units out of range, a mask
        of the wrong shape or options that are not JSON is refused the same way.
        """
        try:
            plan = self.fn(ctx)
        except PlasticError:
            raise
        except Exception as e:
            if is_allocation_failure(e):
                raise
            raise StrategyError(f"strategy {self.name!r} failed: {type(e).__name__}: {e}") from e
        check_plan(self.name, plan, {t.name: tuple(t.shape) for t in ctx.ckpt.tensors})
        return plan

    def wants(self, need: Need, options: Options) -> bool:
        """Does this run need ``need``? (gradients only when --utility gradient asks for them)"""
        if need == Need.GRADIENTS:
            return need in self.needs and options.utility == Utility.GRADIENT
        return need in self.needs


def check_plan(strategy: str, plan: Any, shapes: dict[str, tuple[int, ...]]) -> None:
    """Refuse a plan the pipeline could not apply as meant; normalises each change's ``dim`` and makes
    unit indices a 1-D int64 tensor (a list of ints is accepted)."""

    def bad(what: str) -> StrategyError:
        return StrategyError(f"strategy {strategy!r} returned a bad plan: {what}")

    if not isinstance(plan, Plan):
        raise bad(f"a {type(plan).__name__}, not a Plan")
    for i, c in enumerate(plan.changes):
        if not isinstance(c, Change):
            raise bad(f"changes[{i}] is a {type(c).__name__}, not a Change")
        if not isinstance(c.tensor, str) or c.tensor not in shapes:
            raise bad(f"changes[{i}] names {c.tensor!r}, not a tensor of this checkpoint")
        if not isinstance(c.kind, Kind) or not isinstance(c.value, Fill):
            raise bad(f"changes[{i}] ({c.tensor}): kind must be a Kind and value a Fill")
        shape, where = shapes[c.tensor], f"changes[{i}] ({c.tensor})"
        if c.kind in (Kind.UNITS, Kind.ZERO_OUTGOING):
            problem = _units_problem(c, shape)
            if problem:
                raise bad(f"{where}: {problem}")
        elif c.kind == Kind.WEIGHTS:
            mask = c.mask
            if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != shape:
                got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, torch.Tensor) else repr(mask)
                raise bad(f"{where}: mask must be a bool tensor of shape {shape}, not {got}")
    try:
        json.dumps(plan.options, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise bad(f"its options are not JSON ({e})") from None


def _units_problem(c: Change, shape: tuple[int, ...]) -> str:
    """What is wrong with a units change's ``dim`` and ``index`` ("" when nothing; then both normalised)."""
    if isinstance(c.dim, bool) or not isinstance(c.dim, int) or not -len(shape) <= c.dim < len(shape):
        return f"dim {c.dim!r} is not a dimension of a tensor of shape {shape}"
    c.dim %= len(shape)
    index = c.index
    if isinstance(index, list | tuple) and all(isinstance(v, int) and not isinstance(v, bool) for v in index):
        index = torch.tensor(index, dtype=torch.int64)
    if not isinstance(index, torch.Tensor) or index.dtype.is_floating_point or index.dtype == torch.bool:
        return f"index must hold integers (a list or an integer tensor), not {index!r}"
    index = index.reshape(-1).to(torch.int64)
    size = shape[c.dim]
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= size):
        return f"unit indices must lie in [0, {size}) along dim {c.dim}; got {index.min()}..{index.max()}"
    c.index = index
    return ""


# Options fields and the flags that set them (seed applies to every strategy).
OPTION_FLAGS = {
    "value": "--value", "k": "--k", "unit": "--unit", "layers": "--layers", "from_block": "--from",
    "fraction": "--fraction", "utility": "--utility", "shrink": "--shrink", "perturb": "--perturb",
    "include_head": "--include-head",
}  # fmt: skip

_REGISTRY: dict[str, StrategyInfo] = {}


def register_strategy(
    name: str,
    help: str,
    values: tuple[Value, ...] = (Value.RESAMPLE, Value.MEAN),
    uses: tuple[str, ...] = ("value",),
    needs: tuple[Need, ...] = (),
) -> Callable[[Strategy], Strategy]:
    """Register the decorated function as ``--strategy NAME``, like timm's ``register_model``.

    Args:
        name: The strategy's name; a name already registered is refused.
        help: One line for ``plastic strategies``.
        values: Which ``Options.value`` choices apply (``()``: none; the strategy makes its own values).
        uses: The ``Options`` fields it reads: what its manifest records, and which options may be set
            (any other set away from its default is refused).
        needs: What reinit builds before it runs: ``Need.REPORT`` (layer statistics),
            ``Need.LOADED`` (the real weights), ``Need.GRADIENTS``.

    Returns:
        The decorator; the function takes a ``Context`` and returns a ``Plan`` of ``Change`` entries.

    Raises:
        TypeError: an argument of the wrong type (``name`` or ``help`` not a string, ``values`` not
            ``Value`` members, ``needs`` not ``Need`` members, ``uses`` not strings), or a decorated
            object that is not callable.
        UsageError: the name is taken or not a strategy name (lowercase letters, digits, ``-`` and
            ``_``, starting with a letter), ``help`` is empty or spans lines, or ``uses`` names no option.

    Example:
        A strategy that re-initializes the first half of the stem convolution's output units:

        >>> import plastic
        >>> from plastic import Change, Fill, Kind, Plan
        >>> @plastic.register_strategy("first-conv-example", "half of the stem conv's units")
        ... def first_conv(ctx):
        ...     stem = next(n for n in ctx.names if n.endswith("weight") and ctx.ckpt.tensor(n).dim() == 4)
        ...     units = ctx.ckpt.tensor(stem).shape[0]
        ...     half = list(range(units // 2))
        ...     return Plan([Change(stem, Kind.UNITS, Fill(ctx.options.value), index=half)],
        ...                 notes=[f"{stem}: {units // 2} of {units} units"])
        >>> result = plastic.reinit_checkpoint("sample_checkpoints/test_resnet.mnist.safetensors",
        ...                                    "first-conv-example", "resnet.stem.safetensors")
        >>> [c["tensor"] for c in result.changed], result.notes[-1]
        (['conv1.0.weight'], 'conv1.0.weight: 8 of 16 units')
    """
    values, uses, needs = _checked_declaration(name, help, values, uses, needs)

    def deco(fn: Strategy) -> Strategy:
        if not callable(fn):
            raise TypeError(f"register_strategy({name!r}) decorates a callable (Context -> Plan), not {fn!r}")
        _REGISTRY[name] = StrategyInfo(name, help, fn, values, uses, frozenset(needs))
        return fn

    return deco


_NAME = re.compile(r"[a-z][a-z0-9_-]*\Z")  # what `--strategy NAME` can spell without quoting


def _members(field: str, given: Any, kind: type[Any], name: str) -> tuple[Any, ...]:
    """``given`` as a tuple of ``kind``, or the error that names the field. A member's string value is
    taken as the member (``"mean"`` for ``Value.MEAN``); a lone string is refused, since it would be
    taken as its characters."""
    if isinstance(given, str | bytes) or not isinstance(given, tuple | list | set | frozenset):
        raise TypeError(
            f"register_strategy({name!r}): {field} must be a tuple of {kind.__name__}, not {given!r}"
        )
    out = []
    for v in given:
        if not isinstance(v, kind | str):
            raise TypeError(
                f"register_strategy({name!r}): {field} must hold {kind.__name__} values, not {v!r}"
            )
        if kind is str or isinstance(v, kind):
            out.append(v)
            continue
        try:
            out.append(kind(v))
        except ValueError:
            choices = ", ".join(str(m) for m in kind)
            raise UsageError(f"register_strategy({name!r}): {field}: {v!r} is not one of {choices}") from None
    return tuple(out)


def _checked_declaration(
    name: Any, help: Any, values: Any, uses: Any, needs: Any
) -> tuple[tuple[Value, ...], tuple[str, ...], tuple[Need, ...]]:
    """What :func:`register_strategy` was given, checked at the door as timm's and torchvision's
    registries do: a mistake fails here, naming the field, not deep inside a later run."""
    if not isinstance(name, str):
        raise TypeError(f"register_strategy: name must be a str, not {type(name).__name__}")
    if not _NAME.match(name):
        raise UsageError(
            f"register_strategy: {name!r} is not a strategy name (lowercase letters, digits, '-' and '_', "
            "starting with a letter)"
        )
    if name in _REGISTRY:  # a second registration would silently change what `-s NAME` does
        raise UsageError(f"a strategy named {name!r} is already registered; choose another name")
    if not isinstance(help, str):
        raise TypeError(f"register_strategy({name!r}): help must be a str, not {type(help).__name__}")
    if not help.strip() or "\n" in help.strip():
        raise UsageError(f"register_strategy({name!r}): help must be one non-empty line")
    checked_values = _members("values", values, Value, name)
    checked_uses = _members("uses", uses, str, name)
    checked_needs = _members("needs", needs, Need, name)
    unknown = sorted(set(checked_uses) - {*OPTION_FLAGS, "seed"})
    if unknown:
        raise UsageError(f"register_strategy({name!r}): uses names no option: {unknown}")
    return checked_values, checked_uses, checked_needs


def list_strategies() -> list[StrategyInfo]:
    """Every registered strategy, in registration order.

    Returns:
        ``StrategyInfo`` records: ``name``, ``help``, the options it ``uses`` and what it ``needs``.

    Example:
        >>> import plastic
        >>> [s.name for s in plastic.list_strategies()][:3]
        ['topk-layers', 'auto', 'layers']
    """
    return list(_REGISTRY.values())


def get_strategy(name: str) -> StrategyInfo:
    if not isinstance(name, str):
        raise TypeError(f"strategy must be a str (a registered name), not {type(name).__name__}")
    if name not in _REGISTRY:
        raise UsageError(f"unknown strategy {name!r}; choose from {', '.join(_REGISTRY)}")
    return _REGISTRY[name]
