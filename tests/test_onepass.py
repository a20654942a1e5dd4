"""The one data pass: statistics and the gradient probe from one forward, checked against answers
computed independently (plain autograd), against itself at other chunk sizes, and the null case of the
fresh reference (a checkpoint that *is* the seeded fresh init reads exactly like its reference)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

from plastic.measure.capture import SATURATION_SAMPLE, capture, sample_step
from plastic.measure.data_metrics import site_metrics
from plastic.measure.onepass import classifier_of, data_pass, random_labels
from plastic.model.modules import find_act_sites
from tests.conftest import CALIB


def _model() -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=5).eval()


def _batches(x: torch.Tensor, size: int):  # type: ignore[no-untyped-def]
    for start in range(0, len(x), size):
        idx = list(range(start, min(start + size, len(x))))
        yield idx, x[idx], []


def test_grad_ratio_equals_plain_autograd() -> None:
    """||mean dL/dW|| / ||W|| from the pass equals the same probe written out by hand."""
    model = _model()
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    y = random_labels(12, 3)
    done = data_pass([model], _batches(x, 5), y, n_classes=10, seed=7, device=torch.device("cpu"), total=12)
    got = done.measured[0].grad_ratios

    ref = _model()
    feats = ref.forward_head(ref.forward_features(x), pre_logits=True)  # (12, D)
    torch.manual_seed(7)
    head = nn.Linear(feats.shape[1], 10)
    F.cross_entropy(head(feats), y).backward()
    for name, m in ref.named_modules():
        if isinstance(m, nn.Conv2d | nn.Linear) and m.weight.grad is not None:
            want = float(m.weight.grad.norm() / m.weight.detach().norm())
            assert got[name] is not None and math.isclose(got[name], want, rel_tol=1e-4), name
    assert got["fc"] is None  # the classifier is not on the probe's path


def test_chunks_and_batches_do_not_change_the_answer() -> None:
    model = _model()
    x = torch.randn(10, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    y = random_labels(10, 0)
    cpu = torch.device("cpu")
    a = data_pass([model], _batches(x, 10), y, n_classes=10, seed=0, device=cpu, total=10, chunk=10)
    b = data_pass([model], _batches(x, 4), y, n_classes=10, seed=0, device=cpu, total=10, chunk=1)
    for name, ga in a.measured[0].grad_ratios.items():
        gb = b.measured[0].grad_ratios[name]
        assert (ga is None) == (gb is None)
        if ga is not None and gb is not None:
            assert math.isclose(ga, gb, rel_tol=1e-4), name
    sa, sb = a.measured[0].capture.sites, b.measured[0].capture.sites
    for name in sa:
        ma, mb = site_metrics(sa[name], None), site_metrics(sb[name], None)
        assert ma["dormant_frac"] == mb["dormant_frac"]
        assert math.isclose(ma["feature_erank"] or 0, mb["feature_erank"] or 0, rel_tol=1e-6)


def test_the_pass_leaves_the_model_as_it_found_it() -> None:
    model = _model().train()
    model.fc.weight.requires_grad_(False)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    x = torch.randn(4, 3, 32, 32)
    data_pass([model], _batches(x, 4), random_labels(4, 0), n_classes=10, seed=0,
              device=torch.device("cpu"), total=4)  # fmt: skip
    assert model.training
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    assert all(p.grad is None for p in model.parameters())
    assert sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules()) == hooks


def test_unreadable_batches_are_counted_not_measured() -> None:
    model = _model()
    x = torch.randn(4, 3, 32, 32)
    batches = [([0, 1], x[:2], [(2, "broken")]), ([], None, [(3, "empty")]), ([4, 5], x[2:], [])]
    done = data_pass([model], batches, torch.zeros(6, dtype=torch.long), n_classes=10, seed=0,
                     device=torch.device("cpu"), total=6)  # fmt: skip
    assert done.used == [0, 1, 4, 5] and done.skipped == [(2, "broken"), (3, "empty")]


def test_classifier_of_distilled_and_headless_models() -> None:
    assert isinstance(classifier_of(timm.create_model("test_vit", num_classes=3)), nn.Linear)
    assert isinstance(classifier_of(timm.create_model("test_resnet", num_classes=0)), nn.Identity)
    assert classifier_of(nn.Sequential(nn.Linear(2, 2))) is None


def test_sample_stride_never_aliases() -> None:
    # 16 x 576 x 14 x 14: the plain stride 56 shares a factor 28 with the 196 positions of a map
    step = sample_step((16, 576, 14, 14))
    assert step >= math.ceil(16 * 576 * 196 / SATURATION_SAMPLE)
    assert all(math.gcd(step, b) == 1 for b in (14, 196, 576 * 196))
    positions = {(i * step) % 196 for i in range(16 * 576 * 196 // step)}
    assert len(positions) == 196  # every position of the map is visited
    assert sample_step((8, 10)) == 1


@pytest.mark.parametrize(
    ("shape", "unit_dim", "channels_last"),
    [((4, 6, 5, 5), 1, False), ((4, 6, 5, 5), 1, True), ((4, 7, 6), 2, False), ((4, 6), 1, False)],
)
def test_abs_sums_agree_with_the_plain_sum_in_every_layout(
    shape: tuple[int, ...], unit_dim: int, channels_last: bool
) -> None:
    """Whichever kernel the memory layout picks (an L1 norm for NCHW, summed |h| rows for units
    innermost), the sums are the plain ones, and a unit that never fired sums to exactly zero."""
    from plastic.measure.capture import _abs_sums

    h = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    h.select(unit_dim, 2).zero_()  # a dead unit
    if channels_last:
        h = h.contiguous(memory_format=torch.channels_last)
    others = tuple(d for d in range(h.dim()) if d != unit_dim)
    got = _abs_sums(h, unit_dim, others)
    assert got.shape == (shape[unit_dim],)
    torch.testing.assert_close(got, h.abs().sum(others))
    assert got[2].item() == 0.0 and bool((got[[0, 1, 3]] > 0).all())


def test_in_place_activation_reads_its_input() -> None:
    """SiLU(inplace=True) overwrites its input: the saturation must still be measured on the input."""

    def build(inplace: bool) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(3, 8, 3), nn.SiLU(inplace=inplace), nn.Flatten(), nn.LazyLinear(4))

    x = torch.randn(6, 3, 10, 10, generator=torch.Generator().manual_seed(0)) * 4
    out = []
    for inplace in (False, True):
        model = build(inplace)
        model(x[:1])
        sites = find_act_sites(model, x[:2])
        with torch.no_grad(), capture(model, sites) as cap:
            model(x)
        out.append(site_metrics(cap.sites["0"], model[1])["saturated_frac"])
    assert out[0] is not None and out[0] > 0 and out[0] == out[1]


@pytest.fixture(scope="module")
def fresh_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint that is exactly timm's fresh init of test_resnet with seed 0 (10 classes)."""
    from plastic.model.init_values import fresh_model

    model = fresh_model("test_resnet", 10, seed=0)
    path = tmp_path_factory.mktemp("fresh") / "fresh.safetensors"
    save_file(
        {k: v.contiguous() for k, v in model.state_dict().items()}, path, metadata={"arch": "test_resnet"}
    )
    return path


def test_reference_of_the_reference_is_itself(fresh_ckpt: Path) -> None:
    """The null case, exact: with --seed 0 the reference is the checkpoint itself, so every metric of
    every layer equals its reference value."""
    from plastic.pipelines.diagnose import diagnose

    rep = diagnose(fresh_ckpt, CALIB, max_images=16, seed=0, reference=True)
    assert rep.options["reference"] is True
    for la in rep.layers:
        assert la.reference, la.name
        for k, v in la.metrics.items():
            r = la.reference[k]
            assert (v is None) == (r is None), (la.name, k)
            if v is not None and r is not None:
                assert math.isclose(v, r, rel_tol=1e-6, abs_tol=1e-9), (la.name, k, v, r)
        assert la.score is not None and la.score <= 1e-6, (la.name, la.components)  # no excess at all
    assert rep.recommendation is not None and rep.recommendation.action == "finetune"


def test_reference_in_the_json_unless_turned_off(fresh_ckpt: Path, cli) -> None:  # type: ignore[no-untyped-def]
    plain = cli(
        "diagnose", fresh_ckpt, "--data", CALIB, "--max-images", "8", "--json", "-q", "--no-reference"
    )
    assert plain.code == 0, plain.stderr
    doc = json.loads(plain.stdout)
    assert doc["options"]["reference"] is False and all(la["reference"] is None for la in doc["layers"])
    assert set(doc["timing"]) >= {"build_s", "pass_s", "metrics_s", "total_s", "stats_s", "gradients_s"}
    t = doc["timing"]
    assert t["build_s"] + t["pass_s"] + t["metrics_s"] <= t["total_s"] + 1e-3
    assert any("--no-reference" in n for n in doc["notes"])
    ref = cli("diagnose", fresh_ckpt, "--data", CALIB, "--max-images", "8", "--json", "-q")
    assert ref.code == 0, ref.stderr
    layers = json.loads(ref.stdout)["layers"]
    assert all(isinstance(la["reference"], dict) and "dormant_frac" in la["reference"] for la in layers)


def test_a_model_measured_on_a_subset_reads_as_if_shown_only_those_images() -> None:
    """``subsets``: the second model sees 4 of 12 images; it reads as a pass over those 4 alone."""
    x = torch.randn(12, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    y = random_labels(12, 3)
    keep = [1, 4, 5, 9]
    cpu = torch.device("cpu")
    both = data_pass(
        [_model(), _model()], _batches(x, 5), y, n_classes=10, seed=0, device=cpu, total=12,
        subsets=(None, frozenset(keep)),
    )  # fmt: skip

    def only_kept():  # type: ignore[no-untyped-def]
        for start in range(0, len(keep), 3):
            idx = keep[start : start + 3]
            yield idx, x[idx], []

    alone = data_pass([_model()], only_kept(), y, n_classes=10, seed=0, device=cpu, total=12)
    sub, ref = both.measured[1], alone.measured[0]
    assert both.measured[0].images == 12 and sub.images == ref.images == 4
    for name, g in ref.grad_ratios.items():
        got = sub.grad_ratios[name]
        assert (g is None) == (got is None)
        if g is not None and got is not None:
            assert math.isclose(g, got, rel_tol=1e-4), name
    for name, site in ref.capture.sites.items():
        mine, want = site_metrics(sub.capture.sites[name], None), site_metrics(site, None)
        assert mine["dormant_frac"] == want["dormant_frac"], name
        assert math.isclose(mine["feature_erank"] or 0, want["feature_erank"] or 0, rel_tol=1e-5), name


def test_the_reference_on_fewer_images_keeps_the_null_case(fresh_ckpt: Path) -> None:
    """``reference_images``: the reference measures a class-spread subset, says so, leaves its ranks out;
    a checkpoint that is the fresh init still reads healthy. At or above the images used, the report is
    the full reference's."""
    from plastic.measure.onepass import reference_subset
    from plastic.pipelines.diagnose import diagnose

    rep = diagnose(fresh_ckpt, CALIB, max_images=20, seed=0, reference_images=10)
    assert any("measured 10 of the 20 images" in n for n in rep.notes)
    assert all(la.reference.get("feature_erank") is None for la in rep.layers if la.reference)
    assert any(la.reference.get("grad_ratio") for la in rep.layers)
    assert rep.recommendation is not None and rep.recommendation.action == "finetune"
    assert rep.options["reference_images"] == 10
    cal = rep.to_dict()["calibration"]
    assert cal["reference_images"] == 10 and cal["estimates"]["reference"].startswith("10 of the 20 images")
    assert set(cal["estimates"]) == {"saturated_frac", "saturated_ref", "reference"}
    docs = [
        diagnose(fresh_ckpt, CALIB, max_images=20, seed=0, reference_images=r).to_dict() for r in (None, 20)
    ]
    for d in docs:
        d.pop("timing")  # type: ignore[misc]
        d["options"].pop("reference_images")
        assert d["calibration"]["reference_images"] == 20 and "reference" not in d["calibration"]["estimates"]
    assert docs[0] == docs[1]
    labels = [c for c in range(10) for _ in range(8)]
    picked = reference_subset(labels, 80, 16, seed=0)
    assert picked is not None and len(picked) == 16 and {labels[i] for i in picked} == set(range(10))
    assert reference_subset(labels, 80, 80, seed=0) is None


@pytest.mark.parametrize(("value", "error"), [(0, "UsageError"), (-3, "UsageError"), ("8", "TypeError")])
def test_reference_images_checked(fresh_ckpt: Path, value: object, error: str) -> None:
    from plastic import PlasticError
    from plastic.pipelines.diagnose import diagnose

    with pytest.raises((PlasticError, TypeError)) as info:
        diagnose(fresh_ckpt, CALIB, max_images=8, reference_images=value)  # type: ignore[arg-type]
    assert type(info.value).__name__ == error and "reference_images" in str(info.value)
