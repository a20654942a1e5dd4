"""Reading every checkpoint container we promise, built from the real samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from plastic.errors import UsageError
from plastic.files.checkpoint import open_checkpoint
from tests.conftest import MOBILENET, RESNET, VIT_PT


@pytest.fixture(scope="module")
def resnet_sd() -> dict[str, torch.Tensor]:
    return load_file(RESNET)


def _assert_same(ckpt_path: Path, sd: dict[str, torch.Tensor], **kw: str) -> None:
    with open_checkpoint(ckpt_path, **kw) as ckpt:
        assert sorted(t.name for t in ckpt.tensors) == sorted(sd)
        for info, tensor in ckpt.iter_tensors():
            ref = sd[info.name]
            assert info.shape == tuple(ref.shape)
            assert info.dtype == str(ref.dtype).removeprefix("torch.")
            assert info.nbytes == ref.numel() * ref.element_size()
            assert torch.equal(tensor, ref)


def test_safetensors_with_metadata() -> None:
    with open_checkpoint(RESNET) as ckpt:
        assert ckpt.format == "safetensors"
        assert ckpt.arch == "test_resnet" and ckpt.arch_source == "metadata"
        assert ckpt.metadata["input_size"] == "3,32,32"
        assert ckpt.size_bytes == RESNET.stat().st_size


def test_safetensors_without_metadata(tmp_path: Path, resnet_sd: dict[str, torch.Tensor]) -> None:
    p = tmp_path / "plain.safetensors"
    save_file(resnet_sd, p)
    _assert_same(p, resnet_sd)
    with open_checkpoint(p) as ckpt:
        assert ckpt.metadata == {} and ckpt.arch is None
    with open_checkpoint(p, arch="test_resnet") as ckpt:
        assert (ckpt.arch, ckpt.arch_source) == ("test_resnet", "option")


def _shard(tmp_path: Path, sd: dict[str, torch.Tensor]) -> Path:
    names = list(sd)
    half = len(names) // 2
    weight_map = {}
    for i, part in enumerate((names[:half], names[half:])):
        fname = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: sd[k] for k in part}, tmp_path / fname, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, fname))
    index = tmp_path / "model.safetensors.index.json"
    index.write_text(
        json.dumps({"metadata": {"total_size": 1, "arch": "test_resnet"}, "weight_map": weight_map})
    )
    return index


def test_sharded_index_and_folder(tmp_path: Path, resnet_sd: dict[str, torch.Tensor]) -> None:
    index = _shard(tmp_path, resnet_sd)
    with open_checkpoint(index) as ckpt:
        assert ckpt.format == "safetensors-sharded" and ckpt.arch == "test_resnet"
        assert len(ckpt.files) == 2
        assert {t.name for t in ckpt.tensors} == set(resnet_sd)
        for info, tensor in ckpt.iter_tensors():
            assert torch.equal(tensor, resnet_sd[info.name])
    with open_checkpoint(tmp_path) as ckpt:  # the folder that holds the index
        assert ckpt.format == "safetensors-sharded"


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pth.tar", ".bin", ".ckpt"])
def test_torch_bare_state_dict(tmp_path: Path, resnet_sd: dict[str, torch.Tensor], suffix: str) -> None:
    p = tmp_path / f"m{suffix}"
    torch.save(resnet_sd, p)
    _assert_same(p, resnet_sd)
    with open_checkpoint(p) as ckpt:
        assert ckpt.container_key is None and ckpt.format == "torch"


@pytest.mark.parametrize("key", ["state_dict", "model", "model_ema", "state_dict_ema"])
def test_torch_containers(tmp_path: Path, resnet_sd: dict[str, torch.Tensor], key: str) -> None:
    p = tmp_path / "train.pth.tar"
    torch.save({"epoch": 7, "arch": "test_resnet", key: resnet_sd}, p)
    _assert_same(p, resnet_sd)
    with open_checkpoint(p) as ckpt:
        assert ckpt.container_key == key
        assert (ckpt.arch, ckpt.arch_source) == ("test_resnet", "checkpoint")
        assert ckpt.metadata["epoch"] == "7"


def test_key_chooses_ema(tmp_path: Path, resnet_sd: dict[str, torch.Tensor]) -> None:
    ema = {k: v + 1 if v.is_floating_point() else v for k, v in resnet_sd.items()}
    p = tmp_path / "train.pt"
    torch.save({"state_dict": resnet_sd, "state_dict_ema": ema}, p)
    _assert_same(p, resnet_sd)  # the plain weights come first
    _assert_same(p, ema, key="state_dict_ema")
    with pytest.raises(UsageError, match="no entry 'nope'"):
        open_checkpoint(p, key="nope")


@pytest.mark.parametrize("prefix", ["module.", "_orig_mod.", "module._orig_mod."])
def test_wrapper_prefixes_stripped(tmp_path: Path, resnet_sd: dict[str, torch.Tensor], prefix: str) -> None:
    p = tmp_path / "ddp.pt"
    torch.save({"state_dict": {prefix + k: v for k, v in resnet_sd.items()}}, p)
    _assert_same(p, resnet_sd)
    with open_checkpoint(p) as ckpt:
        assert set(ckpt.stripped_prefixes) == set(filter(None, (s + "." for s in prefix.split(".") if s)))
        assert ckpt.tensors[0].key.startswith(prefix)


def test_legacy_torch_format(tmp_path: Path, resnet_sd: dict[str, torch.Tensor]) -> None:
    p = tmp_path / "old.pth"
    torch.save(resnet_sd, p, _use_new_zipfile_serialization=False)
    _assert_same(p, resnet_sd)


def test_training_checkpoint_sample() -> None:
    with open_checkpoint(VIT_PT) as ckpt:
        assert ckpt.container_key == "state_dict"
        assert ckpt.arch == "test_vit"
        assert "optimizer" not in ckpt.metadata
        assert any(t.name == "cls_token" for t in ckpt.tensors)


def test_mobilenet_sample_loads_strictly_in_timm() -> None:
    import timm

    model = timm.create_model("mobilenetv2_100", pretrained=False)
    with open_checkpoint(MOBILENET) as ckpt:
        assert ckpt.arch == "mobilenetv2_100"
        model.load_state_dict({i.name: t for i, t in ckpt.iter_tensors()}, strict=True)


def test_mixed_dtypes(tmp_path: Path) -> None:
    sd = {
        "a.weight": torch.randn(4, 3, dtype=torch.float16),
        "a.bias": torch.randn(4, dtype=torch.bfloat16),
        "b.weight": torch.randn(2, 2, dtype=torch.float64),
        "b.num_batches_tracked": torch.tensor(5),
        "c.mask": torch.tensor([True, False, True]),  # odd length: the next tensor is misaligned
        "c.weight": torch.randn(3, 3),
        "empty": torch.empty(0, 4),
    }
    p = tmp_path / "mixed.safetensors"
    save_file(sd, p)
    _assert_same(p, sd)


def test_a_timm_train_checkpoint_is_read_named_by_its_args_and_written_back(cli: Any, tmp_path: Path) -> None:
    """What timm's train.py saves (``checkpoint-N.pth.tar``): the weights beside an EMA, the optimizer,
    ``arch`` holding the model's class name ('resnet', which names no model) and the run's arguments as
    an ``argparse.Namespace``. Read with weights_only=True (the Namespace is plain data); the model named
    by ``args.model``; without it, recognised from the tensors with a note; the output keeps the
    arguments and says which training state it left out."""
    import argparse

    sd = load_file(RESNET)
    moments = {
        "state": {0: {"momentum_buffer": torch.zeros(3)}},
        "param_groups": [{"lr": 0.1, "params": [0]}],
    }
    saved = {"epoch": 3, "arch": "resnet", "state_dict": sd, "optimizer": moments, "version": 2,
             "args": argparse.Namespace(model="test_resnet", lr=0.1, mean=[0.5]), "state_dict_ema": sd,
             "metric": 71.2}  # fmt: skip
    p = tmp_path / "checkpoint-3.pth.tar"
    torch.save(saved, p)
    ckpt = open_checkpoint(p)
    assert (ckpt.arch, ckpt.arch_source, ckpt.container_key) == ("test_resnet", "checkpoint", "state_dict")
    ckpt.close()
    out = tmp_path / "out.pth.tar"
    r = cli("reinit", p, "-s", "head", "-o", out)
    assert r.code == 0, r.stderr
    assert "left out of the output: 'optimizer', 'state_dict_ema'" in r.stderr and "--keep-extra" in r.stderr
    with torch.serialization.safe_globals([argparse.Namespace]):
        back = torch.load(out, weights_only=True)
    assert back["args"] == saved["args"] and "optimizer" not in back and back["epoch"] == 3
    changed = {k for k in sd if not torch.equal(back["state_dict"][k], sd[k])}
    assert changed == {"fc.weight", "fc.bias"}
    del saved["args"]  # arch alone: a class name, so the tensors decide
    torch.save(saved, p)
    r = cli("reinit", p, "-s", "head", "-o", tmp_path / "out2.pth.tar")
    assert r.code == 0, r.stderr
    assert "the file records arch 'resnet', which names no model: recognised from its tensors" in r.stderr
