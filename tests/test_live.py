"""The Python API on live models gives what the file commands give: same images, same seed, same
metrics; same report, strategy and seed, same new values (one implementation under both)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from safetensors.torch import load_file

import plastic
from plastic.files.checkpoint import open_checkpoint
from plastic.measure.calib import calib_batches, scan_folder
from plastic.model.build import build_model
from plastic.pipelines.diagnose import diagnose
from plastic.pipelines.reinit import reinit
from plastic.reinit.options import Options, Utility, Value
from tests.conftest import CALIB, RESNET, save_timm


def _loaded(path: Path) -> torch.nn.Module:
    with open_checkpoint(path) as ckpt:
        return build_model(ckpt).model


def _calibration_tensors(report: Any) -> tuple[torch.Tensor, list[int], int]:
    """The calibration images exactly as `diagnose --data` preprocessed them, in the same order."""
    calib = scan_folder(CALIB)
    cfg = report.data_config  # the sample's metadata sets 32 px
    xs = [x for _idx, x, _bad in calib_batches(calib, cfg, 32) if x is not None]
    assert calib.labels is not None
    return torch.cat(xs), calib.labels, len(calib.class_names)


@pytest.fixture(scope="module")
def file_report() -> Any:
    return diagnose(RESNET, CALIB, device="cpu")


def test_diagnose_model_equals_diagnose_on_the_file(file_report: Any) -> None:
    model = _loaded(RESNET)
    x, labels, classes = _calibration_tensors(file_report)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    live = plastic.diagnose_model(model, x, labels=labels, num_classes=classes)
    assert [la.name for la in live.layers] == [la.name for la in file_report.layers]
    for a, b in zip(live.layers, file_report.layers, strict=True):
        assert a.metrics == b.metrics, a.name
        assert a.reference == b.reference and a.reference_spread == b.reference_spread, a.name
        assert a.score == b.score and a.rank == b.rank, a.name
    assert live.recommendation is not None and file_report.recommendation is not None
    assert live.recommendation.layers == file_report.recommendation.layers
    assert not model.training and all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_diagnose_model_takes_a_loader_of_pairs(file_report: Any) -> None:
    model = _loaded(RESNET)
    x, labels, classes = _calibration_tensors(file_report)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(x, torch.tensor(labels)), batch_size=32, shuffle=False
    )
    live = plastic.diagnose_model(model, loader, num_classes=classes)
    assert [la.score for la in live.layers] == [la.score for la in file_report.layers]
    doc = live.to_dict()  # the same document shape as the file's, for the same tools
    assert doc["checkpoint"]["format"] == "memory" and doc["recommendation"]["commands"] == []


@pytest.mark.parametrize(
    ("strategy", "opts"),
    [
        ("head", {}),
        ("layers", {"layers": ["layer2.0.conv1.weight"]}),
        ("shrink-perturb", {}),
        ("weights", {"fraction": 0.25, "utility": Utility.MAGNITUDE, "value": Value.MEAN}),
        ("topk-layers", {"k": 2}),
        ("auto", {}),
        ("dormant-units", {}),
    ],
)
def test_reinit_model_equals_reinit_of_the_file(
    tmp_path: Path, file_report: Any, strategy: str, opts: dict[str, Any]
) -> None:
    options = Options(seed=7, **opts)
    report = file_report.to_dict()
    out = tmp_path / "out.safetensors"
    reinit(RESNET, strategy=strategy, output=out, options=options, report=report)
    expected = load_file(out)
    model = _loaded(RESNET)
    model.train()
    result = plastic.reinit_model(model, strategy, report=report, options=options)
    got = model.state_dict()
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert torch.equal(got[k], v), k
    assert model.training  # left in the mode it came in
    planned = reinit(RESNET, strategy=strategy, output=None, options=options, report=report, dry_run=True)
    assert sorted(c["tensor"] for c in result.changed) == sorted(c["tensor"] for c in planned.changed)


def test_reinit_model_on_a_lightning_module_and_its_errors(tmp_path: Path) -> None:
    lightning = pytest.importorskip("lightning")

    class Lit(lightning.LightningModule):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.model = timm.create_model("test_vit", num_classes=4)

    lit = Lit()
    head_before = lit.model.head.weight.detach().clone()
    blocks_before = lit.model.blocks[0].attn.qkv.weight.detach().clone()
    res = plastic.reinit_model(lit.model, "head", options=Options(seed=1))
    assert {c["tensor"] for c in res.changed} == {"head.weight", "head.bias"}
    assert not torch.equal(lit.model.head.weight, head_before)
    assert torch.equal(lit.model.blocks[0].attn.qkv.weight, blocks_before)
    src = save_timm("test_vit", tmp_path / "v.safetensors", num_classes=4)
    reinit(src, strategy="head", output=tmp_path / "o.safetensors", options=Options(seed=1))
    assert torch.equal(lit.model.head.weight, load_file(tmp_path / "o.safetensors")["head.weight"])
    with pytest.raises(plastic.UsageError, match="ranks layers"):
        plastic.reinit_model(lit.model, "topk-layers")
    with pytest.raises(plastic.ArchitectureError):
        plastic.reinit_model(lit.model, "head", arch="resnet18")
