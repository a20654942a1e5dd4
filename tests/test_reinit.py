"""``plastic reinit``: every strategy on real checkpoints; exactly the reported tensors change."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from plastic.files.checkpoint import open_checkpoint
from plastic.measure.defaults import DiagnoseOptions
from plastic.model.init_values import recorded_model
from plastic.pipelines.reinit import reinit
from plastic.reinit.strategies import Options, list_strategies
from tests.conftest import CALIB, MOBILENET, RESNET, VIT_PT, Result

ALL = [s.name for s in list_strategies()]


def _tensors(path: Path, key: str | None = None) -> dict[str, torch.Tensor]:
    with open_checkpoint(path, key=key) as ckpt:
        return {i.key: t.clone() for i, t in ckpt.iter_tensors()}


def _load_strict(path: Path, arch: str, num_classes: int) -> torch.nn.Module:
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    with open_checkpoint(path) as ckpt:
        model.load_state_dict({i.name: t for i, t in ckpt.iter_tensors()}, strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def vit_report() -> dict[str, Any]:
    from plastic.pipelines.diagnose import diagnose

    return diagnose(VIT_PT, CALIB, max_images=20).to_dict()


@pytest.fixture(scope="module")
def mobilenet_report() -> dict[str, Any]:
    from plastic.pipelines.diagnose import diagnose

    return diagnose(MOBILENET, CALIB, max_images=8, batch_size=8).to_dict()


@pytest.fixture(scope="module")
def resnet_report() -> dict[str, Any]:
    from plastic.pipelines.diagnose import diagnose

    return diagnose(RESNET, CALIB, max_images=20).to_dict()


def _run(src: Path, out: Path, strategy: str, report: dict[str, Any] | None = None, **opts: Any) -> Any:
    return reinit(src, strategy=strategy, output=out, options=Options(**opts), report=report)


LAST = {"test_resnet": "layer4", "test_vit": "blocks.5", "mobilenetv2_100": "blocks.6"}


def _opts(strategy: str, arch: str) -> dict[str, Any]:
    return {
        "layers": {"layers": [f"{LAST[arch]}.*"]},
        "from-block": {"from_block": LAST[arch]},
        "weights": {"fraction": 0.25},
    }.get(strategy, {})


@pytest.mark.parametrize("strategy", ALL)
@pytest.mark.parametrize("arch", ["test_resnet", "test_vit", "mobilenetv2_100"])
def test_every_strategy_changes_exactly_what_it_reports(
    tmp_path: Path, strategy: str, arch: str, request: pytest.FixtureRequest
) -> None:
    src = {"test_resnet": RESNET, "test_vit": VIT_PT, "mobilenetv2_100": MOBILENET}[arch]
    fixture = {
        "test_resnet": "resnet_report",
        "test_vit": "vit_report",
        "mobilenetv2_100": "mobilenet_report",
    }
    report = request.getfixturevalue(fixture[arch])
    out = tmp_path / ("out.pt" if arch == "test_vit" else "out.safetensors")
    result = _run(src, out, strategy, report, **_opts(strategy, arch))
    before, after = _tensors(src), _tensors(out)
    assert list(before) == list(after)  # same keys, same order
    changed = {c["tensor"]: c for c in result.changed}
    calm = strategy == "auto" and report["recommendation"]["action"] == "finetune"
    if strategy != "dormant-units" and not calm:  # no removable dormant units here; tested below
        assert changed, f"{strategy} changed nothing"
    for name, old in before.items():
        new = after[name]
        assert new.dtype == old.dtype and new.shape == old.shape
        if name not in changed:
            assert torch.equal(new, old), f"{name} was not reported but changed"
            assert (
                new.reshape(-1).view(torch.uint8).numpy().tobytes()
                == old.reshape(-1).view(torch.uint8).numpy().tobytes()
            )
        elif changed[name]["kind"] == "weights":
            frac = float((new != old).float().mean())
            assert frac <= 0.25 + 1e-6 and changed[name]["fraction"] == pytest.approx(
                0.25, abs=1 / old.numel()
            )
    _load_strict(out, arch, 1000 if arch == "mobilenetv2_100" else 10)
    assert result.unchanged_tensors == len(before) - len(changed)


def test_weights_fraction_and_mean_value(tmp_path: Path) -> None:
    out = tmp_path / "w.safetensors"
    _run(RESNET, out, "weights", fraction=0.25, value="mean")
    before, after = load_file(RESNET), load_file(out)
    w0, w1 = before["layer2.0.conv2.weight"], after["layer2.0.conv2.weight"]
    zeroed = (w1 == 0) & (w0 != 0)
    assert int(zeroed.sum()) == round(0.25 * w0.numel())
    assert float(w0[zeroed].abs().max()) <= float(w0[~zeroed].abs().min())  # the smallest ones
    assert torch.equal(after["fc.weight"], before["fc.weight"])  # classifier excluded by default


def test_shrink_perturb_is_exact(tmp_path: Path) -> None:
    out = tmp_path / "sp.safetensors"
    _run(RESNET, out, "shrink-perturb", shrink=0.4, perturb=0.1, seed=5)
    before, after = load_file(RESNET), load_file(out)
    names = ("conv1.0.weight", "layer3.0.bn2.weight", "fc.bias")
    init = recorded_model("test_resnet", 10).values(names, seed=5)  # the architecture's init, per tensor
    for name in names:
        assert torch.equal(after[name], 0.4 * before[name] + 0.1 * init[name]), name
    assert torch.equal(after["layer1.0.bn1.running_var"], before["layer1.0.bn1.running_var"])  # buffers kept


def test_layer_reset_uses_the_architecture_init_and_resets_the_norm(tmp_path: Path) -> None:
    out = tmp_path / "l.safetensors"
    result = _run(RESNET, out, "layers", layers=["layer2.0.conv1.weight"], seed=3)
    after = load_file(out)
    init = recorded_model("test_resnet", 10).value("layer2.0.conv1.weight", seed=3)
    assert torch.equal(after["layer2.0.conv1.weight"], init)
    assert torch.equal(after["layer2.0.bn1.weight"], torch.ones(48))
    assert torch.equal(after["layer2.0.bn1.running_var"], torch.ones(48))
    assert int(after["layer2.0.bn1.num_batches_tracked"]) == 0
    assert "timm test_resnet init" in result.init_source


def test_head_on_mobilenet(tmp_path: Path) -> None:
    out = tmp_path / "m.safetensors"
    result = _run(MOBILENET, out, "head")
    assert sorted(c["tensor"] for c in result.changed) == ["classifier.bias", "classifier.weight"]
    _load_strict(out, "mobilenetv2_100", 1000)
    with safe_open(str(out), "pt") as f:
        meta = f.metadata()
    assert meta["arch"] == "mobilenetv2_100" and meta["plastic.strategy"] == "head"
    assert json.loads(meta["plastic.changed"]) == ["classifier.bias", "classifier.weight"]
    assert meta["plastic.source_file"] == MOBILENET.name
    # hashed while the bytes were copied and written over its placeholder: the input's real SHA-256
    assert meta["plastic.source_sha256"] == hashlib.sha256(MOBILENET.read_bytes()).hexdigest()
    assert result.metadata["plastic.source_sha256"] == meta["plastic.source_sha256"]


def test_late_metadata_of_the_wrong_length_leaves_no_output(tmp_path: Path) -> None:
    from plastic.files.writer import LateValue, write_safetensors

    out = tmp_path / "late.safetensors"
    with open_checkpoint(RESNET) as ckpt:
        write_safetensors(ckpt, out, lambda info: None, {"a": "b"}, {"k": LateValue(4, lambda: "abcd")})
        assert safe_open(str(out), "pt").metadata() == {"a": "b", "k": "abcd"}
        with pytest.raises(ValueError, match="4 plain ASCII"):
            write_safetensors(ckpt, tmp_path / "bad.safetensors", lambda info: None, {},
                              {"k": LateValue(4, lambda: "abcde")})  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late.safetensors"]  # no temp file left


def test_weights_gradient_on_mobilenet(tmp_path: Path) -> None:
    out = tmp_path / "mg.safetensors"
    res = reinit(
        MOBILENET, strategy="weights", output=out, options=Options(fraction=0.1, utility="gradient"),
        data=CALIB, diagnose_options=DiagnoseOptions(max_images=8),
    )  # fmt: skip
    assert res.changed and all(c["fraction"] == pytest.approx(0.1, abs=0.01) for c in res.changed)
    _load_strict(out, "mobilenetv2_100", 1000)


def _silence(sd: dict[str, torch.Tensor], arch: str) -> tuple[str, list[int]]:
    """Make some units dead for real: their pre-activation is pushed far negative."""
    if arch == "test_resnet":
        sd["layer1.0.bn1.weight"][:6] = 0.0
        sd["layer1.0.bn1.bias"][:6] = -10.0
        return "layer1.0.conv1", list(range(6))
    sd["blocks.2.mlp.fc1.bias"][:20] = -100.0
    return "blocks.2.mlp.fc1", list(range(20))


@pytest.mark.parametrize("arch", ["test_resnet", "test_vit"])
def test_dormant_units_preserve_function(cli: Callable[..., Result], tmp_path: Path, arch: str) -> None:
    src = RESNET if arch == "test_resnet" else VIT_PT
    sd = {k: v.clone() for k, v in _tensors(src).items()}
    layer, units = _silence(sd, arch)
    dead = tmp_path / "dead.safetensors"
    save_file(sd, dead, metadata={"arch": arch})
    out = tmp_path / "redo.safetensors"
    # --tau 0: only units that are exactly 0 on every image, whose removal changes nothing at all
    res = cli(
        "reinit", dead, "--strategy", "dormant-units", "--data", CALIB, "--tau", "0", "-o", out, "--json"
    )
    assert res.code == 0, res.stderr
    manifest = json.loads(res.stdout)
    changed = {c["tensor"]: c for c in manifest["changed"]}
    assert f"{layer}.weight" in changed
    # its dormant rows at least (other layers' dormant units may also zero some of its input columns)
    assert changed[f"{layer}.weight"]["fraction"] >= len(units) / sd[f"{layer}.weight"].shape[0] - 1e-6
    after = load_file(out)
    assert not torch.equal(
        after[f"{layer}.weight"][units], sd[f"{layer}.weight"][units]
    )  # incoming resampled
    consumer = "layer1.0.conv2.weight" if arch == "test_resnet" else "blocks.2.mlp.fc2.weight"
    assert "zero-outgoing" in changed[consumer]["kind"] and torch.all(after[consumer][:, units] == 0)
    # function preserved at reset: same outputs on the calibration images
    from plastic.measure.calib import CalibDataset, make_transform, resolve_data_config, scan_folder

    m0, m1 = _load_strict(dead, arch, 10), _load_strict(out, arch, 10)
    with open_checkpoint(dead) as ck:
        cfg = resolve_data_config(m0, ck.metadata)
    ds = CalibDataset(scan_folder(CALIB, max_images=16), make_transform(cfg))
    x = torch.stack([ds[i][1] for i in range(len(ds))])  # type: ignore[misc]
    with torch.no_grad():
        y0, y1 = m0(x), m1(x)
    assert torch.allclose(y0, y1, atol=1e-5, rtol=1e-5)
    assert not torch.equal(after[f"{layer}.weight"], sd[f"{layer}.weight"])


def test_dormant_units_skip_what_they_cannot_preserve(tmp_path: Path) -> None:
    sd = load_file(RESNET)
    sd["layer4.0.bn2.weight"][:5] = 0.0  # conv2 of a residual block: its units also feed the skip sum
    sd["layer4.0.bn2.bias"][:5] = -10.0
    dead = tmp_path / "dead.safetensors"
    save_file(sd, dead, metadata={"arch": "test_resnet"})
    res = reinit(
        dead, strategy="dormant-units", output=tmp_path / "o.safetensors", options=Options(), data=CALIB
    )
    kinds = {c["tensor"]: c["kind"] for c in res.changed}
    assert "units" not in kinds.get("layer4.0.conv2.weight", "")  # its own units were not reset
    assert "layer4.0.bn2.weight" not in kinds
    assert any(what.startswith("layer4.0.conv2 ") for what, _why in res.skipped)


def test_same_inputs_same_bytes(tmp_path: Path, vit_report: dict[str, Any]) -> None:
    for strategy in ("topk-layers", "weights", "shrink-perturb"):
        for suffix in (".safetensors", ".pt"):
            a, b = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
            _run(VIT_PT, a, strategy, vit_report, seed=7, fraction=0.25)
            _run(VIT_PT, b, strategy, vit_report, seed=7, fraction=0.25)
            assert a.read_bytes() == b.read_bytes(), (strategy, suffix)
            a.unlink(), b.unlink()
    c = tmp_path / "c.safetensors"
    _run(VIT_PT, c, "shrink-perturb", seed=8)
    _run(VIT_PT, tmp_path / "d.safetensors", "shrink-perturb", seed=7)
    assert c.read_bytes() != (tmp_path / "d.safetensors").read_bytes()


def test_pt_container_structure(tmp_path: Path, vit_report: dict[str, Any]) -> None:
    out = tmp_path / "o.pth.tar"
    _run(VIT_PT, out, "head")
    obj = torch.load(out, weights_only=True)
    assert set(obj) == {"epoch", "arch", "state_dict", "version", "metric", "plastic"}  # optimizer dropped
    assert obj["plastic"]["plastic.strategy"] == "head"
    reinit(VIT_PT, strategy="head", output=tmp_path / "k.pt", options=Options(), keep_extra=True)
    assert "optimizer" in torch.load(tmp_path / "k.pt", weights_only=True)


def test_dry_run_writes_nothing(cli: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "never.safetensors"
    res = cli("reinit", RESNET, "-s", "head", "-o", out, "--dry-run", "--json")
    assert res.code == 0 and not out.exists()
    doc = json.loads(res.stdout)
    assert doc["dry_run"] is True and doc["output"] is None and len(doc["changed"]) == 2
    assert set(doc) >= {"schema_version", "command", "input", "output", "strategy", "options", "seed",
                        "init_source", "changed", "unchanged_tensors"}  # fmt: skip


def test_refuses_to_overwrite(cli: Callable[..., Result], tmp_path: Path) -> None:
    src = tmp_path / "m.safetensors"
    src.write_bytes(RESNET.read_bytes())
    res = cli("reinit", src, "-s", "head", "-o", src)
    assert res.code == 2 and "overwrite the input" in res.stderr
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"keep me")
    res = cli("reinit", src, "-s", "head", "-o", out)
    assert res.code == 2 and "already exists" in res.stderr and out.read_bytes() == b"keep me"
    assert cli("reinit", src, "-s", "head", "-o", out, "--force").code == 0
    assert cli("reinit", src, "-s", "head", "-o", src, "--force").code == 0  # in place, on request
    _load_strict(src, "test_resnet", 10)


def test_interrupt_leaves_no_partial_file(tmp_path: Path) -> None:
    from plastic.files import writer

    out = tmp_path / "o.safetensors"
    calls = 0

    def boom(info: Any) -> torch.Tensor | None:
        nonlocal calls
        calls += 1
        if calls == 20:
            raise KeyboardInterrupt  # what Ctrl-C raises, mid-write
        return None

    with open_checkpoint(RESNET) as ckpt, pytest.raises(KeyboardInterrupt):
        writer.write_safetensors(ckpt, out, boom, {})
    assert list(tmp_path.iterdir()) == []  # neither the output nor a temp file


def test_usage_errors(cli: Callable[..., Result], tmp_path: Path) -> None:
    def err(res: Result, needle: str) -> None:
        assert res.code == 2 and needle in res.stderr and "Traceback" not in res.stderr, res.stderr

    out = tmp_path / "o.safetensors"
    err(cli("reinit", RESNET, "-s", "topk-layers", "-o", out), "needs layer statistics")
    err(cli("reinit", RESNET, "-s", "dormant-units", "-o", out), "needs layer statistics")
    err(cli("reinit", RESNET, "-s", "nope", "-o", out), "unknown strategy")
    err(cli("reinit", RESNET, "-s", "layers", "-o", out), "--layers")
    err(cli("reinit", RESNET, "-s", "layers", "--layers", "zzz*", "-o", out), "match no tensor")
    err(cli("reinit", RESNET, "-s", "from-block", "-o", out), "--from")
    err(cli("reinit", RESNET, "-s", "weights", "--utility", "gradient", "-o", out), "--data")
    err(cli("reinit", RESNET, "-s", "head", "-o", tmp_path / "o.h5"), ".safetensors")
    err(cli("reinit", RESNET, "-s", "head"), "-o OUT")
    bad = tmp_path / "r.json"
    bad.write_text('{"command": "inspect", "schema_version": 1}')
    err(cli("reinit", "--report", bad, "-s", "topk-layers", "-o", out), "not a `plastic diagnose --json`")


def test_no_architecture_uses_pytorch_defaults(tmp_path: Path) -> None:
    sd = load_file(RESNET)
    plain = tmp_path / "plain.safetensors"
    renamed = {k.replace("layer", "stage"): v for k, v in sd.items()}  # a naming no timm model has
    save_file(renamed, plain)
    out = tmp_path / "o.safetensors"
    res = reinit(plain, strategy="layers", output=out, options=Options(layers=["stage2.0.conv1.*"]))
    assert "PyTorch default init" in res.init_source
    after = load_file(out)
    w = after["stage2.0.conv1.weight"]
    bound = 1 / (32 * 3 * 3) ** 0.5
    assert float(w.abs().max()) <= bound and not torch.equal(w, renamed["stage2.0.conv1.weight"])
    # a wrapper prefix is not a foreign naming: the architecture is found under it, and globs match
    # the file's own keys as well as timm's names
    wrapped = tmp_path / "wrapped.safetensors"
    save_file({f"net.{k}": v for k, v in sd.items()}, wrapped)
    res = reinit(wrapped, strategy="layers", output=tmp_path / "w.safetensors",
                 options=Options(layers=["net.layer2.0.conv1.*"]))  # fmt: skip
    assert "timm test_resnet init" in res.init_source and res.changed[0]["tensor"].startswith("net.")


def test_shell_pipeline(tmp_path: Path) -> None:
    """The README's pipe, through a real shell: diagnose --json | reinit reading stdin."""
    out = tmp_path / "out.safetensors"
    py = sys.executable
    cmd = (
        f"{py} -m plastic diagnose {RESNET} --data {CALIB} --json --max-images 8 | "
        f"{py} -m plastic reinit --strategy topk-layers --k 3 -o {out} --json"
    )
    proc = subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads(proc.stdout)
    assert manifest["command"] == "reinit" and manifest["input"] == str(RESNET)
    assert sum(1 for c in manifest["changed"] if c["kind"] == "tensor") == 3
    _load_strict(out, "test_resnet", 10)


def test_output_loads_the_timm_ways(tmp_path: Path, resnet_report: dict[str, Any]) -> None:
    """The README's two ways: pretrained_cfg_overlay(file=...) and timm's load_checkpoint."""
    from timm.models import load_checkpoint

    st, pt = tmp_path / "o.safetensors", tmp_path / "o.pth.tar"
    _run(RESNET, st, "topk-layers", resnet_report)
    _run(VIT_PT, pt, "head")
    overlay = {"file": str(st), "num_classes": 10}  # else timm drops a classifier that is not 1000-way
    m = timm.create_model("test_resnet", pretrained=True, num_classes=10, pretrained_cfg_overlay=overlay)
    assert torch.equal(m.fc.weight, load_file(st)["fc.weight"])
    vit = timm.create_model("test_vit", num_classes=10)
    load_checkpoint(vit, str(pt), strict=True)


def test_sharded_and_bare_inputs(tmp_path: Path) -> None:
    from tests.test_checkpoint import _shard

    sd = load_file(RESNET)
    index = _shard(tmp_path, sd)  # metadata arch=test_resnet in the index
    out = tmp_path / "from_shards.safetensors"
    res = reinit(index, strategy="head", output=out, options=Options())
    assert {c["tensor"] for c in res.changed} == {"fc.weight", "fc.bias"}
    after = load_file(out)
    assert all(torch.equal(after[k], v) for k, v in sd.items() if not k.startswith("fc."))
    bare = tmp_path / "bare.pt"
    torch.save({f"module.{k}": v for k, v in sd.items()}, bare)  # DDP-style keys, no metadata at all
    res = reinit(bare, strategy="head", output=tmp_path / "o.pt", options=Options(), arch="test_resnet")
    obj = torch.load(tmp_path / "o.pt", weights_only=True)
    assert set(obj) == {f"module.{k}" for k in sd}  # the file's own keys, prefixes kept
    assert any("no room for metadata" in n for n in res.notes)


def test_ctrl_c_exits_130_and_leaves_no_file(tmp_path: Path) -> None:
    """A real SIGINT during a long run: exit 130, 'Interrupted.', no output and no temp file."""
    import os
    import pty
    import signal
    import time

    out = tmp_path / "o.safetensors"
    cmd = [sys.executable, "-m", "plastic", "reinit", str(MOBILENET), "-s", "weights",
           "--utility", "gradient", "--data", str(CALIB), "-o", str(out)]  # fmt: skip
    # stderr on a terminal, so that the progress bar shows: interrupt once the gradient pass is running
    master, slave = pty.openpty()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
    while b"measuring" not in seen and time.monotonic() < deadline and proc.poll() is None:
        try:
            seen += os.read(master, 4096)
        except OSError:
            break
    assert b"measuring" in seen, seen[-500:]
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    try:
        while chunk := os.read(master, 4096):
            seen += chunk
    except OSError:  # the terminal's other end closed
        pass
    os.close(master)
    stderr = seen.decode(errors="replace")
    assert proc.returncode == 130, stderr[-1000:]
    assert "Interrupted." in stderr and "Traceback" not in stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_gradient_probe_honours_device_and_workers(cli: Callable[..., Result], tmp_path: Path) -> None:
    """reinit's gradient probe is diagnose's: --device and --workers apply; decoders change no byte."""
    import shutil

    calib = tmp_path / "calib"
    shutil.copytree(CALIB, calib)
    (calib / "cat" / "broken.png").parent.mkdir(exist_ok=True)
    (calib / "cat" / "broken.png").write_bytes(b"not a png")  # unreadable: skipped, not counted
    outs = []
    for workers in ("0", "2"):
        out = tmp_path / f"o{workers}.safetensors"
        args = ["-s", "weights", "--utility", "gradient", "--data", calib, "--device", "cpu"]
        res = cli("reinit", RESNET, *args, "--workers", workers, "--max-images", "24", "-o", out)
        assert res.code == 0, res.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1]
    args = ["-s", "weights", "--utility", "gradient", "--data", calib, "--device", "cuda:9"]
    bad = cli("reinit", RESNET, *args, "-o", tmp_path / "x.safetensors")
    assert bad.code == 2 and "cuda:9" in bad.stderr


def test_people_output_says_what_happened(cli: Callable[..., Result], tmp_path: Path) -> None:
    """--dry-run says "would change"; rows come in model order; nothing changed says so."""
    dry = cli("reinit", RESNET, "-s", "layers", "--layers", "layer1.0.*", "--dry-run", env={"COLUMNS": "200"})
    assert dry.code == 0 and "would change" in dry.stdout and "\nchanged" not in dry.stdout
    rows = [ln.split("│")[1].strip() for ln in dry.stdout.splitlines() if ln.startswith("│")]
    from plastic.pipelines.inspect import natural_key

    assert rows == sorted(rows, key=natural_key) and rows[0].startswith("layer1.0.bn1")
    vit = cli("reinit", VIT_PT, "-s", "auto", "--report", _vit_report_file(tmp_path), "-o", tmp_path / "v.pt")
    assert vit.code == 0 and "new values: none (nothing changed)" in vit.stdout


def _vit_report_file(tmp_path: Path) -> Path:
    from plastic.pipelines.diagnose import diagnose

    rep = tmp_path / "vit.json"
    rep.write_text(json.dumps(diagnose(VIT_PT, CALIB, max_images=20, device="cpu").to_dict()))
    return rep


def test_strategies_declare_what_they_need() -> None:
    """reinit builds what ``StrategyInfo.needs`` says, never by branching on strategy names."""
    from plastic.reinit.options import Need, Utility
    from plastic.reinit.strategies import Options, get_strategy, list_strategies

    plain, grad = Options(), Options(utility=Utility.GRADIENT)
    assert {s.name for s in list_strategies() if s.wants(Need.REPORT, plain)} == {
        "auto", "topk-layers", "dormant-units",
    }  # fmt: skip
    assert get_strategy("dormant-units").wants(Need.LOADED, plain)
    assert not get_strategy("weights").wants(Need.GRADIENTS, plain)
    assert get_strategy("weights").wants(Need.GRADIENTS, grad)
    assert not get_strategy("head").wants(Need.GRADIENTS, grad)


def test_layers_selects_by_tensor_layer_or_block_name() -> None:
    """``--layers`` takes what diagnose's table names: a layer (``fc``) selects its tensors, a block
    (``layer4``) everything under it; ``conv1`` selects the stem's conv1, not every ``*.conv1``."""
    from safetensors import safe_open

    from plastic.pipelines.reinit import reinit
    from plastic.reinit.strategies import Options

    def chosen(*patterns: str) -> set[str]:
        res = reinit(
            RESNET, strategy="layers", output=None, options=Options(layers=list(patterns)), dry_run=True
        )
        return {c["tensor"] for c in res.changed}

    with safe_open(str(RESNET), framework="pt") as f:
        names = set(f.keys())
    assert chosen("fc") == {"fc.weight", "fc.bias"} == chosen("fc.*")
    assert chosen("layer4") == {n for n in names if n.startswith("layer4.")} == chosen("layer4.*")
    stem = chosen("conv1")  # the deep stem's Sequential and the norm after it (layers resets it too)
    assert stem and all(n.startswith(("conv1.", "bn1.")) for n in stem)
    bn = {n for n in names if n.startswith("layer4.0.bn1.")}
    assert chosen("layer4.0.conv1") == {"layer4.0.conv1.weight", *bn}
