"""``plastic inspect`` on every sample and container: JSON schema, metrics, table, markdown, filters."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from plastic.measure.weight_stats import stable_rank, tensor_metrics
from plastic.pipelines.inspect import inspect_checkpoint
from tests.conftest import MOBILENET, RESNET, VIT_PT, Result, run_light, run_subprocess

SAMPLES = [RESNET, VIT_PT, MOBILENET]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_json_schema_on_samples(cli: Callable[..., Result], path: Path) -> None:
    res = cli("inspect", path, "--json")
    assert res.code == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["schema_version"] == 2 and doc["command"] == "inspect"
    assert set(doc["checkpoint"]) >= {"path", "format", "size_bytes", "container_key", "metadata"}
    assert set(doc["arch"]) == {"name", "source", "candidates", "certainty"}
    assert set(doc["totals"]) == {"tensors", "parameters", "bytes", "dtypes"}
    assert doc["layers"], "no layers"
    for la in doc["layers"]:
        assert set(la) >= {"name", "params", "tensors", "metrics"}
        assert all(set(t) >= {"name", "shape", "dtype"} for t in la["tensors"])
    assert sum(doc["totals"]["dtypes"].values()) == doc["totals"]["tensors"]
    assert sum(len(la["tensors"]) for la in doc["layers"]) == doc["totals"]["tensors"]


@pytest.mark.parametrize(
    ("path", "arch"),
    [(RESNET, "test_resnet"), (VIT_PT, "test_vit"), (MOBILENET, "mobilenetv2_100")],
    ids=["resnet", "vit", "mobilenet"],
)
def test_parameter_count_matches_timm(path: Path, arch: str) -> None:
    import timm

    report = inspect_checkpoint(path, stats=False)
    num_classes = 1000 if arch == "mobilenetv2_100" else 10
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    assert report.totals.parameters == sum(p.numel() for p in model.parameters())
    assert report.checkpoint.arch == arch


def test_metrics_match_reference_numpy() -> None:
    gen = torch.Generator().manual_seed(1)
    w = torch.randn(64, 32, 3, 3, generator=gen)
    w[0, 0] = 1e-6  # some near-zero weights
    m = tensor_metrics(w)
    a = w.numpy().astype(np.float64).ravel()
    rms = np.sqrt(np.mean(a * a))
    assert m["abs_mean"] == pytest.approx(np.abs(a).mean(), rel=1e-5)
    assert m["std"] == pytest.approx(a.std(), rel=1e-5)
    assert m["l2"] == pytest.approx(np.linalg.norm(a), rel=1e-5)
    assert m["abs_max"] == pytest.approx(np.abs(a).max(), rel=1e-7)
    assert m["near_zero"] == pytest.approx(np.mean(np.abs(a) < 0.01 * rms))
    assert m["near_zero"] > 0
    s = np.linalg.svd(a.reshape(64, -1), compute_uv=False)
    assert m["weight_stable_rank"] == pytest.approx((s**2).sum() / s[0] ** 2, rel=1e-3)
    assert m["dead_norm_channels"] is None


@pytest.mark.parametrize("shape", [(300, 1200), (256, 2304), (2048, 64), (20, 20), (5, 300), (1, 40)])
def test_stable_rank_against_svd(shape: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(2)
    w = torch.randn(*shape, generator=gen)
    # a trained-looking spectrum: low-rank spike on top of noise
    w += (
        3
        * torch.randn(shape[0], 1, generator=gen)
        @ torch.randn(1, shape[1], generator=gen)
        / shape[1] ** 0.5
    )
    s = torch.linalg.svdvals(w.double())
    exact = float((s**2).sum() / s[0] ** 2)
    assert stable_rank(w) == pytest.approx(exact, rel=0.01)


def test_stable_rank_of_known_rank() -> None:
    # orthonormal rows scaled equally: every singular value equal, stable rank = rank
    q, _ = torch.linalg.qr(torch.randn(200, 50, generator=torch.Generator().manual_seed(3)))
    assert stable_rank(q.T.contiguous()) == pytest.approx(50, rel=1e-3)
    assert stable_rank(torch.zeros(10, 10)) == 0.0


def test_special_tensors() -> None:
    assert tensor_metrics(torch.zeros(8, 8))["near_zero"] == 1.0
    gain = torch.ones(10)
    gain[:3] = 1e-5
    assert tensor_metrics(gain, gain=True)["dead_norm_channels"] == pytest.approx(0.3)
    ints = tensor_metrics(torch.arange(10))
    assert all(v is None for v in ints.values())
    half = tensor_metrics(torch.full((4, 4), 2.0, dtype=torch.bfloat16))
    assert half["abs_mean"] == 2.0 and half["std"] == 0.0


def test_dead_norm_channels_in_checkpoint(tmp_path: Path) -> None:
    sd = load_file(RESNET)
    sd["layer1.0.bn1.weight"][:8] = 0.0  # 8 of 32 channels silenced
    p = tmp_path / "dead.safetensors"
    save_file(sd, p, metadata={"arch": "test_resnet"})
    report = inspect_checkpoint(p, layer_filter="layer1.0.bn1")
    (layer,) = report.layers
    assert layer.metrics is not None and layer.metrics["dead_norm_channels"] == pytest.approx(0.25)


def test_fp16_bf16_fp64_int_tensors(tmp_path: Path, cli: Callable[..., Result]) -> None:
    sd = load_file(RESNET)
    mixed = {}
    for i, (k, v) in enumerate(sd.items()):
        mixed[k] = v.to([torch.float16, torch.bfloat16, torch.float64][i % 3]) if v.is_floating_point() else v
    p = tmp_path / "mixed.safetensors"
    save_file(mixed, p)
    doc = json.loads(cli("inspect", p, "--json").stdout)
    assert set(doc["totals"]["dtypes"]) == {"float16", "bfloat16", "float64", "int64"}
    ref = {la["name"]: la for la in json.loads(cli("inspect", RESNET, "--json").stdout)["layers"]}
    for la in doc["layers"]:
        for t in la["tensors"]:
            if t["dtype"] == "int64":
                assert t["metrics"] is None
        if la["metrics"] and la["metrics"]["l2"]:
            assert la["metrics"]["l2"] == pytest.approx(ref[la["name"]]["metrics"]["l2"], rel=1e-2)


def test_no_stats_reads_no_data(cli: Callable[..., Result]) -> None:
    doc = json.loads(cli("inspect", RESNET, "--no-stats", "--json").stdout)
    assert all(la["metrics"] is None for la in doc["layers"])
    assert all("metrics" not in t for la in doc["layers"] for t in la["tensors"])


def test_header_only_inspect_does_not_import_torch() -> None:
    assert json.loads(run_light("inspect", "--no-stats", "--json", RESNET))["totals"]["tensors"] > 0


@pytest.mark.parametrize("args", [["--help"], ["inspect", "--help"]])
def test_help_does_not_import_torch(args: list[str]) -> None:
    assert "Usage" in run_light(*args)


def test_filter(cli: Callable[..., Result]) -> None:
    doc = json.loads(cli("inspect", RESNET, "--json", "--filter", "layer2.*").stdout)
    names = [la["name"] for la in doc["layers"]]
    assert names and all(n.startswith("layer2.") for n in names)
    assert doc["totals"]["tensors"] > sum(len(la["tensors"]) for la in doc["layers"])  # totals: whole file


def test_table_and_markdown(cli: Callable[..., Result]) -> None:
    res = cli("inspect", VIT_PT)
    assert res.code == 0 and res.stderr == ""
    assert "blocks.0.attn.qkv" in res.stdout and "state_dict" in res.stdout and "w_srank" in res.stdout
    assert "\x1b[" not in res.stdout  # not a terminal: no escape codes
    md = cli("inspect", MOBILENET, "--format", "markdown").stdout
    lines = md.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| layer"))
    assert lines[header + 1].startswith("|---")
    assert sum(1 for line in lines if line.startswith("| ")) == 1 + len(
        json.loads(cli("inspect", MOBILENET, "--json", "--no-stats").stdout)["layers"]
    )


def test_subprocess_pipe_is_clean() -> None:
    res = run_subprocess("inspect", RESNET, "--json", env={"NO_COLOR": "1"})
    assert res.code == 0, res.stderr
    json.loads(res.stdout)
    assert res.stderr == ""


def test_batch_metrics_equal_single_tensor_metrics() -> None:
    from plastic.measure.weight_stats import SMALL, batch_metrics

    gen = torch.Generator().manual_seed(4)
    items = [
        (torch.randn(64, generator=gen), True),
        (torch.zeros(16), True),
        (torch.randn(8, 4, 3, 3, generator=gen), False),
        (torch.randn(SMALL + 5, generator=gen), False),  # large: the single-tensor path
        (torch.arange(6), False),
        (torch.empty(0), False),
        (torch.randn(10, 10, generator=gen).to(torch.bfloat16), False),
        (torch.randn(33, 50, generator=gen, dtype=torch.float64), False),
    ]
    for (t, gain), got in zip(items, batch_metrics(items), strict=True):
        want = tensor_metrics(t, gain=gain)
        assert set(got) == set(want)
        for k, v in want.items():
            assert (got[k] is None) == (v is None), k
            if v is not None:
                assert got[k] == pytest.approx(v, rel=1e-5, abs=1e-9), k


def test_skip_metric(cli: Callable[..., Result]) -> None:
    doc = json.loads(cli("inspect", RESNET, "--json", "--skip", "weight_stable_rank").stdout)
    conv = next(la for la in doc["layers"] if la["name"] == "layer1.0.conv1")
    assert conv["metrics"]["weight_stable_rank"] is None and conv["metrics"]["l2"] > 0
    default = json.loads(cli("inspect", RESNET, "--json").stdout)  # opt-in: the costly one is off
    conv_default = next(la for la in default["layers"] if la["name"] == "layer1.0.conv1")
    assert conv_default["metrics"]["weight_stable_rank"] is None and conv_default["metrics"]["l2"] > 0
    full = json.loads(cli("inspect", RESNET, "--json", "--stable-rank").stdout)
    conv_full = next(la for la in full["layers"] if la["name"] == "layer1.0.conv1")
    assert conv_full["metrics"]["weight_stable_rank"] > 1
    assert cli("inspect", RESNET, "--skip", "nope").code == 2


def test_full_stats_inspect_of_safetensors_never_imports_torch(tmp_path: Path) -> None:
    """The statistics run in numpy on the file's bytes, bfloat16 and float16 included."""

    from safetensors.torch import save_file

    torch.manual_seed(0)
    tensors = {
        "a.weight": torch.randn(64, 32),
        "b.weight": torch.randn(64, 32).half(),
        "c.weight": torch.randn(64, 32).bfloat16(),
        "d.weight": torch.randn(8, 4, 3, 3).double(),
        "n.weight": torch.ones(16),
    }
    path = tmp_path / "mixed.safetensors"
    save_file(tensors, str(path))
    stdout = run_light("inspect", "--json", "--stable-rank", path)
    got = {t["name"]: t["metrics"] for la in json.loads(stdout)["layers"] for t in la["tensors"]}
    for name, t in tensors.items():
        x = t.double().reshape(-1)
        assert got[name]["abs_mean"] == pytest.approx(float(x.abs().mean()), rel=1e-5)
        assert got[name]["l2"] == pytest.approx(float(x.norm()), rel=1e-5)
        assert got[name]["abs_max"] == pytest.approx(float(x.abs().max()), rel=1e-6)
        if t.dim() >= 2:
            s = torch.linalg.svdvals(t.double().reshape(t.shape[0], -1))
            assert got[name]["weight_stable_rank"] == pytest.approx(float((s**2).sum() / s[0] ** 2), rel=1e-3)
