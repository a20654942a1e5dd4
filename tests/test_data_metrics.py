"""Data metrics on hand-built models whose answers are known in advance."""

from __future__ import annotations

import pytest
import timm
import torch
from torch import nn

from plastic.measure.capture import RANK_ROWS, FeatureRows, capture
from plastic.measure.data_metrics import dormant_frac, feature_ranks, gram_ranks, site_metrics
from plastic.model.modules import find_act_sites


def _measure(model: nn.Module, x: torch.Tensor) -> dict[str, dict[str, float | None]]:
    sites = find_act_sites(model, x)
    with torch.no_grad(), capture(model, sites) as cap:
        model(x)
    mods = dict(model.named_modules())
    return {name: site_metrics(site, mods.get(sites.get(name, ""))) for name, site in cap.sites.items()}


def test_forced_dead_units_read_dead_frac_one() -> None:
    conv = nn.Conv2d(3, 8, 3)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.fill_(-1.0)  # pre-activation -1 everywhere: ReLU output exactly 0
    model = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.LazyLinear(4))
    model(torch.randn(1, 3, 8, 8))  # materialise the lazy layer
    m = _measure(model, torch.randn(16, 3, 8, 8))["0"]
    assert m["dead_frac"] == 1.0 and m["dormant_frac"] == 1.0
    assert m["saturated_frac"] == 1.0  # ReLU has zero slope on every negative input


def test_half_dead_units() -> None:
    lin = nn.Linear(4, 10)
    with torch.no_grad():
        lin.bias[:5] = -1e3  # these five never fire
        lin.bias[5:] = 1e3  # these five always fire (derivative 1)
    model = nn.Sequential(lin, nn.ReLU())
    m = _measure(model, torch.randn(32, 4))["0"]
    assert m["dead_frac"] == 0.5 and m["dormant_frac"] == 0.5
    assert m["saturated_frac"] == pytest.approx(0.5)


def test_dormant_threshold() -> None:
    # per-unit mean |h| = 1, 1, 1, 0.01: mean 0.7525, scores 1.33 x3 and 0.0133 <= 0.025
    abs_sum = torch.tensor([10.0, 10.0, 10.0, 0.1], dtype=torch.float64)
    assert dormant_frac(abs_sum, 10, tau=0.025) == 0.25
    assert dormant_frac(abs_sum, 10, tau=0.001) == 0.0
    assert dormant_frac(torch.zeros(3, dtype=torch.float64), 5) == 1.0


def test_saturated_tanh_reads_one_and_calm_tanh_reads_zero() -> None:
    # Known answer without sampling luck: the bias alone sets the pre-activation.
    lin = nn.Linear(8, 16)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias[:8] = 50.0  # tanh'(50) ~ 1e-43: flat
        lin.bias[8:] = -50.0
    m = _measure(nn.Sequential(lin, nn.Tanh()), torch.randn(64, 8))["0"]
    assert m["saturated_frac"] == 1.0
    calm = nn.Linear(8, 16)
    with torch.no_grad():
        calm.weight.mul_(1e-3)  # |pre-activation| < 0.01: tanh' ~ 1
    m = _measure(nn.Sequential(calm, nn.Tanh()), torch.randn(64, 8))["0"]
    assert m["saturated_frac"] == 0.0


def test_large_weights_saturate_most_of_a_tanh() -> None:
    gen = torch.Generator().manual_seed(0)
    lin = nn.Linear(8, 16)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(16, 8, generator=gen) * 1e3)
        lin.bias.zero_()
    m = _measure(nn.Sequential(lin, nn.Tanh()), torch.randn(64, 8, generator=gen))["0"]
    # |pre-activation| ~ N(0, 2.8e3): only draws within a few units of 0 stay responsive
    assert m["saturated_frac"] is not None and m["saturated_frac"] > 0.95


@pytest.mark.parametrize(
    ("act", "x", "expected"),
    [
        (nn.GELU(), -5.0, 1.0),  # GELU'(-5) ~ -1.5e-5: flat
        (nn.GELU(), 1.0, 0.0),
        (nn.SiLU(), -12.0, 1.0),
        (nn.Hardswish(), -4.0, 1.0),  # exactly flat below -3
        (nn.Hardswish(), 0.5, 0.0),
        (nn.Sigmoid(), 9.0, 1.0),
        (timm.layers.activations.GELUTanh(), -6.0, 1.0),
        (nn.ReLU(inplace=True), 2.0, 0.0),
    ],
)
def test_saturation_uses_the_modules_own_derivative(act: nn.Module, x: float, expected: float) -> None:
    lin = nn.Linear(3, 6)
    with torch.no_grad():
        lin.weight.zero_()
        lin.bias.fill_(x)
    m = _measure(nn.Sequential(lin, act), torch.randn(8, 3))["0"]
    assert m["saturated_frac"] == expected


def test_feature_rank_of_known_rank() -> None:
    gen = torch.Generator().manual_seed(0)
    q1, _ = torch.linalg.qr(torch.randn(100, 5, generator=gen, dtype=torch.float64))
    q2, _ = torch.linalg.qr(torch.randn(40, 5, generator=gen, dtype=torch.float64))
    feats = q1 @ q2.T  # (100, 40), rank 5, five equal singular values
    erank, srank = feature_ranks(feats)
    assert erank == pytest.approx(5.0, rel=1e-6) and srank == 5
    assert feature_ranks(torch.zeros(10, 4)) == (0.0, 0)


@pytest.mark.parametrize("rank", [12, 5])
def test_rows_folded_into_their_gram_keep_the_ranks(rank: int) -> None:
    """Past 2 x C' rows the rows become their Gram matrix: the same singular values, so the same ranks
    (a full-rank matrix to float64 rounding; a rank-deficient one to 1e-6, where the zero singular
    values come back as square roots of rounding, ~1e-8 of the largest)."""
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(60, rank, generator=gen) @ torch.randn(rank, 12, generator=gen)  # (60, 12)
    rows = FeatureRows(12, expect=60, device=torch.device("cpu"))
    for chunk in feats.split(4):  # 24 rows fill the buffer; the 25th folds it
        rows.add(chunk)
    assert rows.gram is not None and rows.buffer is None and rows.n == 60
    erank, srank = gram_ranks(rows.gram)
    want_erank, want_srank = feature_ranks(feats)
    assert erank == pytest.approx(want_erank, rel=1e-9 if rank == 12 else 1e-6)
    assert srank == want_srank <= rank


def test_what_a_site_keeps_does_not_grow_with_the_images() -> None:
    """The bytes a capture holds after 40 images and after 400 are the same (rows folded at 2 x C',
    saturation counted, not sampled and kept); the metrics still read every image."""

    def held(n: int) -> tuple[int, dict[str, float | None]]:
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 6, 3), nn.GELU())
        x = torch.randn(n, 3, 12, 12, generator=torch.Generator().manual_seed(1))
        sites = find_act_sites(model, x[:2])
        with torch.no_grad(), capture(model, sites, images=n) as cap:
            for xs in x.split(4):
                model(xs)
        site = cap.sites["0"]
        assert site.rows is not None and site.flat is not None
        tensors = [site.abs_sum, site.flat, site.rows.buffer, site.rows.gram]
        nbytes = sum(t.numel() * t.element_size() for t in tensors if t is not None)
        return nbytes, site_metrics(site, model[1])

    small, m40 = held(40)
    big, m400 = held(400)
    assert small == big == 8 * 4 + 8 + 8 * 8 * 8  # (8,) float32 sums, () int64 count, (8, 8) float64 Gram
    assert m400["saturated_frac"] is not None and 0.3 < m400["saturated_frac"] < 0.7  # ReLU on N(0, s)
    assert m40["feature_erank"] is not None and m400["feature_erank"] is not None


def _wide_rows(n: int, chunk: int, units: int = 200) -> tuple[FeatureRows, torch.Tensor]:
    """A wide site (``units`` > RANK_ROWS / 2) fed ``n`` rows whose first column is the image's index."""
    feats = torch.randn(n, units, generator=torch.Generator().manual_seed(3))
    feats[:, 0] = torch.arange(n, dtype=torch.float32)  # (N, C'): each row names its image
    rows = FeatureRows(units, expect=n, device=torch.device("cpu"))
    for part in feats.split(chunk):
        rows.add(part)
    return rows, feats


def test_a_wide_site_keeps_every_row_up_to_rank_rows_and_the_same_ranks() -> None:
    """Up to RANK_ROWS images a wide site keeps every row: its ranks are the exact ranks of all rows."""
    rows, feats = _wide_rows(RANK_ROWS, 32)
    assert rows.gram is None and rows.kept == RANK_ROWS
    assert torch.equal(rows.matrix(), feats)
    assert feature_ranks(rows.matrix()) == feature_ranks(feats)


def test_a_wide_site_holds_the_same_bytes_for_300_and_3000_images() -> None:
    small, _ = _wide_rows(300, 32)
    big, _ = _wide_rows(3000, 32)
    for rows in (small, big):
        assert rows.gram is None and rows.buffer is not None and rows.kept == RANK_ROWS
    assert small.buffer is not None and big.buffer is not None
    assert small.buffer.shape == big.buffer.shape == (RANK_ROWS, 200)


def test_the_sample_past_rank_rows_is_uniform_seeded_and_independent_of_the_batch() -> None:
    """Reservoir sampling keeps every image with probability K / N: a known answer on 4,096 rows."""
    n = 4096
    rows, feats = _wide_rows(n, 32)
    kept = rows.matrix()  # (RANK_ROWS, C')
    index = kept[:, 0].long()
    assert len(set(index.tolist())) == RANK_ROWS  # distinct images ...
    assert torch.equal(kept, feats[index])  # ... whose rows are kept whole
    # uniform over the images: the kept indices' mean is (N - 1) / 2 within 4 standard errors
    # (sd of a uniform index N / sqrt(12), sampled without replacement: about N / sqrt(12 * K))
    assert abs(index.double().mean().item() - (n - 1) / 2) < 4 * n / (12 * RANK_ROWS) ** 0.5
    assert 0.4 < (index < n // 2).double().mean().item() < 0.6
    again, _ = _wide_rows(n, 4)  # other batches, the same draws in the same order
    assert torch.equal(again.matrix(), kept)


def test_a_narrow_site_past_rank_rows_is_still_exact() -> None:
    """2 C' <= RANK_ROWS: the rows fold into their Gram matrix, every image counted."""
    feats = torch.randn(600, 40, generator=torch.Generator().manual_seed(4))
    rows = FeatureRows(40, expect=600, device=torch.device("cpu"))
    for part in feats.split(32):
        rows.add(part)
    assert rows.gram is not None and rows.kept == 600
    assert gram_ranks(rows.gram)[0] == pytest.approx(feature_ranks(feats)[0], rel=1e-9)


def test_the_report_names_the_ranks_as_estimates_past_rank_rows() -> None:
    from pathlib import Path

    from plastic.pipelines.report import Calibration, estimates

    def cal(n: int) -> Calibration:
        return Calibration(Path("calib"), n, n, [], "subfolders", ["a", "b"], reference_images=n)

    assert "feature_erank" not in estimates(cal(RANK_ROWS))
    named = estimates(cal(RANK_ROWS + 1))
    assert named["feature_erank"] == named["feature_srank99"]
    assert f"{RANK_ROWS} of the {RANK_ROWS + 1} images" in named["feature_erank"]


def test_the_saturation_count_equals_the_fraction_over_all_samples() -> None:
    """Counting flat derivatives call by call gives exactly the fraction over the samples pooled."""
    from plastic.measure.capture import flat_fraction, sample_step

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.Tanh())
    with torch.no_grad():
        model[0].weight.mul_(8)  # a good part of tanh's inputs saturated
    x = torch.randn(30, 16, generator=torch.Generator().manual_seed(2))
    got = _measure_chunked(model, x, 7)["0"]["saturated_frac"]
    pre = [model[0](xs).detach().reshape(-1) for xs in x.split(7)]
    pooled = torch.cat([p[:: sample_step((len(p) // 32, 32))] for p in pre])
    assert got == flat_fraction(model[1], pooled)


def _measure_chunked(model: nn.Module, x: torch.Tensor, chunk: int) -> dict[str, dict[str, float | None]]:
    sites = find_act_sites(model, x[:2])
    with torch.no_grad(), capture(model, sites, images=len(x)) as cap:
        for xs in x.split(chunk):
            model(xs)
    mods = dict(model.named_modules())
    return {name: site_metrics(site, mods.get(sites.get(name, ""))) for name, site in cap.sites.items()}


def test_feature_rank_through_a_layer() -> None:
    lin = nn.Linear(32, 24)
    with torch.no_grad():  # weight of rank 3 and no bias: outputs span 3 directions
        lin.weight.copy_(torch.randn(24, 3) @ torch.randn(3, 32))
        lin.bias.zero_()
    m = _measure(nn.Sequential(lin), torch.randn(50, 32))["0"]
    assert m["feature_srank99"] is not None and m["feature_srank99"] <= 3
    assert m["feature_erank"] is not None and 1.0 < m["feature_erank"] <= 3.0 + 1e-6


def test_attention_entropy_uniform_and_peaked() -> None:
    model = timm.create_model("test_vit", pretrained=False, num_classes=3).eval()
    x = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        for blk in model.blocks:
            blk.attn.qkv.weight[:128].zero_()  # q = k = 0 (bias too): uniform attention rows
            blk.attn.qkv.bias[:128].zero_()
    with torch.no_grad(), capture(model, {}) as cap:
        model(x)
    ent = {k: float(v.total) / v.rows for k, v in cap.attention.items() if v.total is not None}
    assert set(ent) == {f"blocks.{i}.attn.qkv" for i in range(len(model.blocks))}
    assert all(v == pytest.approx(1.0, abs=1e-5) for v in ent.values())
    with torch.no_grad():
        model.blocks[0].attn.qkv.weight[:128].normal_(0, 30.0)  # sharp, nearly one-hot rows
    with torch.no_grad(), capture(model, {}) as cap:
        model(x)
    peaked = cap.attention["blocks.0.attn.qkv"]
    assert float(peaked.total) / peaked.rows < 0.5


def test_capture_removes_hooks_and_restores_state_on_error() -> None:
    model = timm.create_model("test_vit", pretrained=False, num_classes=3).train()
    flags = [blk.attn.fused_attn for blk in model.blocks]
    with pytest.raises(RuntimeError), torch.no_grad(), capture(model, {}):
        model(torch.randn(1, 3, 160, 160))
        raise RuntimeError("boom")
    assert model.training
    assert [blk.attn.fused_attn for blk in model.blocks] == flags
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def test_activation_attribution_on_timm_models() -> None:
    cases = {
        "test_resnet": {"conv1.0": "conv1.2", "layer1.0.conv1": "layer1.0.act1"},
        "test_efficientnet": {"conv_stem": "bn1.act"},
        "test_vit": {"blocks.0.mlp.fc1": "blocks.0.mlp.act"},
        "test_convnext": {"stages.0.blocks.0.mlp.fc1": "stages.0.blocks.0.mlp.act"},
    }
    for arch, expected in cases.items():
        model = timm.create_model(arch, pretrained=False).eval()
        sites = find_act_sites(model, torch.randn(1, 3, 160, 160))
        for layer, act in expected.items():
            assert sites.get(layer) == act, (arch, layer, sites.get(layer))
        # a residual block's last activation belongs to its own conv, not to the shortcut's
        if arch == "test_resnet":
            assert all("downsample" not in layer for layer in sites)
