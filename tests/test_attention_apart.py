"""Attention entropy measured apart from the graph: what decides it, and that it measures the same.

A ViT at 768 px (2,304 tokens) used to keep 3 GB of attention probabilities per image in the pass's
graph and was killed by the kernel; the pass now keeps fused attention there and measures the entropy
in forwards without a graph. These tests pin the decision's inputs to known answers and check that
both ways give the same statistics on a real timm ViT.
"""

from __future__ import annotations

import pytest
import timm
import torch

import plastic.measure.onepass as onepass
from plastic.measure.capture import (
    ATTENTION_SHARE,
    attention_apart,
    attention_bytes,
    capture,
    device_memory,
)
from plastic.measure.onepass import data_pass

CPU = torch.device("cpu")


def _vit() -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model("test_vit", pretrained=False, num_classes=3).eval()


def test_attention_bytes_is_heads_times_tokens_squared_per_block() -> None:
    model = _vit()
    tokens = model.patch_embed.num_patches + model.num_prefix_tokens  # 100 patches + the class token
    expected = sum(blk.attn.num_heads * tokens * tokens * 4 for blk in model.blocks)  # float32 probs
    assert attention_bytes(model, torch.randn(3, 3, 160, 160)) == expected
    assert all(blk.attn.fused_attn for blk in model.blocks)  # restored
    assert all(not m._forward_pre_hooks for m in model.modules())


def test_attention_bytes_is_zero_without_attention() -> None:
    model = timm.create_model("test_resnet", pretrained=False).eval()
    calls: list[int] = []
    model.register_forward_pre_hook(lambda _m, _i: calls.append(1))
    assert attention_bytes(model, torch.randn(1, 3, 64, 64)) == 0
    assert calls == []  # no attention: no forward spent finding out


def test_the_decision_is_a_share_of_the_device_memory() -> None:
    total = device_memory(CPU)
    assert total > 1 << 28  # a machine that runs this suite has more than 256 MiB
    share = total // ATTENTION_SHARE
    assert not attention_apart(share, 1, CPU)
    assert attention_apart(share, 2, CPU)
    assert attention_apart(share // 4 + 1, 4, CPU) and not attention_apart(share // 4, 4, CPU)


def test_apart_keeps_fused_attention_in_the_graph_forward() -> None:
    model = _vit()
    x = torch.randn(2, 3, 160, 160)
    with capture(model, {}, apart=True) as cap:
        assert all(blk.attn.fused_attn for blk in model.blocks)
        model(x).sum().backward()
        assert all(s.rows == 0 for s in cap.attention.values())  # the fused forward forms no probs
        assert cap.attention_pass is not None
        cap.attention_pass(x)
        assert all(s.rows == 2 * 2 * 101 for s in cap.attention.values())  # images x heads x queries
        assert all(blk.attn.fused_attn for blk in model.blocks)
    with capture(model, {}) as cap:
        assert cap.attention_pass is None
        assert not any(blk.attn.fused_attn for blk in model.blocks)  # in the graph: unfused
    assert all(blk.attn.fused_attn for blk in model.blocks)
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def _pass(model: torch.nn.Module, x: torch.Tensor) -> onepass.Measured:
    labels = torch.arange(len(x)) % 3
    batches = [(list(range(len(x))), x, [])]
    return data_pass(
        [model], batches, labels, n_classes=3, seed=0, device=CPU, total=len(x), chunk=4
    ).measured[0]


def test_apart_measures_what_the_graph_measured(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same 6 images, chunks of 4, both ways: the same entropy, the same site sums and gradients
    (up to fused against unfused attention's float rounding)."""
    x = torch.randn(6, 3, 160, 160, generator=torch.Generator().manual_seed(1))
    graph = _pass(_vit(), x)
    assert graph.capture.attention_pass is None
    monkeypatch.setattr(onepass, "attention_apart", lambda *_a: True)
    apart = _pass(_vit(), x)
    assert apart.capture.attention_pass is not None
    assert set(apart.capture.attention) == set(graph.capture.attention) and graph.capture.attention
    for name, g in graph.capture.attention.items():
        a = apart.capture.attention[name]
        assert a.rows == g.rows == 6 * 2 * 101
        assert float(a.total) == pytest.approx(float(g.total), rel=1e-5)  # type: ignore[arg-type]
    for name, g in graph.capture.sites.items():
        a = apart.capture.sites[name]
        assert a.count == g.count
        assert torch.allclose(a.abs_sum, g.abs_sum, rtol=1e-4, atol=1e-6)  # type: ignore[arg-type]
    for name, r in graph.grad_ratios.items():
        assert apart.grad_ratios[name] == pytest.approx(r, rel=1e-3, abs=1e-9)
