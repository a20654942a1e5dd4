"""The library's contract (issue 33): what the API is given is checked at the door, with the exception
Python's convention names (TypeError for a wrong type, a PlasticError for a wrong value), never later
and deep inside a run."""

from __future__ import annotations

import os
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


# --- a fuzz over the top-level API: only the documented exceptions -----------------------------------------

WRONG = [None, 0, -1, 1.5, float("nan"), 10**20, True, "", "x", "fc", [], ["a", 3], {}, (1,), object(),
         b"\x00"]  # fmt: skip
# per function: a seeded sample of (argument, value) pairs, ~6 s in all (PLASTIC_FUZZ_SCALE=25: all ~770)
FUZZ_CASES = 12 * int(os.environ.get("PLASTIC_FUZZ_SCALE", "1"))


def _fuzz_cases(fn: Any, skip: set[str]) -> list[tuple[str, Any]]:
    import inspect
    import random

    names = [p for p in inspect.signature(fn).parameters if p not in skip]
    rng = random.Random(fn.__name__)
    pairs = [(n, v) for n in names for v in WRONG]
    return rng.sample(pairs, min(FUZZ_CASES, len(pairs)))


def _documented(fn: Any, *args: Any, **kwargs: Any) -> str:
    """ "" when ``fn(*args, **kwargs)`` succeeds or raises what the README's Library section lists (a
    PlasticError subclass for bad input, a TypeError naming the argument for a wrong type); else what
    it raised."""
    try:
        fn(*args, **kwargs)
    except plastic.PlasticError:
        pass
    except Exception as e:
        if not (isinstance(e, TypeError) and (" must be " in str(e) or "argument" in str(e))):
            return f"{fn.__name__}({kwargs}): {e!r}"
    return ""


def _reinit_with_options(path: Path, **fields: Any) -> None:
    plastic.reinit_checkpoint(path, "head", dry_run=True, options=plastic.Options(**fields))


def test_fuzz_the_api_finds_only_documented_exceptions(tmp_path: Path) -> None:
    from tests.conftest import CALIB, RESNET

    small = {"max_images": 2, "device": "cpu"}
    found = [_documented(plastic.inspect_checkpoint, RESNET, **{name: value})
             for name, value in _fuzz_cases(plastic.inspect_checkpoint, {"path"})]  # fmt: skip
    diagnose_cases = _fuzz_cases(plastic.diagnose_checkpoint, {"path", "data", "trial_data"})
    found += [_documented(plastic.diagnose_checkpoint, RESNET, CALIB, **{**small, name: value})
              for name, value in diagnose_cases]  # fmt: skip
    for i, (name, value) in enumerate(_fuzz_cases(plastic.reinit_checkpoint, {"path", "output", "data"})):
        args = {"strategy": "head", "dry_run": True, name: value}
        found.append(
            _documented(plastic.reinit_checkpoint, RESNET, output=tmp_path / f"o{i}.safetensors", **args)
        )
    found += [_documented(_reinit_with_options, RESNET, **{name: value})
              for name, value in _fuzz_cases(plastic.Options, set())]  # fmt: skip
    assert not [f for f in found if f], "\n".join(f for f in found if f)
    # a fuzzed dry_run (0, [], ...) may write its output, as Python's truthiness says; nothing else
    assert all(p.name.startswith("o") and p.suffix == ".safetensors" for p in tmp_path.iterdir())


# --- arguments mean one thing --------------------------------------------------------------------------


def test_a_lone_string_for_layers_is_one_glob_as_on_the_command_line() -> None:
    from tests.conftest import RESNET

    result = plastic.reinit_checkpoint(RESNET, "layers", dry_run=True, options=plastic.Options(layers="fc"))
    assert {c["tensor"] for c in result.changed} == {
        "fc.weight",
        "fc.bias",
    }  # was "layers=fc match no tensor"
    assert plastic.Options(layers=("fc", "conv1.*")).layers == ["fc", "conv1.*"]
    assert plastic.Options(unit="block").unit == "block"
    with pytest.raises(plastic.UsageError, match="unit must be one of layer, block, not 'blocks'"):
        plastic.Options(unit="blocks")  # was silently the per-layer ranking


@pytest.mark.parametrize(
    ("arch", "error", "says"),
    [
        (5, TypeError, "arch must be a str"),
        ("nonsense", plastic.ArchitectureError, "unknown timm architecture 'nonsense'"),
        ("torchvision:nope", plastic.ArchitectureError, "no classification model 'nope'"),
        ("caffe:alexnet", plastic.ArchitectureError, "unknown model family 'caffe'"),
    ],
)
def test_inspect_refuses_an_arch_its_library_does_not_know(
    arch: Any, error: type[Exception], says: str
) -> None:
    """Both used to be recorded in the report as the architecture."""
    from tests.conftest import RESNET

    with pytest.raises(error, match=says):
        plastic.inspect_checkpoint(RESNET, arch=arch, stats=False)
    assert plastic.inspect_checkpoint(RESNET, arch="torchvision:resnet18", stats=False).to_dict()["arch"][
        "name"
    ]


def test_wrong_types_are_type_errors_naming_the_argument() -> None:
    from tests.conftest import CALIB, RESNET

    for kwargs, says in [
        ({"device": None}, "device must be a str"),  # was AttributeError on startswith
        ({"arch": 5}, "arch must be a str"),  # was AttributeError on partition
        ({"max_images": "8"}, "max_images must be an int, not str"),
        ({"input_size": 224}, "input_size must be a sequence"),
        ({"progress": "bar"}, "progress must be a callable"),
    ]:
        with pytest.raises(TypeError, match=says):
            plastic.diagnose_checkpoint(RESNET, CALIB, **kwargs)
    with pytest.raises(TypeError, match=r"options must be a plastic\.Options, not dict"):
        plastic.reinit_checkpoint(RESNET, "head", dry_run=True, options={"k": 2})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="strategy must be a str"):
        plastic.reinit_checkpoint(RESNET, ["head"], dry_run=True)  # type: ignore[arg-type]


def test_k_beyond_the_ranked_layers_is_all_of_them_with_a_note() -> None:
    """k = 10**12 selects what there is and says so, whether the rest tie at 0 or there is no rest."""
    from plastic.reinit.strategies import _note_ties
    from tests.conftest import CALIB, RESNET

    report = plastic.diagnose_checkpoint(RESNET, CALIB, max_images=8, device="cpu")
    result = plastic.reinit_checkpoint(
        RESNET, "topk-layers", dry_run=True, report=report, options=plastic.Options(k=10**12)
    )
    assert any(f"(not --k {10**12})" in n for n in result.notes), result.notes
    plan = Plan()
    _note_ties(plan, picked=15, k=10**12, ranked=15, what="layers")  # every layer ranked: all of them
    assert plan.notes == [
        f"topk-layers: --k {10**12} asks for more than the 15 layers the report ranks: all 15 were selected"
    ]
