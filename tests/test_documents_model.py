"""One model per result (issue 32): each result is a dataclass whose ``to_dict()`` is its command's
``--json`` document, and the TypedDicts of ``documents/schema.py`` say exactly which keys it has. Checked
here field for field, recursively, on real documents: every required key present, no key the schema
does not name, nested sections against their own TypedDicts."""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints, is_typeddict

import pytest

import plastic
from plastic.decide.race import Margin
from plastic.documents import schema
from plastic.measure.finetune import Recipe
from plastic.pipelines.report import RungResult, Start, TrialCandidate, TrialResult
from tests.conftest import CALIB, RESNET


def mismatches(value: Any, td: Any, where: str = "$") -> list[str]:
    """Where ``value`` (a document) departs from the TypedDict ``td``: missing or unnamed keys, at any
    depth the schema types with a TypedDict (directly, in a list, or optional)."""
    if not isinstance(value, dict):
        return [f"{where}: expected an object for {td.__name__}, got {type(value).__name__}"]
    hints = get_type_hints(td)
    out = [f"{where}.{k}: missing" for k in sorted(td.__required_keys__) if k not in value]
    out += [f"{where}.{k}: not in {td.__name__}" for k in sorted(value) if k not in hints]
    for k, v in value.items():
        if k in hints and v is not None:
            out += _check(v, hints[k], f"{where}.{k}")
    return out


def _check(value: Any, tp: Any, where: str) -> list[str]:
    if is_typeddict(tp):
        return mismatches(value, tp, where)
    origin = get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in get_args(tp) if a is not type(None)]
        return _check(value, inner[0], where) if len(inner) == 1 else []
    if origin is list and isinstance(value, list):
        (item,) = get_args(tp)
        return [m for i, v in enumerate(value) for m in _check(v, item, f"{where}[{i}]")]
    return []


def test_the_check_finds_a_missing_and_an_unnamed_key_at_depth() -> None:
    """The known answer: a block without its rank and with a stray key, inside a list, is found."""
    block = {"name": "b", "group": 0, "layers": [], "score": None, "extra": 1}

    class Doc(typing.TypedDict):
        blocks: list[schema.BlockDoc]

    assert mismatches({"blocks": [block]}, Doc) == [
        "$.blocks[0].rank: missing",
        "$.blocks[0].extra: not in BlockDoc",
    ]


@pytest.fixture(scope="module")
def diagnosed() -> plastic.DiagnoseReport:
    return plastic.diagnose_checkpoint(RESNET, CALIB, device="cpu", max_images=8, cache=False)


def test_inspect_document_matches_its_schema() -> None:
    report = plastic.inspect_checkpoint(RESNET)
    assert isinstance(report, plastic.InspectReport)
    assert mismatches(report.to_dict(), schema.InspectDoc) == []


def test_diagnose_document_matches_its_schema(diagnosed: plastic.DiagnoseReport) -> None:
    doc = diagnosed.to_dict()
    assert doc["layers"] and doc["blocks"] and doc["recommendation"] is not None  # the nested parts ran
    assert mismatches(doc, schema.DiagnoseDoc) == []
    assert isinstance(diagnosed.recommendation, plastic.Recommendation)
    assert all(isinstance(la, plastic.LayerDiagnosis) for la in diagnosed.layers)


def test_reinit_manifest_matches_its_schema(tmp_path: Path, diagnosed: plastic.DiagnoseReport) -> None:
    result = plastic.reinit_checkpoint(RESNET, "topk-layers", tmp_path / "out.safetensors", report=diagnosed)
    assert isinstance(result, plastic.ReinitResult) and result.changed
    assert mismatches(result.to_dict(), schema.ReinitDoc) == []


def trial_result() -> TrialResult:
    """A race's result as the trial fills it in (two candidates, one diverged rung)."""

    def entry(name: str, strategy: str | None, scale: float) -> TrialCandidate:
        start = Start(name, strategy, {}, ("fine-tune",) if strategy is None else ("rule",))
        return TrialCandidate(start, scale, 0, [RungResult(10, 0.5, 1.2), RungResult(20, 0.6, float("inf"))])

    return TrialResult(
        path=CALIB, classes=["a", "b"], train_images=12, validation_images=4, skipped=0, recipe=Recipe(),
        budget=40, rungs=[10, 20, 40], seed=0, threads=2,
        candidates=[entry("fine-tune", None, 1.0), entry("from-block layer4", "from-block", 3.0)],
        winner=1, runner_up=0, over_runner_up=Margin(0.1, 0.02, 0.2, 20), over_rule=None, rule=0,
        decided=True, verdict="v", steps_trained=60,
    )  # fmt: skip


def test_trial_section_matches_its_schema(diagnosed: plastic.DiagnoseReport) -> None:
    """The trial's own dataclasses, filled as a race fills them, give a ``trial`` section of its shape."""
    trial = trial_result()
    doc = trial.to_dict()
    assert doc["candidates"][0]["rungs"][1]["loss"] is None  # a diverged run: null, as JSON has no inf
    assert mismatches(doc, schema.TrialDoc) == []
    diagnosed.trial = trial
    try:
        assert mismatches(diagnosed.to_dict(), schema.DiagnoseDoc) == []
    finally:
        diagnosed.trial = None
