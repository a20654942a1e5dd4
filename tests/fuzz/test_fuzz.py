"""Seeded fuzzing of every input plastic reads, judged by the README's contract.

Families: safetensors headers, PyTorch zip and legacy pickles (malicious ones included), sharded indexes,
diagnose reports, and option values. The oracle: exit 0 with a well-formed result, or exit 2 with exactly
one ``Error:`` line and no traceback; never an internal error; no file written on failure; the inputs
byte-identical afterwards; no code from a pickle ever runs. ``PLASTIC_FUZZ_SCALE=10`` runs ten times as
many cases (default: about 300, ~1 minute on 2 cores). A failure names its family and case: rerun it
alone with ``-k 'family and case'``.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import pickle
import random
import shutil
import struct
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from tests.conftest import CALIB, RESNET, Result, file_digests

SCALE = max(1, int(os.environ.get("PLASTIC_FUZZ_SCALE", "1")))
SENTINEL = "plastic-fuzz-sentinel"  # a malicious pickle would create a file with this name


def _cases(n: int) -> list[int]:
    return list(range(n * SCALE))


def _check(res: Result, folder: Path, before: dict[str, bytes], out: Path | None = None) -> None:
    """The contract: 0 with a result, or 2 with one Error line; nothing written on failure; inputs intact."""
    assert res.code in (0, 2), (res.code, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and "internal error" not in res.stderr, res.stderr[-2000:]
    assert not list(folder.rglob(f"*{SENTINEL}*")), "a pickle ran code"
    after = {k: v for k, v in file_digests(folder).items() if out is None or k != out.name}
    assert after == before, "an input changed, or a stray file was left"
    if res.code == 2:
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr[-2000:]
        assert res.stdout == ""
        assert out is None or not out.exists()


# --- safetensors headers ---------------------------------------------------------------------------------

ST_CODES = ["F32", "F16", "BF16", "F64", "I64", "U8", "BOOL", "F8_E4M3", "C64", "F33", "", 5, None, "f32"]


def _st_base() -> tuple[dict[str, Any], bytes]:
    buf = io.BytesIO()
    tensors = {
        "conv.weight": torch.randn(4, 3, 3, 3),
        "fc.weight": torch.randn(10, 4).half(),
        "fc.bias": torch.zeros(10),
    }
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"plastic-fuzz-base-{os.getpid()}.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    raw = path.read_bytes()
    path.unlink()
    buf.write(raw)
    n = struct.unpack("<Q", raw[:8])[0]
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _junk(rng: random.Random) -> Any:
    return rng.choice([-1, 0, 2**40, 1.5, "x", None, [], {}, [1, -2], [[2]], True, "\x00\x1b", 10**30])


def _mutate_header(rng: random.Random, header: dict[str, Any]) -> None:
    names = [k for k in header if k != "__metadata__"]
    name = rng.choice(names)
    entry = header[name]
    what = rng.randrange(9)
    if what == 0:
        entry["dtype"] = rng.choice(ST_CODES)
    elif what == 1:
        entry["shape"] = rng.choice([[rng.randint(-2, 12) for _ in range(rng.randint(0, 4))], _junk(rng)])
    elif what == 2:
        a, b = entry["data_offsets"]
        entry["data_offsets"] = rng.choice(
            [[b, a], [a + 4, b + 4], [a, b - 4], [a, b + 4], [-a, b], [a], _junk(rng)]
        )
    elif what == 3:
        del header[name]
    elif what == 4:
        header[rng.choice(["extra", name + "x", ""])] = dict(entry)
    elif what == 5:
        header["__metadata__"] = rng.choice(
            [{"a": 1}, {"a": {"b": "c"}}, ["x"], None, {"arch": "resnet18"}, "s"]
        )
    elif what == 6:
        entry[rng.choice(["dtype", "shape", "data_offsets"])] = _junk(rng)
    elif what == 7:
        header[name] = _junk(rng)
    else:
        entry.pop(rng.choice(["dtype", "shape", "data_offsets"]))


def _st_bytes(rng: random.Random) -> bytes:
    header, data = _st_base()
    if rng.random() < 0.7:
        for _ in range(rng.randint(1, 3)):
            # an earlier mutation may have left nothing of that shape to mutate
            with contextlib.suppress(TypeError, ValueError, KeyError, AttributeError, IndexError):
                _mutate_header(rng, header)
    raw = json.dumps(header).encode()
    if rng.random() < 0.15:
        raw += b" " * rng.randint(1, 7)
    blob = bytearray(struct.pack("<Q", len(raw)) + raw + data)
    kind = rng.randrange(6)
    if kind == 0:  # flip bytes anywhere
        for _ in range(rng.randint(1, 8)):
            blob[rng.randrange(len(blob))] ^= 1 << rng.randrange(8)
    elif kind == 1:  # truncate
        del blob[rng.randrange(len(blob)) :]
    elif kind == 2:  # junk appended
        blob += os.urandom(rng.randint(1, 64))
    elif kind == 3:  # a lying length prefix
        blob[:8] = struct.pack("<Q", rng.choice([0, 1, len(raw) - 1, len(raw) + 1, 2**63, 2**40]))
    return bytes(blob)


@pytest.mark.parametrize("case", _cases(120))
def test_fuzz_safetensors_header(cli: Callable[..., Result], tmp_path: Path, case: int) -> None:
    rng = random.Random(case)
    src = tmp_path / "in" / "m.safetensors"
    src.parent.mkdir()
    src.write_bytes(_st_bytes(rng))
    before = file_digests(src.parent)
    res = cli("inspect", src, "--json")
    _check(res, src.parent, before)
    if res.code == 0:  # plastic accepted it: the reference reader must agree on what it holds
        doc = json.loads(res.stdout)
        listed = {t["name"]: t["shape"] for la in doc["layers"] for t in la["tensors"]}
        with safe_open(str(src), framework="pt") as f:
            assert listed == {k: list(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118
    if case % 3 == 0:
        out = tmp_path / "in" / "o.safetensors"
        res = cli("reinit", src, "-s", "layers", "--layers", "fc.*", "--value", "mean", "-o", out)
        _check(res, src.parent, before, out)
        if res.code == 0:
            load_file(out)


# --- PyTorch files ---------------------------------------------------------------------------------------


class _Evil:
    """Pickles to a call of a dangerous global that would create the sentinel file."""

    def __init__(self, func: Any, arg: str) -> None:
        self.func, self.arg = func, arg

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return self.func, (self.arg,)


def _evil_pickle(rng: random.Random, folder: Path) -> bytes:
    import builtins
    import subprocess

    target = folder / f"{SENTINEL}-{rng.randrange(1000)}"
    func, arg = rng.choice(
        [
            (os.system, f"touch '{target}'"),
            (builtins.exec, f"open({str(target)!r}, 'w').close()"),
            (builtins.eval, f"open({str(target)!r}, 'w')"),
            (subprocess.getoutput, f"touch '{target}'"),
        ]
    )
    return pickle.dumps({"fc.weight": _Evil(func, arg)}, protocol=rng.choice([2, 4]))


def _torch_bytes(rng: random.Random, folder: Path) -> bytes:
    state = {
        "fc.bias": torch.zeros(16),
        "fc.weight": torch.randn(16, 8),
        "bn.num_batches_tracked": torch.tensor(3),
    }
    obj: Any = state if rng.random() < 0.5 else {"state_dict": state, "epoch": 3}
    buf = io.BytesIO()
    legacy = rng.random() < 0.25
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    blob = buf.getvalue()
    kind = rng.randrange(6)
    if kind == 0:
        return _evil_pickle(rng, folder)
    if kind == 1 and not legacy:  # a malicious data.pkl inside a real torch zip
        return _rezip(
            blob, lambda name, data: _evil_pickle(rng, folder) if name.endswith("data.pkl") else data
        )
    if kind == 2 and not legacy:  # records cut or grown

        def edit(name: str, data: bytes) -> bytes:
            if "/data/" in name and rng.random() < 0.7:
                return data[: rng.randrange(len(data) + 1)] if rng.random() < 0.7 else data + b"\0" * 8
            return data

        return _rezip(blob, edit)
    mutable = bytearray(blob)
    if kind == 3:
        del mutable[rng.randrange(1, len(mutable)) :]
    else:
        for _ in range(rng.randint(1, 6)):
            mutable[rng.randrange(len(mutable))] ^= 1 << rng.randrange(8)
    return bytes(mutable)


def _rezip(blob: bytes, edit: Callable[[str, bytes], bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(blob)) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info)))
    return out.getvalue()


@pytest.mark.parametrize("case", _cases(60))
def test_fuzz_torch_file(cli: Callable[..., Result], tmp_path: Path, case: int) -> None:
    rng = random.Random(1000 + case)
    folder = tmp_path / "in"
    folder.mkdir()
    src = folder / rng.choice(["m.pt", "m.pth", "m.bin", "m.ckpt", "m.pth.tar"])
    src.write_bytes(_torch_bytes(rng, folder))
    before = file_digests(folder)
    res = cli("inspect", src, "--json")
    _check(res, folder, before)
    if res.code == 0:
        assert json.loads(res.stdout)["schema_version"] == 2
    if case % 2 == 0:
        out = folder / "o.pt"
        res = cli("reinit", src, "-s", "layers", "--layers", "fc.*", "--value", "mean", "-o", out)
        _check(res, folder, before, out)
        if res.code == 0:
            torch.load(out, weights_only=True)


# --- sharded indexes -------------------------------------------------------------------------------------


def _sharded(rng: random.Random, folder: Path) -> Path:
    save_file({"fc.weight": torch.randn(4, 4)}, str(folder / "a.safetensors"))
    save_file({"fc.bias": torch.zeros(4), "bn.weight": torch.ones(4)}, str(folder / "b.safetensors"))
    (folder / "sub").mkdir()
    save_file({"bn.bias": torch.zeros(4)}, str(folder / "sub" / "c.safetensors"))
    weight_map: dict[Any, Any] = {
        "fc.weight": "a.safetensors", "fc.bias": "b.safetensors", "bn.weight": "b.safetensors",
        "bn.bias": "sub/c.safetensors",
    }  # fmt: skip
    doc: Any = {"metadata": {"total_size": 100}, "weight_map": weight_map}
    for _ in range(rng.randint(1, 3)):
        what = rng.randrange(8)
        key = rng.choice(list(weight_map) or ["x"])
        if what == 0:
            weight_map[key] = rng.choice(
                ["../a.safetensors", "/etc/passwd", "missing.safetensors", "sub", "", "./a.safetensors",
                 "sub/../a.safetensors", "b.safetensors", "a.safetensors", 7, None, ["a.safetensors"]]
            )  # fmt: skip
        elif what == 1:
            weight_map.pop(key, None)
        elif what == 2:
            weight_map["ghost.weight"] = rng.choice(["a.safetensors", "b.safetensors"])
        elif what == 3:
            doc = rng.choice(
                [
                    [],
                    "x",
                    {"weight_map": []},
                    {"weight_map": {}},
                    {"metadata": None, "weight_map": weight_map},
                ]
            )
        elif what == 4:
            shard = folder / rng.choice(["a.safetensors", "b.safetensors"])
            data = shard.read_bytes()
            shard.write_bytes(data[: rng.randrange(len(data))])
        elif what == 5:
            doc["metadata"] = _junk(rng) if isinstance(doc, dict) else None
        elif what == 6:  # the same tensor stored in two shards, the index naming one
            save_file(
                {"fc.weight": torch.randn(4, 4), "fc.bias": torch.ones(4)}, str(folder / "a.safetensors")
            )
        else:  # a shard reached through a symlink (the hub cache's layout): allowed, read through the link
            (folder / "sub" / "c.safetensors").unlink()
            (folder / "sub" / "c.safetensors").symlink_to("../b.safetensors")
    index = folder / "model.safetensors.index.json"
    text = json.dumps(doc)
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text))]
    index.write_text(text)
    return index


@pytest.mark.parametrize("case", _cases(40))
def test_fuzz_sharded_index(cli: Callable[..., Result], tmp_path: Path, case: int) -> None:
    rng = random.Random(2000 + case)
    folder = tmp_path / "in"
    folder.mkdir()
    index = _sharded(rng, folder)
    before = file_digests(folder)
    res = cli("inspect", rng.choice([index, folder]), "--json")
    _check(res, folder, before)
    if res.code == 0:
        doc = json.loads(res.stdout)
        names = [t["name"] for la in doc["layers"] for t in la["tensors"]]
        assert len(names) == len(set(names)) and set(names) == set(
            json.loads(index.read_text())["weight_map"]
        )
        out = folder / "o.safetensors"
        res = cli("reinit", index, "-s", "layers", "--layers", "*", "--value", "mean", "-o", out)
        _check(res, folder, before, out)
        if res.code == 0:
            assert set(load_file(out)) == set(names)


# --- reports and options ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def base_report() -> dict[str, Any]:
    from plastic.pipelines.diagnose import diagnose

    return diagnose(RESNET, CALIB, max_images=8, device="cpu").to_dict()


def _mutate_report(rng: random.Random, doc: dict[str, Any]) -> None:
    paths: list[tuple[Any, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                paths.append((node, k))
                walk(v)
        elif isinstance(node, list):
            for i, v in enumerate(node[:5]):
                paths.append((node, i))
                walk(v)

    walk(doc)
    for _ in range(rng.randint(1, 4)):
        parent, key = rng.choice(paths)
        try:
            if rng.random() < 0.3 and isinstance(parent, dict):
                parent.pop(key, None)
            else:
                parent[key] = rng.choice([_junk(rng), math.nan, math.inf, -1, "layer4.9.conv1", 10**6])
        except (IndexError, KeyError):
            pass


@pytest.mark.parametrize("case", _cases(30))
def test_fuzz_report(
    cli: Callable[..., Result], tmp_path: Path, case: int, base_report: dict[str, Any]
) -> None:
    rng = random.Random(3000 + case)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(RESNET, folder / "m.safetensors")
    doc = json.loads(json.dumps(base_report))
    doc["checkpoint"]["path"] = "m.safetensors"  # relative: resolved against the report's folder
    _mutate_report(rng, doc)
    text = json.dumps(doc)
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text))]
    rep = folder / "r.json"
    rep.write_text(text)
    before = file_digests(folder)
    out = folder / "o.safetensors"
    strategy = rng.choice(["topk-layers", "auto", "dormant-units"])
    k = ["--k", "2"] if strategy == "topk-layers" else []  # --k does not apply to the others: refused
    res = cli("reinit", "--report", rep, "-s", strategy, *k, "-o", out)
    _check(res, folder, before, out)
    if res.code == 0:
        assert set(load_file(out)) == set(load_file(RESNET))


OPTION_VALUES: dict[str, list[str]] = {
    "--k": ["-1", "0", "1", "3", "999", "x", "1e3", str(2**70)],
    "--fraction": ["0", "1", "0.5", "-0.1", "nan", "inf", "1.0000001", "1e-9"],
    "--shrink": ["0", "1", "nan", "-inf", "1e308", "-2", "0.4"],
    "--perturb": ["0", "nan", "inf", "1e-300", "3"],
    "--seed": ["0", "-1", str(2**63 - 1), str(2**63), str(2**64), "1.5"],
    "--value": ["resample", "mean", "zero", ""],
    "--unit": ["layer", "block", "unit"],
    "--tau": ["0", "1", "nan", "-0.1", "2"],
    "--max-images": ["0", "1", "-5"],
    "--device": ["cpu", "cuda:7", "tpu", "cuda:-1", ""],
    "--layers": ["*", "", "layer4.*", "[", "nothing"],
    "--utility": ["magnitude", "random", "gradient", "none"],
}


@pytest.mark.parametrize("case", _cases(50))
def test_fuzz_options(
    cli: Callable[..., Result], tmp_path: Path, case: int, base_report: dict[str, Any]
) -> None:
    rng = random.Random(4000 + case)
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(RESNET, folder / "m.safetensors")
    doc = json.loads(json.dumps(base_report))
    doc["checkpoint"]["path"] = "m.safetensors"
    rep = folder / "r.json"
    rep.write_text(json.dumps(doc))
    before = file_digests(folder)
    strategy = rng.choice(["topk-layers", "shrink-perturb", "weights", "layers", "head", "from-block"])
    args: list[str] = []
    for opt in rng.sample(sorted(OPTION_VALUES), rng.randint(1, 4)):
        args += [opt, rng.choice(OPTION_VALUES[opt])]
    if strategy == "weights" and "--utility" not in args:
        args += ["--utility", "random"]
    if "--utility" in args and args[args.index("--utility") + 1] == "gradient":
        args[args.index("--utility") + 1] = (
            "magnitude"  # the gradient probe is tested elsewhere; keep it fast
        )
    out = folder / "o.safetensors"
    res = cli("reinit", "--report", rep, "-s", strategy, *args, "-o", out)
    _check(res, folder, before, out)
    if res.code == 0:
        new = load_file(out)
        assert all(bool(torch.isfinite(t.float()).all()) for t in new.values() if t.is_floating_point())


# --- hub config.json files (issue 20: every preprocessing and architecture field) ------------------------

CONFIG_FIELDS: dict[str, list[Any]] = {
    "pretrained_cfg.input_size": [[3, 32, 32], [3, 0, 0], [3, -8, 8], [3, 0.5, 0.5], [3, 60000, 60000],
                                  [1, 32, 32], [3, 32], "3,32,32", [True, 32, 32], [3, 2**70, 2]],
    "pretrained_cfg.mean": [[0.5] * 3, [0.5], ["a", "b", "c"], [], [math.nan] * 3, "x", [1e308, 0, 0]],
    "pretrained_cfg.std": [[0.5] * 3, [0, 0, 0], [-1, 1, 1], [math.inf] * 3, None, [1e-30] * 3],
    "pretrained_cfg.interpolation": ["bilinear", "bicubic", "evil", "", 3, None, "random"],
    "pretrained_cfg.crop_pct": [0.875, 1.15, -1, 0, 3, "0.9", True, math.nan],
    "pretrained_cfg.crop_mode": ["center", "squash", "border", "evil", 1],
    "pretrained_cfg.tag": ["r160_in1k", "evil.tag", "nosuchtag", "", "../x", 5, "\x1b[2J"],
    "model_args.in_chans": [3, 1, -3, 0, 2**40, "3", True],
    "num_classes": [10, -5, 0, 2**40, "10", None],
    "architecture": ["test_resnet", "test_resnet.r160_in1k", "nosuch_model", "test_resnet.nosuchtag", "",
                     "test_resnet.evil.tag", "resnet18"],
}  # fmt: skip


@pytest.mark.parametrize("case", _cases(24))
def test_fuzz_hub_config(cli: Callable[..., Result], tmp_path: Path, case: int) -> None:
    """A timm hub folder whose config.json was edited: every field either works or is named in the error."""
    rng = random.Random(5000 + case)
    folder = tmp_path / "in"
    (folder / "hub").mkdir(parents=True)
    shutil.copy(RESNET, folder / "hub" / "model.safetensors")
    doc: dict[str, Any] = {"architecture": "test_resnet", "num_classes": 10,
                           "pretrained_cfg": {"input_size": [3, 32, 32]}}  # fmt: skip
    for field in rng.sample(sorted(CONFIG_FIELDS), rng.randint(1, 3)):
        *parents, leaf = field.split(".")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = rng.choice(CONFIG_FIELDS[field])
    text = json.dumps(doc)
    if rng.random() < 0.1:
        text = text[: rng.randrange(len(text))]
    (folder / "hub" / "config.json").write_text(text)
    before = file_digests(folder)
    res = cli("reinit", folder / "hub", "-s", "head", "--dry-run", "--json")
    _check(res, folder, before)
    if res.code == 0:  # the config was usable: diagnose with it must be too, or say why in one line
        calib = folder / "calib"
        for i, src in enumerate(sorted(CALIB.rglob("*.png"))[:4]):
            (calib / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
            shutil.copy(src, calib / f"c{i % 2}" / src.name)
        before = file_digests(folder)
        res = cli("diagnose", folder / "hub", "--data", calib, "--no-reference", "--json", "-q")
        _check(res, folder, before)


# --- odd tensors: dtypes, values, names ------------------------------------------------------------------

ODD_DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.float64, torch.int8, torch.uint8,
              torch.int32, torch.int64, torch.bool, torch.float8_e4m3fn, torch.complex64]  # fmt: skip
ODD_NAMES = ["fc.weight", "fc.bias", "conv.weight", "norm.weight", "norm.running_var", "cls_token",
             "\x1b[31mred.weight", "\u202eevil.weight", "[/b]markup.weight", "a..b.weight", ".weight",
             "blocks.0.attn.qkv.weight"]  # fmt: skip


def _odd_tensor(rng: random.Random) -> torch.Tensor:
    shape = rng.choice([(), (0,), (4,), (3, 4), (2, 3, 3, 3), (1, 1), (0, 5)])
    t = torch.randn(shape) * rng.choice([1.0, 1e-30, 1e30, 0.0])
    if t.numel() and rng.random() < 0.3:
        t.view(-1)[rng.randrange(t.numel())] = rng.choice([math.nan, math.inf, -math.inf])
    dtype = rng.choice(ODD_DTYPES)
    if dtype == torch.bool:
        return t > 0
    if dtype in (torch.int8, torch.uint8, torch.int32, torch.int64):
        return torch.nan_to_num(t).clamp(-100, 100).to(dtype)
    return t.to(dtype)


@pytest.mark.parametrize("case", _cases(30))
def test_fuzz_odd_tensors(cli: Callable[..., Result], tmp_path: Path, case: int) -> None:
    """Odd dtypes, empty and scalar shapes, inf/NaN values, hostile names: inspect lists them (no warning,
    escaped in tables), reinit changes them or refuses in one line, never writes a new non-finite value."""
    rng = random.Random(6000 + case)
    folder = tmp_path / "in"
    folder.mkdir()
    state = {name: _odd_tensor(rng) for name in rng.sample(ODD_NAMES, rng.randint(1, 6))}
    src = folder / "m.safetensors"
    save_file(state, str(src))
    before = file_digests(folder)
    for fmt in ("json", "table", "markdown"):
        res = cli("inspect", src, "--format", fmt)
        _check(res, folder, before)
        if res.code == 0 and fmt != "json":
            assert "\x1b" not in res.stdout and "\u202e" not in res.stdout
    out = folder / "o.safetensors"
    strategy = rng.choice([["-s", "layers", "--layers", "*"], ["-s", "shrink-perturb"],
                           ["-s", "weights", "--utility", "random"], ["-s", "layers", "--layers", "*",
                           "--value", "mean"]])  # fmt: skip
    res = cli("reinit", src, *strategy, "-o", out)
    _check(res, folder, before, out)
    if res.code == 0:
        new = load_file(out)
        assert set(new) == set(state)
        for name, t in new.items():
            assert t.dtype == state[name].dtype and t.shape == state[name].shape
            if t.is_floating_point() and t.dtype != torch.float8_e4m3fn:
                was_finite = torch.isfinite(state[name].float())
                assert bool(torch.isfinite(t.float())[was_finite].all()), name


# --- hostile calibration folders -------------------------------------------------------------------------


def _hostile_entry(rng: random.Random, folder: Path, i: int) -> None:
    from PIL import Image

    sub = folder / rng.choice(["a", "b", "a/deep/er", "\x1b[1mbold", "\u202eright"])
    sub.mkdir(parents=True, exist_ok=True)
    name = sub / f"{i}{rng.choice(['.png', '.jpg', '.PNG', '.gif', '.webp', '.tif'])}"
    kind = rng.randrange(12)
    if kind == 0:
        os.mkfifo(name)
    elif kind == 1:
        name.symlink_to("/dev/zero")
    elif kind == 2:
        name.symlink_to(folder / "nowhere.png")
    elif kind == 3:
        name.write_bytes(b"")
    elif kind == 4:
        name.write_text("not an image")
    elif kind == 5:  # a truncated real image
        data = next(CALIB.rglob("*.png")).read_bytes()
        name.write_bytes(data[: rng.randrange(1, len(data))])
    elif kind == 6:
        name.mkdir()
    elif kind == 7:  # a 16-bit grayscale, a palette with transparency, a 1-pixel image
        mode = rng.choice(["I;16", "P", "RGBA", "1", "CMYK", "F"])
        img = Image.new(mode, (rng.choice([1, 7, 64]), rng.choice([1, 9, 64])))
        img.save(name.with_suffix(".png") if mode in ("I;16", "1", "P", "RGBA") else name.with_suffix(".tif"))
    elif kind == 8:  # a PNG header claiming 65535 x 65535 (a decompression bomb)
        data = bytearray(next(CALIB.rglob("*.png")).read_bytes())
        data[16:24] = struct.pack(">II", 65535, 65535)
        name.write_bytes(bytes(data))
    elif kind == 9:  # a loop
        with contextlib.suppress(FileExistsError):
            (sub / "loop").symlink_to(folder)
    else:  # a real one
        shutil.copy(rng.choice(sorted(CALIB.rglob("*.png"))), name.with_suffix(".png"))


@pytest.mark.parametrize("case", _cases(12))
def test_fuzz_calibration_folder(cli: Callable[..., Result], tmp_path: Path, case: int) -> None:
    """diagnose on a folder of FIFOs, devices, links, broken and odd images: it ends (never blocks),
    with a report that counts what it skipped, or one Error line."""
    rng = random.Random(7000 + case)
    folder = tmp_path / "in"
    calib = folder / "calib"
    calib.mkdir(parents=True)
    for i in range(rng.randint(1, 8)):
        _hostile_entry(rng, calib, i)
    shutil.copy(RESNET, folder / "m.safetensors")
    before = file_digests(folder)
    res = cli("diagnose", folder / "m.safetensors", "--data", calib, "--no-reference", "--json", "-q",
              "-b", rng.choice(["1", "4", "32"]))  # fmt: skip
    _check(res, folder, before)
    if res.code == 0:
        doc = json.loads(res.stdout)
        cal = doc["calibration"]
        assert cal["images_used"] >= 1 and cal["images_skipped"] == len(cal["skipped"])
