"""Nothing lost, nothing misread: one regression test per failure the adversarial run found (issue 11)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from plastic.errors import CheckpointError, OutputError
from plastic.files.atomic import atomic_writer
from plastic.files.checkpoint import open_checkpoint
from plastic.measure.calib import scan_folder
from tests.conftest import CALIB, RESNET, Result, expect_error, file_digests


@pytest.fixture(scope="module")
def resnet_report() -> dict[str, Any]:
    from plastic.pipelines.diagnose import diagnose

    return diagnose(RESNET, CALIB, max_images=8, device="cpu").to_dict()


def _shards(folder: Path) -> Path:
    """The ResNet sample split into two shards plus an index, the way the hub writes them."""
    sd = load_file(RESNET)
    keys = sorted(sd)
    half = len(keys) // 2
    folder.mkdir(parents=True, exist_ok=True)
    parts = {"model-00001-of-00002.safetensors": keys[:half], "model-00002-of-00002.safetensors": keys[half:]}
    weight_map = {}
    for name, ks in parts.items():
        save_file({k: sd[k] for k in ks}, str(folder / name))
        weight_map.update(dict.fromkeys(ks, name))
    index = folder / "model.safetensors.index.json"
    index.write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return index


# --- 1. outputs never replace an input -------------------------------------------------------------------


def test_diagnose_out_never_replaces_the_checkpoint(cli: Callable[..., Result], tmp_path: Path) -> None:
    fold = tmp_path / "fold"
    fold.mkdir()
    shutil.copy(RESNET, fold / "model.safetensors")
    # the failing case: a folder argument, --out naming the file inside it (was: exit 0, weights gone)
    res = cli("diagnose", fold, "--data", CALIB, "--device", "cpu", "--max-images", "8", "--json",
              "--out", fold / "model.safetensors")  # fmt: skip
    assert "--force" not in expect_error(res)  # diagnose has no --force: the hint must not name one
    assert (fold / "model.safetensors").read_bytes() == RESNET.read_bytes()

    shards = tmp_path / "shards"
    index = _shards(shards)
    link = tmp_path / "shard.json"  # a .json name that leads to a shard
    link.symlink_to(shards / "model-00002-of-00002.safetensors")
    before = file_digests(shards)
    for target in [index, link]:
        res = cli("diagnose", shards, "--data", CALIB, "--device", "cpu", "--json", "--out", target)
        assert "--force" not in expect_error(res, "refusing to overwrite the input")
    assert file_digests(shards) == before and link.is_symlink()

    calib = tmp_path / "calib"
    shutil.copytree(CALIB, calib)
    image = next(calib.rglob("*.png"))
    res = cli("diagnose", RESNET, "--data", calib, "--device", "cpu", "--out", image)
    expect_error(res, "refusing to overwrite the input")
    assert file_digests(calib) == file_digests(CALIB)


def test_diagnose_out_refuses_a_checkpoint_name_and_non_files(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    expect_error(cli("diagnose", RESNET, "--data", CALIB, "--out", tmp_path / "x.safetensors"), ".json")
    expect_error(cli("diagnose", RESNET, "--data", CALIB, "--out", "/dev/null"), "not a regular file")


def test_out_through_a_symlink_replaces_its_target_not_the_link(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    res = cli("diagnose", RESNET, "--data", CALIB, "--device", "cpu", "--max-images", "4", "--json",
              "--out", link)  # fmt: skip
    assert res.code == 0, res.stderr
    assert link.is_symlink() and json.loads(real.read_text())["command"] == "diagnose"


def test_reinit_refuses_every_input_as_output(cli: Callable[..., Result], tmp_path: Path) -> None:
    shards = tmp_path / "s"
    index = _shards(shards)
    before = file_digests(shards)
    shard = shards / "model-00001-of-00002.safetensors"
    expect_error(cli("reinit", index, "-s", "head", "-o", shard), "refusing to overwrite the input")
    hard = tmp_path / "hard.safetensors"
    os.link(shards / "model-00002-of-00002.safetensors", hard)
    expect_error(cli("reinit", index, "-s", "head", "-o", hard), "refusing to overwrite the input")
    assert file_digests(shards) == before


# --- 2. and 3. sharded indexes ---------------------------------------------------------------------------


def test_shard_in_a_subfolder_is_the_file_read(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    save_file({"w": torch.full((4,), 7.0)}, str(tmp_path / "d" / "w.safetensors"))
    save_file({"w": torch.full((4,), -1.0)}, str(tmp_path / "w.safetensors"))  # same header, other data
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": "d/w.safetensors"}}))
    with open_checkpoint(index) as ckpt:
        assert ckpt.tensor("w").tolist() == [7.0] * 4
        assert tmp_path / "d" / "w.safetensors" in ckpt.input_files


@pytest.mark.parametrize("name", ["../outside.safetensors", "/etc/passwd", "d/../../x.safetensors", ""])
def test_shard_names_are_confined(cli: Callable[..., Result], tmp_path: Path, name: str) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    save_file({"w": torch.zeros(2)}, str(tmp_path / "outside.safetensors"))
    index = folder / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"w": name}}))
    line = expect_error(cli("inspect", index), "not a relative path inside the index's folder")
    assert "root:" not in line


def test_tensor_in_two_shards_follows_the_index(cli: Callable[..., Result], tmp_path: Path) -> None:
    save_file({"fc.weight": torch.ones(3, 3), "fc.bias": torch.zeros(3)}, str(tmp_path / "a.safetensors"))
    save_file({"fc.bias": torch.full((3,), 5.0)}, str(tmp_path / "b.safetensors"))
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"fc.weight": "a.safetensors", "fc.bias": "b.safetensors"}}))
    res = cli("inspect", index, "--json")
    assert res.code == 0, res.stderr
    tensors = [t["name"] for la in json.loads(res.stdout)["layers"] for t in la["tensors"]]
    assert sorted(tensors) == ["fc.bias", "fc.weight"]  # once each
    with open_checkpoint(index) as ckpt:
        assert ckpt.tensor("fc.bias").tolist() == [5.0] * 3  # the shard the index names
        assert any("ignored" in n for n in ckpt.notes)
    out = tmp_path / "o.safetensors"
    res = cli("reinit", index, "-s", "layers", "--layers", "fc.weight", "--value", "mean", "-o", out)
    assert res.code == 0, res.stderr
    written = load_file(out)  # the safetensors library accepts plastic's output
    assert written["fc.bias"].tolist() == [5.0] * 3 and set(written) == {"fc.weight", "fc.bias"}


# --- 4. options validated at the boundary ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["-s", "topk-layers", "--k", "-1"], "--k"),
        (["-s", "topk-layers", "--k", "0"], "--k"),
        (["-s", "shrink-perturb", "--perturb", "nan"], "--perturb"),
        (["-s", "shrink-perturb", "--shrink", "inf"], "--shrink"),
        (["-s", "head", "--seed", str(2**64)], "--seed"),
        (["-s", "head", "--seed", "-3"], "--seed"),
        (["-s", "weights", "--fraction", "1.5"], "--fraction"),
        (["-s", "weights", "--fraction", "nan"], "--fraction"),
        (["-s", "topk-layers", "--tau", "nan"], "--tau"),
        (["-s", "topk-layers", "--device", "cuda:7"], "cuda:7"),
        (["-s", "topk-layers", "--device", "tpu"], "--device"),
        (["-s", "topk-layers", "--max-images", "0"], "--max-images"),
    ],
)
def test_nonsense_reinit_options(
    cli: Callable[..., Result], tmp_path: Path, args: list[str], needle: str
) -> None:
    expect_error(cli("reinit", RESNET, *args, "--data", CALIB, "-o", tmp_path / "o.safetensors"), needle)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--tau", "nan"], "--tau"),
        (["--seed", str(2**64)], "--seed"),
        (["--device", "cuda:7"], "cuda:7"),
        (["--batch-size", "0"], "--batch-size"),
        (["--workers", "-1"], "--workers"),
        (["--std", "0"], "--std"),
        (["--mean", "nan"], "--mean"),
        (["--input-size", "3,0,32"], "--input-size"),
    ],
)
def test_nonsense_diagnose_options(cli: Callable[..., Result], args: list[str], needle: str) -> None:
    expect_error(cli("diagnose", RESNET, "--data", CALIB, *args), needle)


def test_never_writes_a_new_non_finite_value(cli: Callable[..., Result], tmp_path: Path) -> None:
    src = tmp_path / "half.safetensors"
    save_file({"fc.weight": torch.full((4, 4), 60000.0, dtype=torch.float16)}, str(src))
    out = tmp_path / "o.safetensors"
    expect_error(cli("reinit", src, "-s", "shrink-perturb", "--shrink", "2", "-o", out), "non-finite")
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == ["half.safetensors"]


# --- 5. stale and relative reports -----------------------------------------------------------------------


def test_stale_report_is_refused(
    cli: Callable[..., Result], tmp_path: Path, resnet_report: dict[str, Any]
) -> None:
    src = tmp_path / "m.safetensors"
    shutil.copy(RESNET, src)
    report = json.loads(json.dumps(resnet_report))
    report["checkpoint"]["path"] = str(src)
    rep = tmp_path / "r.json"
    rep.write_text(json.dumps(report))
    other = tmp_path / "other.safetensors"  # same architecture, same size, other weights
    assert cli("reinit", src, "-s", "head", "--seed", "5", "-o", other).code == 0
    os.replace(other, src)
    out = tmp_path / "o.safetensors"
    expect_error(
        cli("reinit", "-s", "topk-layers", "--report", rep, "-o", out), "other contents", "run diagnose again"
    )
    assert not out.exists()


def test_relative_report_path_resolves_against_the_report(
    cli: Callable[..., Result], tmp_path: Path, resnet_report: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "a").mkdir()
    shutil.copy(RESNET, tmp_path / "a" / "m.safetensors")
    report = json.loads(json.dumps(resnet_report))
    report["checkpoint"]["path"] = "m.safetensors"
    rep = tmp_path / "a" / "r.json"
    rep.write_text(json.dumps(report))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    res = cli("reinit", "-s", "topk-layers", "--k", "1", "--report", rep, "-o", "o.safetensors")
    assert res.code == 0, res.stderr
    assert (tmp_path / "elsewhere" / "o.safetensors").exists()


def test_report_size_is_capped(cli: Callable[..., Result], tmp_path: Path) -> None:
    expect_error(
        cli("reinit", "-s", "auto", "--report", "/dev/zero", "-o", tmp_path / "o.safetensors"), "MiB"
    )


# --- 6. calibration folders with symlink loops -----------------------------------------------------------


def test_symlink_loops_end_and_count_each_image_once(tmp_path: Path) -> None:
    root = tmp_path / "L"
    (root / "cat").mkdir(parents=True)
    for i, src in enumerate(sorted(CALIB.rglob("*.png"))[:3]):
        shutil.copy(src, root / "cat" / f"{i}.png")
    (root / "a").symlink_to(".")
    (root / "b").symlink_to(".")
    (root / "cat" / "self").symlink_to(".")
    calib = scan_folder(root, max_images=1000)
    assert len(calib.files) == 3 and calib.found == 3


# --- 7. zip records shorter than their storage -----------------------------------------------------------


def _shorten_record(src: Path, dst: Path) -> None:
    """Rewrite a torch zip with its first data record cut short; layout otherwise as torch writes it."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith("/data/0"):
                data = data[: len(data) // 2]
            zout.writestr(info, data)


def test_shortened_zip_record_is_refused(cli: Callable[..., Result], tmp_path: Path) -> None:
    full = tmp_path / "full.pt"
    torch.save({"fc.bias": torch.zeros(256), "fc.weight": torch.randn(256, 256)}, full)  # data/0: the bias
    cut = tmp_path / "cut.pt"
    _shorten_record(full, cut)
    # the failure guarded against: torch's memory-mapped load trusts the pickle's sizes and reads garbage
    loaded = torch.load(cut, weights_only=True, mmap=True)
    assert loaded["fc.bias"].shape == (256,) and bool(
        loaded["fc.bias"].ne(0).any()
    )  # bytes of the next record
    expect_error(cli("inspect", cut), "cut.pt", "record")
    expect_error(cli("reinit", cut, "-s", "head", "-o", tmp_path / "o.pt"), "record")


# --- 8. signals and files that change under us -----------------------------------------------------------


def _write_hook(monkeypatch: pytest.MonkeyPatch, signum: int) -> None:
    """Deliver ``signum`` to this process from inside the output's write loop."""
    import plastic.files.writer as writer

    real = writer.tensor_bytes

    def bytes_then_signal(t: torch.Tensor) -> bytes:
        signal.raise_signal(signum)
        return real(t)

    monkeypatch.setattr(writer, "tensor_bytes", bytes_then_signal)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_clean_up(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signum: int
) -> None:
    _write_hook(monkeypatch, signum)
    res = cli("reinit", RESNET, "-s", "head", "-o", tmp_path / "o.safetensors", own_signal=True)
    assert res.code == 128 + signum and res.stderr.strip() == "Interrupted.", res
    assert list(tmp_path.iterdir()) == []


def test_sigint_inside_torch_save_exits_130(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import plastic.files.writer as writer

    real_save = torch.save

    class SignalOnWrite:
        def __init__(self, f: Any) -> None:
            self.f, self.calls = f, 0

        def write(self, b: bytes) -> int:
            self.calls += 1
            if self.calls == 3:
                signal.raise_signal(signal.SIGINT)  # torch's C++ writer turns it into a RuntimeError
            return int(self.f.write(b))

        def flush(self) -> None:
            self.f.flush()

    monkeypatch.setattr(writer.torch, "save", lambda obj, f: real_save(obj, SignalOnWrite(f)))
    res = cli("reinit", RESNET, "-s", "head", "-o", tmp_path / "o.pth.tar", own_signal=True)
    assert res.code == 130 and res.stderr.strip() == "Interrupted.", res
    assert list(tmp_path.iterdir()) == []


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(c) for c in text.split()]


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_ctrl_c_with_workers_prints_one_line(tmp_path: Path) -> None:
    """Ctrl-C in a terminal signals the whole process group, workers included: no worker tracebacks."""
    cmd = [sys.executable, "-m", "plastic", "diagnose", str(RESNET), "--data", str(CALIB), "--device", "cpu",
           "--workers", "2", "--batch-size", "2", "--json"]  # fmt: skip
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.monotonic() + 120
    while len(_children(proc.pid)) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "diagnose ended before its workers started"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip() == "Interrupted.", err[-2000:]


def test_file_truncated_while_open_is_an_error_not_a_crash(tmp_path: Path) -> None:
    src = tmp_path / "m.safetensors"
    shutil.copy(RESNET, src)
    with open_checkpoint(src) as ckpt:
        last = ckpt.tensors[-1].name
        os.truncate(src, src.stat().st_size // 2)
        with pytest.raises(CheckpointError, match="truncated or replaced"):
            ckpt.tensor(last)


# --- 9. concurrent writers -------------------------------------------------------------------------------


def test_exclusive_create_without_force(tmp_path: Path) -> None:
    target = tmp_path / "o.bin"
    with pytest.raises(OutputError, match="another process"), atomic_writer(target, replace=False) as f:
        f.write(b"mine")
        target.write_bytes(b"theirs")  # another run finished first
    assert target.read_bytes() == b"theirs" and [p.name for p in tmp_path.iterdir()] == ["o.bin"]
    with atomic_writer(target, replace=True) as f:  # --force replaces
        f.write(b"mine")
    assert target.read_bytes() == b"mine"


# --- 10. the smaller ones --------------------------------------------------------------------------------


def test_output_keeps_the_input_mode(cli: Callable[..., Result], tmp_path: Path) -> None:
    src = tmp_path / "m.safetensors"
    shutil.copy(RESNET, src)
    src.chmod(0o600)
    out = tmp_path / "o.safetensors"
    assert cli("reinit", src, "-s", "head", "-o", out).code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600


def test_random_utility_masks_differ_between_tensors(tmp_path: Path) -> None:
    src = tmp_path / "m.safetensors"
    save_file({"a.weight": torch.randn(8, 8), "b.weight": torch.randn(8, 8)}, str(src))
    out = tmp_path / "o.safetensors"
    from plastic.pipelines.reinit import reinit
    from plastic.reinit.strategies import Options

    reinit(src, strategy="weights", output=out, options=Options(utility="random", fraction=0.5, value="mean"))
    new = load_file(out)
    mask_a, mask_b = new["a.weight"] == 0, new["b.weight"] == 0
    assert int(mask_a.sum()) == 32 and not torch.equal(mask_a, mask_b)


def test_tensor_lookup_is_indexed(tmp_path: Path) -> None:
    src = tmp_path / "many.safetensors"
    save_file({f"t{i}": torch.zeros(1) for i in range(2000)}, str(src))
    with open_checkpoint(src) as ckpt:
        assert ckpt.by_name is ckpt.by_name  # built once, not per lookup
        assert all(ckpt.tensor(f"t{i}").item() == 0 for i in range(0, 2000, 97))


def test_odd_dtypes_are_clear_refusals(cli: Callable[..., Result], tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.pt"
    torch.save({"fc.weight": torch.eye(4).to_sparse()}, sparse)
    expect_error(cli("inspect", sparse), "dense tensors only")
    cplx = tmp_path / "c.safetensors"
    save_file({"fc.weight": torch.randn(4, 4, dtype=torch.complex64)}, str(cplx))
    assert cli("inspect", cplx, "--json").code == 0  # listed, with null statistics
    expect_error(cli("reinit", cplx, "-s", "layers", "--layers", "fc.*", "-o", tmp_path / "o.safetensors"),
                 "complex64")  # fmt: skip
    f8 = tmp_path / "f8.safetensors"
    save_file({"fc.weight": torch.randn(4, 4).to(torch.float8_e4m3fn)}, str(f8))
    assert cli("inspect", f8, "--json").code == 0
    res = cli("reinit", f8, "-s", "layers", "--layers", "fc.*", "-o", tmp_path / "o8.safetensors")
    assert res.code == 0, res.stderr
    assert load_file(tmp_path / "o8.safetensors")["fc.weight"].dtype == torch.float8_e4m3fn


@pytest.mark.parametrize(
    "args",
    [
        ["reinit", "--nope"],
        ["diagnose", str(RESNET)],
        ["inspect"],
        ["reinit", str(RESNET), "--k", "x"],
        ["nope"],
    ],
)
def test_click_usage_errors_are_one_line(cli: Callable[..., Result], args: list[str]) -> None:
    expect_error(cli(*args))


def test_control_characters_are_escaped(cli: Callable[..., Result], tmp_path: Path) -> None:
    bad = tmp_path / "evil\x1b[2Jname\x07.safetensors"
    line = expect_error(cli("inspect", bad))
    assert "\x1b" not in line and "\x07" not in line and "\\x1b" in line


def test_decompression_bomb_is_a_skipped_image(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    folder = tmp_path / "imgs"
    folder.mkdir()
    for src in sorted(CALIB.rglob("*.png"))[:3]:
        shutil.copy(src, folder / src.name)
    Image.new("L", (64, 64)).save(folder / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 3000)  # 64x64 = 4096: over the warning limit
    res = cli("diagnose", RESNET, "--data", folder, "--device", "cpu", "--json", "-v")
    assert res.code == 0, res.stderr
    assert "DecompressionBomb" not in res.stderr and "too large" in res.stderr
    assert json.loads(res.stdout)["calibration"]["images_skipped"] == 1


@pytest.mark.parametrize("fmt", ["table", "json"])
def test_a_closed_stdout_exits_as_sigpipe_and_the_output_file_is_still_written(
    tmp_path: Path, fmt: str
) -> None:
    """`plastic reinit ... | head` whose reader has gone: exit 141 (what a shell reports for a process
    SIGPIPE ended), not 1 (which means --fail-on findings), nothing on stderr, and the checkpoint
    written, since results are printed only after the file work."""
    out = tmp_path / "out.safetensors"
    args = [sys.executable, "-m", "plastic", "reinit", str(RESNET), "--strategy", "head", "-o", str(out)]
    proc = subprocess.Popen(
        [*args, *(["--json"] if fmt == "json" else [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # gone before the first result is printed (Python takes longer to start)
    assert proc.wait(timeout=120) == 141
    assert proc.stderr.read() == b""
    assert load_file(out).keys() == load_file(RESNET).keys()


def _minimal_report() -> dict[str, Any]:
    return {"schema_version": 1, "command": "diagnose", "checkpoint": {"path": str(RESNET)}, "layers": []}


@pytest.mark.parametrize(
    ("patch", "message"),
    [
        ({"schema_version": 3}, "schema_version 3"),
        ({"trial": {"winner": "x"}}, "trial"),
        ({"recommendation": {"action": "reinit", "options": {}, "layers": [], "lr_scale": -1}}, "lr_scale"),
        ({"layers": {}}, "'layers' must be a list"),
        ({"layers": [{"name": "a", "score": "high"}]}, "layers[0].score"),
        ({"layers": [{"name": "a", "dormant_units": [-1]}]}, "dormant_units"),
        ({"blocks": [{"name": "b", "layers": "layer1", "rank": 1}]}, "blocks[0]"),
        ({"blocks": [{"name": "b", "layers": [], "rank": True}]}, "blocks[0]"),
        ({"data_config": {"input_size": [224, 224]}}, "input_size"),
        ({"checkpoint": {"path": str(RESNET), "size_bytes": "big"}}, "size_bytes"),
    ],
)
def test_a_malformed_report_names_its_first_problem(patch: dict[str, Any], message: str) -> None:
    """Every field reinit reads is checked in one place (documents/reports.py) before it is used."""
    from plastic.documents.reports import parse_report
    from plastic.errors import UsageError

    with pytest.raises(UsageError, match=re.escape(message)):
        parse_report(json.dumps({**_minimal_report(), **patch}))
    doc = parse_report(json.dumps(_minimal_report()))  # the minimal one is valid; missing blocks become []
    assert doc["blocks"] == []


def test_sigterm_to_pytest_during_an_in_process_command_stops_the_whole_run(tmp_path: Path) -> None:
    """A CI cancel sends SIGTERM: plastic's handler catches it inside an in-process command, and the
    ``cli`` fixture hands it on, so pytest ends there instead of counting one failure and going on."""
    from tests.conftest import MOBILENET, ROOT

    marker = tmp_path / "second-test-ran"
    (tmp_path / "test_cancelled.py").write_text(
        "import os, signal, threading\n"
        "from tests.conftest import cli  # noqa: F401 (the fixture)\n"
        "def test_long(cli):\n"
        "    threading.Timer(2.0, lambda: os.kill(os.getpid(), signal.SIGTERM)).start()\n"
        f"    cli('diagnose', {str(MOBILENET)!r}, '--data', {str(CALIB)!r}, '--max-images', '64', '--json')\n"
        "def test_after():\n"
        f"    open({str(marker)!r}, 'w').close()\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", "-o", "addopts=",
         str(tmp_path / "test_cancelled.py")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert proc.returncode == -signal.SIGTERM, (proc.returncode, proc.stdout[-2000:])
    assert not marker.exists()
