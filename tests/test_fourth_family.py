"""A model family is known in one place (issue 32): its backend. A small fourth family, defined here and
added with one ``register_family`` call, runs through inspect, diagnose and reinit (files and live
models) without any other module of plastic knowing it: recognised from its tensors, built fresh for
the reference, grouped into stages for ``from-block``, re-initialized with its own init."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

import plastic
from plastic.model.backends import ArchSpec, Backend, Detection, register_family, unregister_family
from plastic.model.backends.tree import last_layer, tree_groups
from tests.conftest import CALIB


class TinyNet(nn.Module):
    """The family's one architecture, ``toy:tinynet``: a stem, two stages, a pooled linear head."""

    def __init__(self, num_classes: int = 7, in_chans: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_chans, 8, 3, 2, 1), nn.ReLU())
        self.stage1 = nn.Sequential(
            nn.Conv2d(8, 12, 3, 2, 1), nn.ReLU(), nn.Conv2d(12, 12, 3, 1, 1), nn.ReLU()
        )
        self.stage2 = nn.Sequential(
            nn.Conv2d(12, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU()
        )
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.stage2(self.stage1(self.stem(x))).mean((2, 3)))


def _body_keys() -> set[str]:
    return {k for k in TinyNet().state_dict() if not k.startswith("head.")}


class ToyBackend(Backend):
    family: ClassVar[str] = "toy"
    install: ClassVar[str] = "nothing: the family lives in this test"
    detects: ClassVar[bool] = True

    def available(self) -> bool:
        return True

    def owns(self, model: nn.Module) -> bool:
        return isinstance(model, TinyNet)

    def check_name(self, name: str, where: str) -> None:
        if name != "tinynet":
            from plastic.errors import ArchitectureError

            raise ArchitectureError(f"{where}: the toy family has no {name!r}")

    def name_of(self, model: nn.Module) -> str | None:
        return "tinynet"

    def detect(self, shapes: dict[str, tuple[int, ...]]) -> Detection | None:
        """Its index: the body's key set (the head's rows are the class count)."""
        body = {k for k in shapes if not k.startswith("head.")}
        return Detection(["tinynet"] if body == _body_keys() else [], ("head.weight", "head.bias"))

    def create(self, spec: ArchSpec) -> nn.Module:
        classes = spec.num_classes if spec.num_classes >= 0 else 7
        return TinyNet(classes, spec.in_chans or 3).eval()

    def groups(self, model: nn.Module, coarse: bool = False) -> dict[int, list[str]]:
        return tree_groups(model, "", coarse)

    def classifier(self, model: nn.Module) -> list[nn.Module]:
        return last_layer(model)

    def data_defaults(self, model: nn.Module) -> dict[str, Any]:
        return {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25),
                "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}  # fmt: skip


@pytest.fixture
def toy() -> Iterator[None]:
    register_family(ToyBackend())
    try:
        yield
    finally:
        unregister_family("toy")


@pytest.fixture
def toy_file(tmp_path: Path) -> Path:
    """A trained-looking toy checkpoint: its top stage's last conv made dead (weights and bias far
    negative: every unit of it stops at the ReLU), so the diagnosis has a known answer."""
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():
        model.stage2[2].weight.fill_(-0.5)
        model.stage2[2].bias.fill_(-5.0)
    path = tmp_path / "tinynet.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)  # no metadata: detected
    return path


def test_registering_twice_is_refused(toy: None) -> None:
    with pytest.raises(ValueError, match="registered already"):
        register_family(ToyBackend())


def test_unregistered_the_file_is_not_recognised(toy_file: Path) -> None:
    """The null case: without the family no index knows the file, and diagnose says so."""
    with pytest.raises(plastic.ArchitectureError, match="could not recognise the architecture"):
        plastic.diagnose_checkpoint(toy_file, CALIB, device="cpu", max_images=8, cache=False)


def test_inspect_diagnose_and_reinit_run_through_the_registered_family(toy: None, toy_file: Path) -> None:
    inspected = plastic.inspect_checkpoint(toy_file)
    assert inspected.to_dict()["arch"]["candidates"] == ["toy:tinynet"]  # the family's own index

    report = plastic.diagnose_checkpoint(toy_file, CALIB, device="cpu", max_images=16, cache=False)
    doc = report.to_dict()
    assert (doc["arch"]["name"], doc["arch"]["source"], doc["arch"].get("family")) == (
        "toy:tinynet", "detected", "toy"
    )  # fmt: skip
    assert [st["name"] for st in doc["stages"]] == ["stem.0", "stage1", "stage2", "head"]
    dead = next(la for la in report.layers if la.name == "stage2.2")
    assert dead.metrics["dormant_frac"] == 1.0  # the known answer: every unit of it is dead
    assert all(la.reference for la in report.layers if not la.classifier)  # a fresh toy model was measured

    out = toy_file.with_name("out.safetensors")
    result = plastic.reinit_checkpoint(
        toy_file, "from-block", out, options=plastic.Options(from_block="stage2")
    )
    changed = {c["tensor"] for c in result.changed}
    assert changed == {"stage2.0.weight", "stage2.0.bias", "stage2.2.weight", "stage2.2.bias",
                       "head.weight", "head.bias"}  # fmt: skip
    before, after = load_file(toy_file), load_file(out)
    assert all(torch.equal(before[k], after[k]) for k in before if k not in changed)
    assert float(after["stage2.2.bias"].min()) > -1.0  # the family's own init, not the dead values
    assert "toy tinynet" in result.init_source


def test_a_live_model_of_the_family_is_diagnosed_and_reinitialized_in_place(toy: None) -> None:
    torch.manual_seed(1)
    model = TinyNet()
    with torch.no_grad():
        model.stage2[2].bias.fill_(-50.0)
    x = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    report = plastic.diagnose_model(model, x, labels=torch.arange(16) % 4)
    assert report.arch == "toy:tinynet"
    result = plastic.reinit_model(model, "from-block", report=report,
                                  options=plastic.Options(from_block="stage2"))  # fmt: skip
    assert "stage2.2.bias" in {c["tensor"] for c in result.changed}
    assert float(model.stage2[2].bias.detach().min()) > -1.0
