"""The library's contract (issue 33): what the API is given is checked at the door, with the exception
Python's convention names (TypeError for a wrong type, a PlasticError for a wrong value), never later
and deep inside a run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import plastic
from plastic import Change, Fill, Kind, Need, Plan, Value


@pytest.fixture
def registry() -> Iterator[None]:
    """Whatever a test registers is taken out again."""
    from plastic.reinit import registry as reg
    from plastic.reinit import strategies  # noqa: F401 (the built-ins registered first)

    before = dict(reg._REGISTRY)
    yield
    reg._REGISTRY.clear()
    reg._REGISTRY.update(before)


def _first(ctx: Any) -> Plan:
    return Plan([Change(ctx.names[0], Kind.TENSOR, Fill(ctx.options.value))])


@pytest.mark.parametrize(
    ("kwargs", "error", "names"),
    [
        ({"name": 5}, TypeError, "name must be a str"),
        ({"name": ""}, plastic.UsageError, "not a strategy name"),
        ({"name": "   "}, plastic.UsageError, "not a strategy name"),
        ({"name": "Two Words"}, plastic.UsageError, "not a strategy name"),
        ({"name": "-leading-dash"}, plastic.UsageError, "not a strategy name"),
        ({"name": "head"}, plastic.UsageError, "already registered"),
        ({"help": None}, TypeError, "help must be a str"),
        ({"help": "  "}, plastic.UsageError, "one non-empty line"),
        ({"help": "two\nlines"}, plastic.UsageError, "one non-empty line"),
        ({"values": "resample"}, TypeError, "values must be a tuple of Value"),
        ({"values": ("resample", 3)}, TypeError, "values must hold Value values, not 3"),
        ({"uses": "value"}, TypeError, "uses must be a tuple of str"),
        ({"uses": (1,)}, TypeError, "uses must hold str values"),
        ({"uses": ("no_such_option",)}, plastic.UsageError, "uses names no option"),
        ({"needs": Need.REPORT}, TypeError, "needs must be a tuple of Need"),
        ({"needs": ("reports",)}, plastic.UsageError, "'reports' is not one of report, loaded, gradients"),
        ({"values": (Value.MEAN, "median")}, plastic.UsageError, "'median' is not one of resample, mean"),
    ],
)
def test_registration_refuses_a_bad_declaration_naming_the_field(
    registry: None, kwargs: dict[str, Any], error: type[Exception], names: str
) -> None:
    """Each of these used to be accepted and to fail only later, deep in a run."""
    args = {"name": "my-strategy", "help": "one line", **kwargs}
    with pytest.raises(error, match=names):
        plastic.register_strategy(**args)(_first)
    assert "my-strategy" not in [s.name for s in plastic.list_strategies()]


def test_registration_refuses_what_is_not_callable(registry: None) -> None:
    deco = plastic.register_strategy("not-callable", "x")
    with pytest.raises(TypeError, match="decorates a callable"):
        deco("fc.weight")  # type: ignore[arg-type]
    assert "not-callable" not in [s.name for s in plastic.list_strategies()]


def test_a_good_declaration_registers_with_its_fields(registry: None) -> None:
    """Lists are taken as tuples and a member's string as the member; the extension types come from
    the top of the package."""
    plastic.register_strategy("first-tensor", "the first tensor", values=["mean"], uses=["value"],
                              needs=[Need.LOADED])(_first)  # fmt: skip
    info = {s.name: s for s in plastic.list_strategies()}["first-tensor"]
    assert info.values == (Value.MEAN,) and isinstance(info.values[0], Value)
    assert info.uses == ("value",) and info.needs == frozenset({Need.LOADED})
    assert isinstance(info, plastic.StrategyInfo) and info.fn is _first


# --- a plug-in's plan is checked before anything is written ------------------------------------------------


def _reinit_with(tmp_path: Path, plan: Any) -> pytest.ExceptionInfo[plastic.StrategyError]:
    """Register a strategy that returns ``plan`` (or raises it), run it on the ResNet sample, and check
    that nothing was written: no output, no temporary file."""
    from tests.conftest import RESNET

    def strategy(ctx: Any) -> Any:
        if isinstance(plan, BaseException):
            raise plan
        return plan(ctx) if callable(plan) else plan

    plastic.register_strategy("plug-in", "a test's plug-in")(strategy)
    out = tmp_path / "out" / "o.safetensors"
    out.parent.mkdir()
    with pytest.raises(plastic.StrategyError, match="'plug-in'") as info:
        plastic.reinit_checkpoint(RESNET, "plug-in", out)
    assert list(out.parent.iterdir()) == []
    return info


def _units(index: Any, dim: Any = 0, tensor: str = "conv1.0.weight") -> Plan:
    return Plan([Change(tensor, Kind.UNITS, Fill.RESAMPLE, index=index, dim=dim)])


@pytest.mark.parametrize(
    ("plan", "says"),
    [
        ("not a plan", "a str, not a Plan"),
        (Plan(["conv1.0.weight"]), "changes\\[0\\] is a str, not a Change"),  # type: ignore[list-item]
        (
            Plan([Change("no.such.weight", Kind.TENSOR, Fill.RESAMPLE)]),
            "names 'no.such.weight', not a tensor",
        ),
        (Plan([Change("fc.weight", "tensor", Fill.RESAMPLE)]), "kind must be a Kind"),  # type: ignore[arg-type]
        (_units(torch.tensor([0, 99])), "unit indices must lie in \\[0, 16\\) along dim 0; got 0..99"),
        (_units(torch.tensor([-1])), "unit indices must lie in \\[0, 16\\)"),
        (_units(torch.tensor([0.5])), "index must hold integers"),
        (_units([1.0, 2.0]), "index must hold integers"),
        (_units(None), "index must hold integers"),
        (_units([0], dim=4), "dim 4 is not a dimension of a tensor of shape \\(16, 3, 3, 3\\)"),
        (_units([0], dim=1.0), "dim 1.0 is not a dimension"),
        (
            Plan([Change("fc.weight", Kind.WEIGHTS, Fill.RESAMPLE, mask=torch.ones(10, 96))]),
            "mask must be a bool",
        ),
        (Plan([Change("fc.weight", Kind.WEIGHTS, Fill.RESAMPLE, mask=None)]), "mask must be a bool"),
        (
            Plan([Change("fc.weight", Kind.WEIGHTS, Fill.RESAMPLE, mask=torch.ones(3, dtype=torch.bool))]),
            "mask must be a bool tensor of shape",
        ),
        (Plan(options={"when": object()}), "options are not JSON"),
        (Plan(options={"ratio": float("nan")}), "options are not JSON"),
    ],
)
def test_a_bad_plan_is_one_error_naming_the_strategy_and_nothing_is_written(
    registry: None, tmp_path: Path, plan: Any, says: str
) -> None:
    """Each of these reached plastic's internals before (KeyError, IndexError, a bare assert)."""
    assert _reinit_with(tmp_path, plan).match(says)


def test_a_strategy_that_raises_is_one_error_with_the_original_chained(
    registry: None, tmp_path: Path
) -> None:
    info = _reinit_with(tmp_path, KeyError("layer9"))
    assert info.match("strategy 'plug-in' failed: KeyError: 'layer9'")
    assert isinstance(info.value.__cause__, KeyError)


def test_a_good_plug_in_plan_with_list_indices_is_written(registry: None, tmp_path: Path) -> None:
    """The normalisations the check makes (a list of ints, a negative dim) give the built-ins' result."""
    from safetensors.torch import load_file

    from tests.conftest import RESNET

    plastic.register_strategy("two-units", "units 0 and 3 of the stem")(lambda ctx: _units([0, 3], dim=-4))
    out = tmp_path / "o.safetensors"
    result = plastic.reinit_checkpoint(RESNET, "two-units", out, options=plastic.Options(value="mean"))
    before, after = load_file(RESNET)["conv1.0.weight"], load_file(out)["conv1.0.weight"]
    changed = [i for i in range(before.shape[0]) if not torch.equal(before[i], after[i])]
    assert changed == [0, 3] and result.changed
