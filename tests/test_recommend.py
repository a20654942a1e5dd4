"""The score's reference points, the recommendation rule, and ``reinit --strategy auto`` following it."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from plastic.decide.recommend import RECOMMEND_AT, max_k, recommend
from plastic.decide.score import components, grad_median, saturation_score
from plastic.measure.capture import reference_saturation
from tests.conftest import CALIB, RESNET, VIT_PT, Result, run_subprocess


def test_reference_saturation_is_the_activations_own_healthy_level() -> None:
    assert reference_saturation(nn.ReLU()) == pytest.approx(0.5, abs=0.01)  # x <= 0 is flat
    assert reference_saturation(nn.ReLU6()) == pytest.approx(0.5, abs=0.01)  # x > 6 is ~never drawn
    assert reference_saturation(nn.Tanh()) == pytest.approx(0.0028, abs=0.001)  # |x| > 2.99: P = 0.0028
    assert reference_saturation(nn.Sigmoid()) < 0.001  # |x| > 4.6
    gelu = reference_saturation(nn.GELU())
    assert 0.0 < gelu < 0.03  # only near its minimum (x ~ -0.75) and far left
    assert reference_saturation(nn.ReLU()) == reference_saturation(nn.ReLU())  # seeded


def test_components_measure_excess_over_the_references() -> None:
    parts = components(
        {"dormant_frac": 0.1, "saturated_frac": 0.75, "saturated_ref": 0.5, "feature_erank": 2.0,
         "grad_ratio": 0.001},
        rank_ceiling=8,
        grad_median=0.1,
    )  # fmt: skip
    assert parts["saturated"] == pytest.approx(0.5)  # half of the non-flat half went flat
    assert parts["starved"] == pytest.approx(1.0)  # 100x below the median
    assert parts["collapse"] == pytest.approx(0.75)
    # a ReLU layer at its natural 50% is not saturated; a layer above the median is not starved
    calm = components({"saturated_frac": 0.45, "saturated_ref": 0.5, "grad_ratio": 0.2}, rank_ceiling=8,
                      grad_median=0.1)  # fmt: skip
    assert calm == {"saturated": 0.0, "starved": 0.0}
    tenth = components({"grad_ratio": 0.01}, rank_ceiling=8, grad_median=0.1)
    assert tenth["starved"] == pytest.approx(0.5)
    assert components({"grad_ratio": 0.0}, rank_ceiling=8, grad_median=0.1)["starved"] == 1.0
    # collapse is reported but does not move the score
    score = saturation_score(parts)
    assert score is not None and math.isclose(score, (0.1 + 0.5 + 1.0) / 3)
    assert saturation_score({"collapse": 0.9}) == 0.0
    assert saturation_score({}) is None
    assert grad_median([0.1, 0.3, float("nan"), 0.2]) == pytest.approx(0.2)
    assert grad_median([]) is None


def _row(name: str, score: float | None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "score": score, "classifier": False, "components": {"starved": score or 0.0},
            **extra}  # fmt: skip


def test_recommend_rule() -> None:
    calm = recommend([_row("a", 0.05), _row("b", 0.01), _row("c", None)])
    assert calm.action == "finetune" and calm.strategy is None and calm.layers == []
    assert "fine-tune as is" in calm.reason and "0.05" in calm.reason

    rec = recommend(
        [_row("a", 0.05), _row("b", 0.3), _row("c", RECOMMEND_AT), _row("head", 0.9, classifier=True)]
    )
    assert rec.action == "reinit" and rec.strategy == "topk-layers"
    assert rec.layers == ["b", "c"] and rec.options == {"k": 2, "unit": "layer"}  # classifier never chosen

    many = recommend([_row(f"l{i:02d}", 0.5 + i / 100) for i in range(40)])
    assert max_k(40) == 4 and many.options["k"] == 4 and many.layers[0] == "l39"
    assert "40 of 40 layers" in many.reason and "36 more" in many.reason

    dormant = recommend([_row("a", 0.4, dormant_units=[1, 2, 3])])
    assert dormant.alternatives and "dormant-units" in dormant.alternatives[0]
    assert "skipped" in dormant.alternatives[0]  # it does not promise to reset units it cannot
    assert recommend([]).action == "finetune"


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    from plastic.documents.reports import diagnose_dict
    from plastic.measure.diagnosis import diagnose

    return {"resnet": diagnose_dict(diagnose(RESNET, CALIB)), "vit": diagnose_dict(diagnose(VIT_PT, CALIB))}


def test_calibrated_on_the_samples(reports: dict[str, dict[str, Any]]) -> None:
    """The two shipped cases of the transfer benchmark: re-initialization helped the ResNet, not the ViT."""
    res, vit = reports["resnet"]["recommendation"], reports["vit"]["recommendation"]
    assert res["action"] == "reinit" and res["strategy"] == "topk-layers"
    assert set(res["layers"]) == {"layer3.0.conv1", "layer4.0.conv1", "layer4.0.conv2"}
    assert vit["action"] == "finetune" and vit["layers"] == [] and "fine-tune as is" in vit["reason"]
    for doc in reports.values():
        sat = [la["metrics"] for la in doc["layers"] if la["metrics"].get("saturated_frac") is not None]
        assert sat and all(m["saturated_ref"] is not None for m in sat)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_auto_follows_the_piped_report(tmp_path: Path, reports: dict[str, dict[str, Any]]) -> None:
    doc = reports["resnet"]
    out = tmp_path / "auto.safetensors"
    proc: Result = run_subprocess("reinit", "--strategy", "auto", "-o", out, "--json", stdin=json.dumps(doc))
    assert proc.code == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    changed = {c["tensor"].rpartition(".")[0] for c in manifest["changed"]}
    layers = set(doc["recommendation"]["layers"])
    assert layers <= changed  # the recommended convs, plus the norm after each (bn1/bn2)
    assert all(m in layers or ".bn" in m for m in changed), changed
    assert "recommendation:" in proc.stderr
    # the same as asking for topk-layers with the recommended k
    topk = tmp_path / "topk.safetensors"
    proc2 = run_subprocess(
        "reinit", RESNET, "--strategy", "topk-layers", "--k", str(doc["recommendation"]["options"]["k"]),
        "--report", "-", "-o", topk, stdin=json.dumps(doc),
    )  # fmt: skip
    assert proc2.code == 0, proc2.stderr
    a, b = _tensors(out), _tensors(topk)
    assert all(torch.equal(a[n], b[n]) for n in a)


def test_auto_without_saturation_writes_the_input_unchanged(
    cli: Callable[..., Result], tmp_path: Path, reports: dict[str, dict[str, Any]]
) -> None:
    rep = tmp_path / "vit.json"
    rep.write_text(json.dumps(reports["vit"]))
    out = tmp_path / "vit_auto.safetensors"
    r = cli("reinit", "--report", rep, "--strategy", "auto", "-o", out, "--json")
    assert r.code == 0, r.stderr
    assert json.loads(r.stdout)["changed"] == []
    assert "fine-tune as is" in r.stderr
    from plastic.files.checkpoint import open_checkpoint

    with open_checkpoint(VIT_PT) as ckpt:
        src = {i.name: t for i, t in ckpt.iter_tensors()}
    new = _tensors(out)
    assert set(new) == set(src) and all(torch.equal(new[n], src[n]) for n in src)


def test_auto_recomputes_from_an_old_report(tmp_path: Path, reports: dict[str, dict[str, Any]]) -> None:
    """A report without the ``recommendation`` key (older plastic) still drives auto via its scores."""
    doc = dict(reports["resnet"])
    del doc["recommendation"]
    from plastic.reinit.run import reinit
    from plastic.reinit.strategies import Options

    res = reinit(RESNET, strategy="auto", output=None, options=Options(), report=doc, dry_run=True)
    layers = {c["tensor"].rpartition(".")[0] for c in res.changed}
    assert set(reports["resnet"]["recommendation"]["layers"]) <= layers


def test_diagnose_prints_the_recommendation(cli: Callable[..., Result]) -> None:
    r = cli("diagnose", VIT_PT, "--data", CALIB, env={"NO_COLOR": "1"})
    assert r.code == 0, r.stderr
    assert "recommendation: no layer is saturated" in r.stdout


def test_printed_commands_run_when_pasted(cli: Callable[..., Result], tmp_path: Path) -> None:
    """Every command diagnose prints runs as printed, and does what --strategy auto does."""
    import shlex
    import shutil

    src = tmp_path / "my model.safetensors"  # a space: the printed line must quote it
    shutil.copy(RESNET, src)
    r = cli("diagnose", src, "--data", CALIB, env={"NO_COLOR": "1", "COLUMNS": "300"})
    assert r.code == 0, r.stderr
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("plastic reinit")]
    assert lines, r.stdout
    for line in lines:
        args = shlex.split(line)
        assert args[:2] == ["plastic", "reinit"]
        out = Path(args[args.index("-o") + 1])
        res = cli(*args[1:])
        assert res.code == 0, (line, res.stderr)
        assert out.exists()
        out.unlink()
    # the first line is the recommendation itself: the same tensors as --strategy auto on the report
    report = tmp_path / "r.json"
    report.write_text(cli("diagnose", src, "--data", CALIB, "--json").stdout)
    auto = tmp_path / "auto.safetensors"
    assert cli("reinit", "--report", report, "-s", "auto", "-o", auto).code == 0
    first = shlex.split(lines[0])
    assert cli(*first[1:]).code == 0
    by_cmd, by_auto = _tensors(Path(first[first.index("-o") + 1])), _tensors(auto)
    assert by_cmd.keys() == by_auto.keys() and all(torch.equal(by_cmd[k], by_auto[k]) for k in by_cmd)


def test_few_images_lower_the_confidence(cli: Callable[..., Result]) -> None:
    import json

    doc = json.loads(cli("diagnose", RESNET, "--data", CALIB, "--max-images", "8", "--json").stdout)
    assert doc["recommendation"]["confidence"] == "low"
    assert any("tentative" in n for n in doc["notes"])
    table = cli("diagnose", RESNET, "--data", CALIB, "--max-images", "8", env={"NO_COLOR": "1"})
    assert "low confidence" in table.stdout
    full = json.loads(cli("diagnose", RESNET, "--data", CALIB, "--json").stdout)
    assert full["recommendation"]["confidence"] == "normal"


def test_output_records_only_the_options_that_applied(
    tmp_path: Path, reports: dict[str, dict[str, Any]]
) -> None:
    """An auto run records the layers it chose, not --k's default; a head run records no --fraction."""
    import json

    from safetensors import safe_open

    from plastic.reinit.run import reinit
    from plastic.reinit.strategies import Options

    auto = tmp_path / "auto.safetensors"
    reinit(RESNET, strategy="auto", output=auto, options=Options(), report=reports["resnet"])
    with safe_open(str(auto), framework="pt") as f:
        recorded = json.loads(f.metadata()["plastic.options"])
    assert recorded == {"value": "resample", "layers": reports["resnet"]["recommendation"]["layers"]}
    head = tmp_path / "head.safetensors"
    reinit(RESNET, strategy="head", output=head, options=Options(fraction=0.5, k=7))
    with safe_open(str(head), framework="pt") as f:
        assert json.loads(f.metadata()["plastic.options"]) == {"value": "resample"}
