"""The reference's seed-to-seed spread (issue 29 item 5): what it measures, how the score uses it, and
that diagnose measures it on the draws it names, alike for a file and a live model."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pytest
import timm
import torch

import plastic
from plastic.decide import score
from plastic.decide.score import STARVED_DECADES, STARVED_SLACK, components
from plastic.measure.spread import SPREAD_DRAWS, SPREAD_IMAGES, layer_spread, spread_images, spread_seeds
from plastic.pipelines.diagnose import diagnose
from tests.conftest import CALIB, RESNET


def test_the_spread_is_the_standard_deviation_over_the_draws_of_each_statistic() -> None:
    body = ["a", "b", "c"]

    def draw(a: float, dormant: float, b: float, c: float, head: float) -> dict[str, dict[str, float]]:
        return {"a": {"grad_ratio": a, "dormant_frac": dormant}, "b": {"grad_ratio": b},
                "c": {"grad_ratio": c}, "head": {"grad_ratio": head}}  # fmt: skip

    # grad ratios relative to each draw's median body layer: the head's is not in the median
    draws = [
        draw(1.0, 0.1, 10.0, 100.0, 1e6),
        draw(2.0, 0.2, 20.0, 200.0, 1e9),
        draw(10.0, 0.3, 10.0, 100.0, 1.0),
    ]
    got = layer_spread(draws, body)
    # a: log10(1/10), log10(2/20), log10(10/10) = -1, -1, 0
    assert got["a"]["grad_decades"] == pytest.approx(statistics.stdev([-1.0, -1.0, 0.0]))
    assert got["a"]["dormant_frac"] == pytest.approx(0.1)
    assert got["b"]["grad_decades"] == pytest.approx(0.0, abs=1e-12)  # a draw twice as large: the same place
    assert got["a"]["saturated_frac"] is None and got["b"]["dormant_frac"] is None  # not measured: none
    one = [{"z": {"grad_ratio": 0.0}}, {"z": {"grad_ratio": 0.0}}, {"z": {"grad_ratio": 3.0}}]
    assert layer_spread(one, ["z"])["z"]["grad_decades"] is None  # one draw with gradient: no spread


def test_the_draws_seeds_and_images() -> None:
    assert len(spread_seeds(0)) == SPREAD_DRAWS - 1 and 0 not in spread_seeds(0)
    assert not set(spread_seeds(0)) & set(range(10_000))  # far from the seeds a fresh checkpoint gets
    labels = [i // 20 for i in range(80)]  # four classes of 20
    idx = spread_images(labels, 80, seed=0)
    assert len(idx) == SPREAD_IMAGES and idx == sorted(idx)
    assert sorted({labels[i] for i in idx}) == [0, 1, 2, 3]  # every class
    assert spread_images(labels, 80, seed=0) == idx and spread_images(None, 5, 0) == [0, 1, 2, 3, 4]


def test_a_layer_may_differ_from_the_reference_by_its_own_spread() -> None:
    """0.8 decade less gradient than the fresh layer: starved beyond the 0.25 slack with no spread, less
    so with a wide one, not at all with a wider one; a spread under the slack changes nothing."""
    metrics = {"grad_ratio": 10**-0.8}
    ref = {"grad_ratio": 1.0}

    def starved(spread: float | None) -> float:
        parts = components(metrics, rank_ceiling=4, grad_median=1.0, reference=ref, ref_grad_median=1.0,
                           spread={"grad_decades": spread})  # fmt: skip
        return parts["starved"]

    assert starved(None) == pytest.approx((0.8 - STARVED_SLACK) / STARVED_DECADES)
    assert starved(0.05) == starved(None)  # 2 sqrt(2) 0.05 < 0.25: the slack stands
    allowance = score.SPREAD_Z * math.sqrt(2) * 0.15
    assert STARVED_SLACK < allowance < 0.8
    assert starved(0.15) == pytest.approx((0.8 - allowance) / STARVED_DECADES)
    assert 0 < starved(0.15) < starved(None)
    assert starved(2.0) == 0.0


def test_a_dormant_fraction_within_the_layers_spread_is_not_an_excess() -> None:
    """A 512-unit layer 30% dormant against a fresh 5%: far beyond the binomial noise, unless the fresh
    layer itself is that variable from draw to draw (units that do not toss independent coins)."""
    kw = {"rank_ceiling": 4, "grad_median": None, "reference": {"dormant_frac": 0.05}, "units": 512}
    plain = components({"dormant_frac": 0.3}, **kw)["dormant"]  # type: ignore[arg-type]
    assert plain > 0.2
    wide = components({"dormant_frac": 0.3}, **kw, spread={"dormant_frac": 0.3})["dormant"]  # type: ignore[arg-type]
    assert wide == 0.0
    assert components({"dormant_frac": 0.3}, **kw, spread={"dormant_frac": None})["dormant"] == plain  # type: ignore[arg-type]


def test_with_the_spread_off_the_score_is_the_one_before_it(monkeypatch: pytest.MonkeyPatch) -> None:
    report = diagnose(RESNET, CALIB, max_images=16, device="cpu", cache=False)
    assert all(set(la.reference_spread) == {"grad_decades", "dormant_frac", "saturated_frac"}
               for la in report.layers if la.reference)  # fmt: skip
    assert any((la.reference_spread.get("grad_decades") or 0) > 0 for la in report.layers)
    assert report.timing["spread_s"] > 0
    monkeypatch.setattr(score, "SPREAD_Z", 0.0)
    off = diagnose(RESNET, CALIB, max_images=16, device="cpu", cache=False)
    for la, lb in zip(report.layers, off.layers, strict=True):
        assert (la.score or 0) <= (lb.score or 0) + 1e-12  # the spread only ever widens the allowance
        bare = components(
            lb.metrics, rank_ceiling=16, grad_median=None, reference=lb.reference, units=lb.units
        )
        if "dormant" in bare:
            assert lb.components["dormant"] == bare["dormant"]  # z 0: the binomial noise alone


def test_the_spread_is_measured_on_the_draws_it_names() -> None:
    """The known answer: the spread of one layer recomputed by hand from the three fresh draws (the
    reference's seed and the two ``spread_seeds``) measured by ``diagnose_model`` on the same 16 images."""
    torch.manual_seed(7)
    model = timm.create_model("test_resnet", num_classes=4)
    images = torch.randn(24, 3, 32, 32)
    labels = [i % 4 for i in range(24)]
    report = plastic.diagnose_model(model, images, labels=labels, seed=3)
    idx = spread_images(labels, 24, 3)
    by_hand = []
    for s in [3, *spread_seeds(3)]:
        torch.manual_seed(s)
        draw = timm.create_model("test_resnet", num_classes=4)
        # the draw diagnosed against itself on the spread's images: its own grad ratios
        few = [labels[i] for i in idx]
        rep = plastic.diagnose_model(draw, images[idx], labels=few, seed=3, reference=False)
        by_hand.append({la.name: la.metrics for la in rep.layers})
    body = [la.name for la in report.layers if not la.classifier]
    expected = layer_spread(by_hand, body)
    for la in report.layers:
        for k, v in expected[la.name].items():
            got = la.reference_spread[k]
            assert (got is None) == (v is None), (la.name, k)
            assert v is None or got == pytest.approx(v, rel=1e-4, abs=1e-9), (la.name, k)


def test_no_reference_no_spread(tmp_path: Path) -> None:
    doc = diagnose(RESNET, CALIB, max_images=8, device="cpu", reference=False, cache=False).to_dict()
    assert all(la["reference_spread"] is None for la in doc["layers"])
    assert doc["timing"]["spread_s"] == 0.0


def test_the_spread_runs_beside_a_reference_on_fewer_images() -> None:
    """--reference-images gives the reference a subset in the main pass; the spread's own passes (one
    model each) are not bound by it, in the file and the live pipeline alike."""
    file_doc = diagnose(RESNET, CALIB, max_images=24, device="cpu", reference_images=8, cache=False).to_dict()
    torch.manual_seed(7)
    live = plastic.diagnose_model(
        timm.create_model("test_resnet", num_classes=4), torch.randn(24, 3, 32, 32),
        labels=[i % 4 for i in range(24)], reference_images=8,
    )  # fmt: skip
    for layers in (file_doc["layers"], [la.__dict__ for la in live.layers]):
        assert any((la["reference_spread"] or {}).get("grad_decades") for la in layers)
