"""The score's reference points, the recommendation rule, and ``reinit --strategy auto`` following it."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from plastic.decide.recommend import RECOMMEND_AT, max_k, recommend, top_segment
from plastic.decide.score import components, saturation_score
from plastic.errors import UsageError
from plastic.measure.capture import reference_saturation
from plastic.measure.spread import grad_median
from tests.conftest import CALIB, RESNET, ROOT, VIT_PT, Result


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
    assert parts["starved"] == pytest.approx(0.875)  # 100x below the median: 2 decades, less 0.25 of noise
    assert parts["collapse"] == pytest.approx(0.75)
    # a ReLU layer at its natural 50% is not saturated; a layer above the median is not starved
    calm = components({"saturated_frac": 0.45, "saturated_ref": 0.5, "grad_ratio": 0.2}, rank_ceiling=8,
                      grad_median=0.1)  # fmt: skip
    assert calm == {"saturated": 0.0, "starved": 0.0}
    tenth = components({"grad_ratio": 0.01}, rank_ceiling=8, grad_median=0.1)
    assert tenth["starved"] == pytest.approx(0.375)
    assert components({"grad_ratio": 0.0}, rank_ceiling=8, grad_median=0.1)["starved"] == 1.0
    # collapse is reported but does not move the score
    score = saturation_score(parts)
    assert score is not None and math.isclose(score, (0.1 + 0.5 + 0.875) / 3)
    assert saturation_score({"collapse": 0.9}) == 0.0
    assert saturation_score({}) is None
    assert grad_median([0.1, 0.3, float("nan"), 0.2]) == pytest.approx(0.2)
    assert grad_median([]) is None


def test_components_against_a_fresh_reference() -> None:
    """With the fresh layer as the reference, each component is the excess over it."""
    fresh = {"dormant_frac": 0.5, "saturated_frac": 0.5, "grad_ratio": 0.02, "attn_entropy": 0.8,
             "feature_erank": 10.0}  # fmt: skip
    same = components(fresh, rank_ceiling=64, grad_median=0.01, reference=fresh, ref_grad_median=0.01,
                      units=512)  # fmt: skip
    assert all(v == 0.0 for v in same.values()) and set(same) == {
        "dormant", "saturated", "starved", "collapsed_attention", "collapse"}  # fmt: skip
    worse = components(
        {"dormant_frac": 0.75, "saturated_frac": 0.5, "grad_ratio": 0.0002, "attn_entropy": 0.4,
         "feature_erank": 5.0},
        rank_ceiling=64, grad_median=0.01, reference=fresh, ref_grad_median=0.01, units=0,
    )  # fmt: skip
    assert worse["dormant"] == pytest.approx(0.5)  # half of the fresh layer's live units went dormant
    assert worse["starved"] == pytest.approx(0.875)  # 100x less than the fresh layer's, less the noise
    assert worse["collapsed_attention"] == pytest.approx(0.5) and worse["collapse"] == pytest.approx(0.5)
    # a layer that gets little gradient in a fresh model too is not starved for it
    quiet = components({"grad_ratio": 0.0001}, rank_ceiling=8, grad_median=0.01,
                       reference={"grad_ratio": 0.0001}, ref_grad_median=0.01)  # fmt: skip
    assert quiet["starved"] == 0.0
    # each relative to its model's median: a model whose every gradient is 10x smaller is not starved
    scaled = components({"grad_ratio": 0.001}, rank_ceiling=8, grad_median=0.001,
                        reference={"grad_ratio": 0.01}, ref_grad_median=0.01)  # fmt: skip
    assert scaled["starved"] == 0.0
    # a fresh zero-initialised branch gets no gradient: 0 here too is healthy; more is measured against
    # the checkpoint's median instead
    zero = {"grad_ratio": 0.0}
    assert components(zero, rank_ceiling=8, grad_median=0.01, reference=zero, ref_grad_median=0.01)[
        "starved"] == 0.0  # fmt: skip
    trained = components({"grad_ratio": 0.001}, rank_ceiling=8, grad_median=0.01, reference=zero,
                         ref_grad_median=0.01)  # fmt: skip
    assert trained["starved"] == pytest.approx(0.375)  # a decade below the median, less the noise
    within = components({"grad_ratio": 0.006}, rank_ceiling=8, grad_median=0.01,
                        reference={"grad_ratio": 0.01}, ref_grad_median=0.01)  # fmt: skip
    assert within["starved"] == 0.0  # 0.22 decade: seed-to-seed noise


def test_a_gradient_of_float_rounding_is_no_gradient() -> None:
    """LeViT's subsampling queries get exactly 0 in one stage of a fresh model and float rounding in
    another (5e-18 against a median of 6e-10): no gradient by design, so the checkpoint's 1e-19 there
    is not starved. A fresh layer with a real gradient still tells a starved one apart, and nothing
    else changes (BENCHMARKS.md, "a gradient of float rounding", design 2)."""
    levit = components({"grad_ratio": 1.35e-19}, rank_ceiling=8, grad_median=1.1e-10,
                       reference={"grad_ratio": 5.2e-18}, ref_grad_median=6e-10)  # fmt: skip
    assert levit["starved"] == 0.0
    starved = components({"grad_ratio": 1.35e-19}, rank_ceiling=8, grad_median=1.1e-10,
                         reference={"grad_ratio": 6e-10}, ref_grad_median=6e-10)  # fmt: skip
    assert starved["starved"] == 1.0
    # a fresh layer at the boundary (1e-6 of its median) still speaks: 10x less in the checkpoint
    edge = components({"grad_ratio": 1e-17}, rank_ceiling=8, grad_median=1e-10,
                      reference={"grad_ratio": 1e-15}, ref_grad_median=1e-9)  # fmt: skip
    assert edge["starved"] == pytest.approx((math.log10(1e-6 / 1e-7) - 0.25) / 2)
    # rounding in the fresh layer, more than rounding in the checkpoint's: scored as before, against
    # the fresh layer's (a fresh torchvision mobilenet_v3_small's SE layer: 1.4e-6 of its median
    # against the reference's 4.2e-7, which design 1 of BENCHMARKS.md's section called fully starved)
    se = components({"grad_ratio": 1.4e-6}, rank_ceiling=8, grad_median=1.0,
                    reference={"grad_ratio": 4.2e-7}, ref_grad_median=1.0)  # fmt: skip
    assert se["starved"] == 0.0
    learned = components({"grad_ratio": 1e-11}, rank_ceiling=8, grad_median=1e-10,
                         reference={"grad_ratio": 5e-18}, ref_grad_median=6e-10)  # fmt: skip
    assert learned["starved"] == 0.0


def test_seed_noise_is_not_an_excess() -> None:
    """Two fresh seeds of an 8-unit layer differ by a unit or two; of a 512-unit layer, by ~1%."""
    small = components({"dormant_frac": 0.625}, rank_ceiling=8, grad_median=None,
                       reference={"dormant_frac": 0.5}, units=8)  # fmt: skip
    assert small["dormant"] == 0.0
    big = components({"dormant_frac": 0.625}, rank_ceiling=8, grad_median=None,
                     reference={"dormant_frac": 0.5}, units=512)  # fmt: skip
    # 0.125 over the fresh level, less two standard errors (2 * sqrt(2 * 0.5625 * 0.4375 / 512) = 0.062)
    assert big["dormant"] == pytest.approx((0.125 - 2 * math.sqrt(2 * 0.5625 * 0.4375 / 512)) / 0.5)
    assert grad_median([0.0, 0.0, 0.0, 0.2, 0.4]) == pytest.approx(0.3)  # silent layers say nothing


def _row(name: str, score: float | None, **extra: Any) -> dict[str, Any]:
    return {"name": name, "score": score, "classifier": False, "components": {"starved": score or 0.0},
            **extra}  # fmt: skip


def _stages(*names: str) -> list[dict[str, Any]]:
    """Stages named s0 (the stem) .. sN, each holding layers ``<stage>.a`` and ``<stage>.b``."""
    return [{"name": n, "start": n, "layers": [f"{n}.a", f"{n}.b"]} for n in names]


def _layers(scores: dict[str, float], stages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = [_row(la, scores.get(la, 0.01)) for st in stages for la in st["layers"]]
    return [*rows, _row("fc", 0.9, classifier=True)]


def test_recommend_without_stages_takes_the_flagged_layers() -> None:
    calm = recommend([_row("a", 0.05), _row("b", 0.01), _row("c", None)])
    assert calm.action == "finetune" and calm.strategy is None and calm.layers == []
    assert "fine-tune as is" in calm.reason and "0.05" in calm.reason and calm.evidence

    rec = recommend(
        [_row("a", 0.05), _row("b", 0.3), _row("c", RECOMMEND_AT), _row("head", 0.9, classifier=True)]
    )
    assert rec.action == "reinit" and rec.strategy == "topk-layers"
    assert rec.layers == ["b", "c"] and rec.options == {"k": 2, "unit": "layer"}  # classifier never chosen

    many = recommend([_row(f"l{i:02d}", 0.5 + i / 100) for i in range(40)])
    assert max_k(40) == 4 and many.options["k"] == 4 and many.layers[0] == "l39"
    assert "40 of 40 layers" in many.reason and "36 more" in many.reason
    assert recommend([]).action == "finetune"


def test_recommend_takes_the_flagged_top_segment() -> None:
    stages = _stages("s0", "s1", "s2", "s3", "s4")
    # the top stage and the one below flagged, above everything lower: from s3 up, every layer of both
    # (the head comes with it)
    rec = recommend(_layers({"s4.a": 0.3, "s3.b": 0.2}, stages), stages)
    assert rec.action == "reinit" and rec.strategy == "from-block" and rec.options == {"from_block": "s3"}
    assert rec.layers == ["s3.a", "s3.b", "s4.a", "s4.b"] and "fc" not in rec.layers
    assert "from s3 up" in rec.reason and rec.evidence
    # a stage without a flagged layer ends the segment
    gap = recommend(_layers({"s4.a": 0.6, "s2.a": 0.5}, stages), stages)
    assert gap.options == {"from_block": "s4"} and "s3 has no layer at the threshold" in gap.reason
    assert "1 lower one(s) kept" in gap.reason
    # so does a stage that scores below something lower down (here the stem)
    under = recommend(_layers({"s4.a": 0.6, "s3.a": 0.2, "s0.a": 0.3}, stages), stages)
    assert under.options == {"from_block": "s4"} and "s3 scores below a lower stage" in under.reason
    # never below the upper half of the body's stages (4 stages above the stem: at most 2), never the stem
    deep = recommend(_layers({f"s{i}.a": 0.1 + i / 10 for i in range(5)}, stages), stages)
    assert deep.options == {"from_block": "s3"} and "below the upper half" in deep.reason
    # flagged everywhere, the stem most of all (what ImageNet training does to every layer): fine-tune
    spread = recommend(_layers({"s4.a": 0.3, "s2.a": 0.2, "s0.a": 0.4}, stages), stages)
    assert spread.action == "finetune" and "s4 scores below a lower stage" in spread.reason
    # its evidence is that case's (flagged below a top that does not stand out), not the calm case's
    calm = recommend(_layers({}, stages), stages)
    assert spread.evidence != calm.evidence and "second run" in spread.evidence
    # flagged layers only below the top stage: fine-tune, and say which
    low = recommend(_layers({"s1.a": 0.4, "s0.b": 0.2}, stages), stages)
    assert low.action == "finetune" and low.layers == [] and "s4 has no layer at the threshold" in low.reason
    assert "s1.a" in low.reason
    # the classifier's own score never starts a segment
    assert recommend(_layers({}, stages), stages).action == "finetune"


def test_top_segment_variants_for_the_leave_one_out_fit() -> None:
    """The knobs benchmarks/loso.py turns: without the stand-out condition a stage below the stem's score
    joins; a quarter share stops the walk after one stage of four."""
    stages = _stages("s0", "s1", "s2", "s3", "s4")
    rows = _layers({"s4.a": 0.6, "s3.a": 0.2, "s0.a": 0.3}, stages)
    assert [st["name"] for st in top_segment(rows, stages)[0]] == ["s4"]
    assert [st["name"] for st in top_segment(rows, stages, stand_out=False)[0]] == ["s4", "s3"]
    assert [st["name"] for st in top_segment(rows, stages, stand_out=False, share=0.25)[0]] == ["s4"]


def test_leave_one_out_on_the_committed_runs_keeps_the_shipped_rule() -> None:
    """A known answer from the committed benchmark (benchmarks/results): fitted on the other scenarios, the
    rule picks what the shipped rule picks in each held-out one, within 0.5 point of the best start and
    never below plain fine-tuning by more than its std. A change to the rule that breaks this must
    rerun the benchmark and say so."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import loso

    rows = loso.evaluate(loso.load())
    assert len(rows) >= 6
    for r in rows:
        assert r["pick"] == r["shipped_pick"], r["scenario"]
        assert r["best_choice_mean"] - r["pick_mean"] <= 0.005
        assert r["finetune_mean"] - r["pick_mean"] <= r["finetune_std"]


@pytest.fixture(scope="module")
def reports() -> dict[str, dict[str, Any]]:
    from plastic.pipelines.diagnose import diagnose

    return {"resnet": diagnose(RESNET, CALIB).to_dict(), "vit": diagnose(VIT_PT, CALIB).to_dict()}


def test_calibrated_on_the_samples(reports: dict[str, dict[str, Any]]) -> None:
    """The two shipped cases of the transfer benchmark: re-initialization helped the ResNet, not the ViT.
    The ResNet's one flagged layer (starved: layer4.0.conv1) lies in its top stage."""
    res, vit = reports["resnet"]["recommendation"], reports["vit"]["recommendation"]
    assert res["action"] == "reinit" and res["strategy"] == "from-block"
    assert res["options"] == {"from_block": "layer4.0"}
    assert {"layer4.0.conv1", "layer4.0.conv2"} <= set(res["layers"])
    assert all(la.startswith("layer4.") for la in res["layers"])
    assert vit["action"] == "finetune" and vit["layers"] == [] and "fine-tune as is" in vit["reason"]
    for doc in reports.values():
        sat = [la["metrics"] for la in doc["layers"] if la["metrics"].get("saturated_frac") is not None]
        assert sat and all(m["saturated_ref"] is not None for m in sat)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def test_auto_follows_the_piped_report(
    cli: Callable[..., Result], tmp_path: Path, reports: dict[str, dict[str, Any]]
) -> None:
    """The report on stdin, no checkpoint named (in-process with a file as stdin; the same through a
    real shell pipe: tests/test_reinit.py::test_shell_pipeline)."""
    doc = reports["resnet"]
    out, report = tmp_path / "auto.safetensors", tmp_path / "report.json"
    report.write_text(json.dumps(doc))
    proc = cli("reinit", "--strategy", "auto", "-o", out, "--json", stdin=report)
    assert proc.code == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    changed = {c["tensor"].rpartition(".")[0] for c in manifest["changed"]}
    layers = set(doc["recommendation"]["layers"])
    assert layers <= changed  # the segment's convs, plus the norms after them and the head
    assert all(m.startswith(("layer4.", "fc")) for m in changed), changed
    assert "as the report recommends" in proc.stderr and "verdict:" not in proc.stderr  # said once
    # the same as asking for from-block at the recommended stage
    same = tmp_path / "from.safetensors"
    start = doc["recommendation"]["options"]["from_block"]
    proc2 = cli("reinit", RESNET, "--strategy", "from-block", "--from", start, "-o", same)
    assert proc2.code == 0, proc2.stderr
    a, b = _tensors(out), _tensors(same)
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
    from plastic.pipelines.reinit import reinit
    from plastic.reinit.strategies import Options

    res = reinit(RESNET, strategy="auto", output=None, options=Options(), report=doc, dry_run=True)
    layers = {c["tensor"].rpartition(".")[0] for c in res.changed}
    assert set(reports["resnet"]["recommendation"]["layers"]) <= layers


def test_diagnose_prints_the_recommendation(cli: Callable[..., Result]) -> None:
    r = cli("diagnose", VIT_PT, "--data", CALIB, env={"NO_COLOR": "1"})
    assert r.code == 0, r.stderr
    assert "verdict: fine-tune as is" in r.stdout and "why: no layer is saturated" in r.stdout


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

    from plastic.pipelines.reinit import reinit
    from plastic.reinit.strategies import Options

    auto = tmp_path / "auto.safetensors"
    reinit(RESNET, strategy="auto", output=auto, options=Options(), report=reports["resnet"])
    with safe_open(str(auto), framework="pt") as f:
        recorded = json.loads(f.metadata()["plastic.options"])
    assert recorded == {"value": "resample", "from_block": "layer4.0"}
    head = tmp_path / "head.safetensors"
    reinit(RESNET, strategy="head", output=head, options=Options())
    with safe_open(str(head), framework="pt") as f:
        assert json.loads(f.metadata()["plastic.options"]) == {"value": "resample"}
    with pytest.raises(UsageError, match="k, fraction do not apply to strategy=head"):  # not ignored
        reinit(
            RESNET, strategy="head", output=tmp_path / "h2.safetensors", options=Options(fraction=0.5, k=7)
        )
