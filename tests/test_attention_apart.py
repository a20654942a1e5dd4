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


def _hf_vit() -> torch.nn.Module:
    import transformers

    torch.manual_seed(0)
    config = transformers.ViTConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        image_size=32, patch_size=8, num_labels=3,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config).eval()


def _tv_vit() -> torch.nn.Module:
    import torchvision

    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(  # a small torchvision ViT: 16 patches of 8 px
        image_size=32, patch_size=8, num_layers=2, num_heads=2, hidden_dim=32, mlp_dim=64, num_classes=3
    ).eval()


def _entropies(model: torch.nn.Module, x: torch.Tensor) -> dict[str, float]:
    with torch.no_grad(), capture(model, {}) as cap:
        model(x)
    return {k: float(v.total) / v.rows for k, v in cap.attention.items() if v.total is not None}


@pytest.mark.parametrize("family", ["transformers", "torchvision"])
def test_attention_entropy_of_other_families_uniform_and_peaked(family: str) -> None:
    """Known answers: q = k = 0 gives uniform rows (1.0); a query weight scaled up gives sharp rows."""
    model = _hf_vit() if family == "transformers" else _tv_vit()
    x = torch.randn(2, 3, 32, 32)
    if family == "transformers":
        blocks = model.vit.layers  # type: ignore[union-attr]
        queries = [(blk.attention.q_proj.weight, blk.attention.k_proj.weight) for blk in blocks]  # type: ignore[union-attr]
        names = [f"vit.layers.{i}.attention.q_proj" for i in range(2)]
        impl = model.config._attn_implementation
    else:
        blocks = model.encoder.layers  # type: ignore[union-attr]
        queries = [(blk.self_attention.in_proj_weight[:64], None) for blk in blocks]  # type: ignore[union-attr]
        names = [f"encoder.layers.encoder_layer_{i}.self_attention.out_proj" for i in range(2)]
    with torch.no_grad():
        for q, k in queries:
            q.zero_()
            if k is not None:
                k.zero_()
        for m in model.modules():  # biases of q and k too
            if family == "transformers" and hasattr(m, "q_proj"):
                m.q_proj.bias.zero_()
                m.k_proj.bias.zero_()
            if family == "torchvision" and isinstance(m, torch.nn.MultiheadAttention):
                m.in_proj_bias[:64].zero_()  # type: ignore[index]
    ent = _entropies(model, x)
    assert sorted(ent) == names
    assert all(v == pytest.approx(1.0, abs=1e-5) for v in ent.values())
    with torch.no_grad():
        q, k = queries[0]
        q.normal_(0, 30.0)
        if k is not None:
            k.normal_(0, 30.0)
        else:
            blocks[0].self_attention.in_proj_weight[32:64].normal_(0, 30.0)  # type: ignore[index]
    assert _entropies(model, x)[names[0]] < 0.5
    if family == "transformers":
        assert model.config._attn_implementation == impl  # the fast path is back
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


@pytest.mark.parametrize("family", ["transformers", "torchvision"])
def test_apart_equals_the_graph_in_other_families(family: str, monkeypatch: pytest.MonkeyPatch) -> None:
    make = _hf_vit if family == "transformers" else _tv_vit
    x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    graph = _pass(make(), x)
    monkeypatch.setattr(onepass, "attention_apart", lambda *_a: True)
    apart = _pass(make(), x)
    assert graph.capture.attention and set(apart.capture.attention) == set(graph.capture.attention)
    for name, g in graph.capture.attention.items():
        a = apart.capture.attention[name]
        assert a.rows == g.rows > 0
        assert float(a.total) == pytest.approx(float(g.total), rel=1e-5)  # type: ignore[arg-type]
    for name, r in graph.grad_ratios.items():
        assert apart.grad_ratios[name] == pytest.approx(r, rel=1e-3, abs=1e-9)


def test_slow_path_restored_when_the_pass_fails() -> None:
    model = _hf_vit()
    impl = model.config._attn_implementation
    with pytest.raises(RuntimeError), capture(model, {}):
        assert model.config._attn_implementation == "eager"
        raise RuntimeError("boom")
    assert model.config._attn_implementation == impl


def test_a_two_tower_config_gets_each_sub_config_value_back() -> None:
    """transformers' setter writes a config's value into its sub-configs: after the pass each one holds
    its own value again, also where they differed (a text tower left on eager, the vision on sdpa)."""
    import transformers

    from plastic.model.attention import AttentionSite

    vit = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
               image_size=32, patch_size=8)  # fmt: skip
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    config = transformers.CLIPConfig(vision_config=vit, text_config=text)
    config.vision_config._attn_implementation = "sdpa"
    config.text_config._attn_implementation = "eager"
    top = config._attn_implementation

    class Holder(torch.nn.Module):  # an attention module that reads the model's top config
        def __init__(self) -> None:
            super().__init__()
            self.config = config

    with AttentionSite(Holder(), "q_proj", "transformers").unfused():
        assert config.vision_config._attn_implementation == "eager"
    assert config._attn_implementation == top
    assert config.vision_config._attn_implementation == "sdpa"
    assert config.text_config._attn_implementation == "eager"
