"""The per-tensor init replay: bit-exact against timm when replayed whole, the architecture's own init
when replayed per tensor, and a loud ReplayError (reinit then draws a full model) when it cannot be."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from torch import nn

from plastic.model.init_replay import ReplayError, record_init
from plastic.model.init_values import recorded_model
from plastic.pipelines.reinit import reinit
from plastic.reinit.strategies import Options
from tests.conftest import save_timm


@pytest.mark.parametrize(
    "arch",
    ["test_resnet", "test_vit", "test_efficientnet", "resnet18", "convnext_atto",
     "deit_tiny_distilled_patch16_224", "mobilenetv3_small_050", "regnetx_002"],
)  # fmt: skip
def test_whole_replay_is_timm_bit_for_bit(arch: str) -> None:
    rec = recorded_model(arch, 7)
    replayed = rec.replay_all(seed=11)
    torch.manual_seed(11)
    expected = timm.create_model(arch, pretrained=False, num_classes=7).state_dict()
    assert replayed.keys() == expected.keys()
    for name, value in expected.items():
        assert torch.equal(replayed[name], value), name
    assert all(p.is_meta for p in rec.model.parameters())  # the recording drew nothing itself


def test_per_tensor_values_follow_the_architectures_own_init() -> None:
    r = recorded_model("resnet18", 10)
    w = r.value("layer1.0.conv1.weight", seed=0)  # 64x64x3x3, kaiming normal, fan_out, relu
    assert float(w.std()) == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.03)
    assert torch.equal(r.value("layer1.0.bn2.weight", seed=0), torch.zeros(64))  # zero_init_last
    assert torch.equal(r.value("layer1.0.bn1.weight", seed=0), torch.ones(64))
    v = recorded_model("vit_tiny_patch16_224", 10)
    fc1 = v.value("blocks.0.mlp.fc1.weight", seed=0)  # 768x192, trunc normal std 0.02
    assert float(fc1.std()) == pytest.approx(0.02, rel=0.03)
    assert torch.equal(v.value("blocks.0.mlp.fc1.bias", seed=0), torch.zeros(768))
    assert float(v.value("cls_token", seed=0).std()) < 1e-5  # normal, std 1e-6


def test_a_tensors_value_depends_on_its_seed_and_name_only() -> None:
    r = recorded_model("test_vit", 10)
    alone = r.value("head.weight", seed=3)
    together = r.values(["blocks.0.attn.qkv.weight", "head.weight", "pos_embed"], seed=3)
    assert torch.equal(alone, together["head.weight"])
    assert torch.equal(alone, recorded_model("test_vit", 10).value("head.weight", seed=3))  # a new recording
    assert not torch.equal(alone, r.value("head.weight", seed=4))
    q0, q1 = r.value("blocks.0.attn.qkv.weight", seed=3), r.value("blocks.1.attn.qkv.weight", seed=3)
    assert not torch.equal(q0, q1)  # same init, separate streams


class _FromBigRealTensor(nn.Module):
    """A weight copied from a large CPU tensor made during construction: its origin is not replayable."""

    def __init__(self) -> None:
        super().__init__()
        self.small = nn.Linear(4, 4)
        self.table = nn.Parameter(torch.empty(2_000_000))
        big = torch.arange(2_000_000, dtype=torch.float32, device="cpu")  # too large to snapshot
        with torch.no_grad():
            self.table.copy_(big)


def test_unreplayable_origin_raises_before_anything_is_written() -> None:
    rec = record_init(_FromBigRealTensor)
    rec.check(["small.weight", "small.bias"])  # unaffected tensors still replay
    assert rec.value("small.weight", seed=0).shape == (4, 4)
    with pytest.raises(ReplayError):
        rec.check(["table"])


def test_reinit_replays_only_the_needed_tensors(tmp_path: Path) -> None:
    src = save_timm("test_vit", tmp_path / "vit.safetensors", num_classes=10)
    out = tmp_path / "out.safetensors"
    res = reinit(src, strategy="head", output=out, options=Options(seed=2))
    assert "replayed per tensor" in res.init_source and "init scheme 2" in res.init_source
    after = load_file(out)
    assert torch.equal(after["head.weight"], recorded_model("test_vit", 10).value("head.weight", seed=2))
    assert load_file(out).keys() == load_file(src).keys()


def test_reinit_draws_a_full_model_when_a_tensor_cannot_be_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plastic.model.init_replay import InitRecording
    from plastic.model.init_values import fresh_model

    def refuse(self: InitRecording, names: object) -> None:
        raise ReplayError("an operation on a tensor of unseen origin")

    monkeypatch.setattr(InitRecording, "check", refuse)
    src = save_timm("test_resnet", tmp_path / "r.safetensors", num_classes=10)
    out = tmp_path / "out.safetensors"
    res = reinit(src, strategy="head", output=out, options=Options(seed=4))
    assert "fresh model, seed 4" in res.init_source
    assert any("could not be replayed" in n for n in res.notes)
    assert torch.equal(
        load_file(out)["fc.weight"], fresh_model("test_resnet", 10, seed=4).state_dict()["fc.weight"]
    )


@pytest.mark.parametrize("arch", ["test_resnet", "convnext_atto", "mobilenetv3_small_050"])
def test_structure_probe_on_the_meta_model_equals_the_real_one(arch: str) -> None:
    from plastic.model.init_values import fresh_model
    from plastic.model.structure import analyse

    drawn: list[str] = []

    def materialise() -> nn.Module:
        drawn.append(arch)
        return fresh_model(arch, 10, seed=0)

    meta = analyse(recorded_model(arch, 10).model, materialise=materialise)
    real = analyse(fresh_model(arch, 10, seed=0))
    assert meta.norm_after == real.norm_after and meta.norm_after
    assert meta.consumers == real.consumers
    assert not drawn  # shapes and storages were enough
    layer = next(la for la, cs in real.consumers.items() if cs)
    assert meta.complete(layer, [0]) == real.complete(layer, [0])  # values needed: drawn now
    assert drawn == [arch]


@pytest.mark.parametrize(
    "arch", ["vit_tiny_patch16_224", "convnext_atto", "efficientnet_b0", "swin_tiny_patch4_window7_224"]
)
def test_shapes_only_meta_build_has_the_plain_builds_tensors(arch: str) -> None:
    """Skipping value-only in-place operations on meta changes no name, shape, dtype or stride."""
    from plastic.model.init_replay import MetaShapesOnly

    with torch.device("meta"):
        plain = timm.create_model(arch).state_dict()
    with torch.device("meta"), MetaShapesOnly():
        quick = timm.create_model(arch).state_dict()
    describe = [(k, v.shape, v.dtype, v.stride()) for k, v in plain.items()]
    assert describe == [(k, v.shape, v.dtype, v.stride()) for k, v in quick.items()]
