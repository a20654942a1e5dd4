"""Strategy plans on their own: which tensors change and how, decided from the checkpoint's names and the
meta model's structure, with no value drawn and no forward on real data."""

from __future__ import annotations

from pathlib import Path

import pytest

from plastic.files.checkpoint import open_checkpoint
from plastic.model.init_values import recorded_model
from plastic.model.structure import analyse
from plastic.reinit.options import Fill, Kind, Options, Value
from plastic.reinit.strategies import Context, Plan, get_strategy
from tests.conftest import RESNET


def _plan(strategy: str, path: Path = RESNET, **opts: object) -> Plan:
    def no_real_model() -> object:
        raise AssertionError("planning drew a real model")

    with open_checkpoint(path) as ckpt:
        structure = analyse(recorded_model("test_resnet", 10).model, materialise=no_real_model)  # type: ignore[arg-type]
        return get_strategy(strategy).fn(Context(ckpt, Options(**opts), None, structure))  # type: ignore[arg-type]


def test_head_plans_exactly_the_classifier() -> None:
    plan = _plan("head")
    assert {(c.tensor, c.kind, c.value) for c in plan.changes} == {
        ("fc.weight", Kind.TENSOR, Fill.RESAMPLE),
        ("fc.bias", Kind.TENSOR, Fill.RESAMPLE),
    }


def test_layers_resets_the_layer_and_the_norm_that_follows_it() -> None:
    plan = _plan("layers", layers=["layer2.0.conv1.weight"], value=Value.MEAN)
    kinds = {c.tensor: (c.kind, c.value) for c in plan.changes}
    assert kinds["layer2.0.conv1.weight"] == (Kind.TENSOR, Fill.MEAN)
    bn = {t: k for t, k in kinds.items() if t.startswith("layer2.0.bn1.")}
    assert set(bn) == {f"layer2.0.bn1.{leaf}" for leaf in
                       ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}  # fmt: skip
    assert set(bn.values()) == {(Kind.NORM_RESET, Fill.MEAN)}
    assert not any(t.startswith("layer2.0.bn2.") for t in kinds)  # bn2 follows conv2, untouched


def test_shrink_perturb_plans_every_parameter_but_no_running_statistic() -> None:
    plan = _plan("shrink-perturb")
    tensors = {c.tensor for c in plan.changes}
    assert "conv1.0.weight" in tensors and "fc.bias" in tensors
    assert not any(t.endswith(("running_mean", "running_var", "num_batches_tracked")) for t in tensors)
    assert {(c.kind, c.value) for c in plan.changes} == {(Kind.SHRINK_PERTURB, Fill.SHRINK_PERTURB)}


def test_weights_plans_a_mask_of_the_requested_fraction_per_tensor() -> None:
    plan = _plan("weights", fraction=0.25)
    assert plan.changes and all(c.kind == Kind.WEIGHTS and c.mask is not None for c in plan.changes)
    for c in plan.changes:
        assert c.mask is not None
        assert int(c.mask.sum()) == round(0.25 * c.mask.numel())
    assert "fc.weight" not in {c.tensor for c in plan.changes}  # the head is excluded by default


@pytest.mark.parametrize("member", [*Value, *Kind, *Fill])
def test_enum_members_are_their_strings(member: str) -> None:
    assert member == member.value and f"{member}" == member.value and str(member) == member.value  # type: ignore[attr-defined]


def test_a_shared_activation_module_is_never_called_complete() -> None:
    """DLA calls one ReLU module after several convs: which call carries the layer's units is unknown,
    so dormant-units skips them instead of perturbing the wrong tensor (it used to raise IndexError)."""
    import torch
    from torch import nn

    from plastic.model.structure import _consumers_complete

    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2, self.relu = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1), nn.ReLU()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.relu(self.conv2(self.relu(self.conv1(x))))

    model = Shared().eval()
    x = torch.randn(1, 3, 4, 4)
    assert _consumers_complete(model, x, "conv1", [7], {"conv1": "relu"}, ["conv2"]) is False
