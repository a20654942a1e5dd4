"""Every kind of bad checkpoint gives one ``Error:`` line, exit 2, and no traceback."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from tests.conftest import CALIB, RESNET, Result, expect_error


def _header(path: Path, header: dict[str, object], data: bytes) -> Path:
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def test_missing_file(cli: Callable[..., Result], tmp_path: Path) -> None:
    expect_error(cli("inspect", tmp_path / "nope.safetensors"), "no such file")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_empty_file(cli: Callable[..., Result], tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"empty{suffix}"
    p.touch()
    expect_error(cli("inspect", p), "empty")


def test_truncated_safetensors(cli: Callable[..., Result], tmp_path: Path) -> None:
    p = tmp_path / "cut.safetensors"
    p.write_bytes(RESNET.read_bytes()[:-1000])
    expect_error(cli("inspect", p), "truncated")
    # cut inside the header too
    p.write_bytes(RESNET.read_bytes()[:100])
    expect_error(cli("inspect", "--no-stats", p), "truncated")


def test_truncated_torch(cli: Callable[..., Result], tmp_path: Path) -> None:
    full = tmp_path / "full.pt"
    torch.save({"w": torch.randn(64, 64)}, full)
    p = tmp_path / "cut.pt"
    p.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    expect_error(cli("inspect", p), "cut.pt")


@pytest.mark.parametrize("suffix", [".safetensors", ".pt", ".bin"])
def test_random_bytes(cli: Callable[..., Result], tmp_path: Path, suffix: str) -> None:
    p = tmp_path / f"noise{suffix}"
    p.write_bytes(os.urandom(4096))
    expect_error(cli("inspect", p), p.name)


def test_header_lies_about_size(cli: Callable[..., Result], tmp_path: Path) -> None:
    p = _header(
        tmp_path / "size.safetensors",
        {"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}},
        b"\0" * 32,
    )
    expect_error(cli("inspect", p), "needs 64 bytes")


def test_header_lies_about_offsets(cli: Callable[..., Result], tmp_path: Path) -> None:
    hdr = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    expect_error(cli("inspect", _header(tmp_path / "ov.safetensors", hdr, b"\0" * 12)), "overlaps")
    hdr = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    expect_error(cli("inspect", _header(tmp_path / "past.safetensors", hdr, b"\0" * 4)), "truncated")
    hdr = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}}
    expect_error(cli("inspect", _header(tmp_path / "neg.safetensors", hdr, b"\0" * 8)), "data_offsets")


def test_header_length_implausible(cli: Callable[..., Result], tmp_path: Path) -> None:
    p = tmp_path / "huge.safetensors"
    p.write_bytes(struct.pack("<Q", 2**60) + b"{}")
    expect_error(cli("inspect", p), "implausible")


def test_unknown_extension(cli: Callable[..., Result], tmp_path: Path) -> None:
    p = tmp_path / "weights.h5"
    p.write_bytes(b"\x89HDF\r\n")
    expect_error(cli("inspect", p), "unknown checkpoint extension")


class _Evil:
    """Unpickling this would create a file: the payload plastic must refuse and never run."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.target, "w"))


@pytest.mark.parametrize("legacy", [False, True])
def test_pickle_that_needs_code_is_refused(cli: Callable[..., Result], tmp_path: Path, legacy: bool) -> None:
    target = tmp_path / "pwned.txt"
    p = tmp_path / "evil.pt"
    torch.save(
        {"state_dict": {"w": torch.zeros(2)}, "hook": _Evil(str(target))},
        p,
        _use_new_zipfile_serialization=not legacy,
    )
    res = cli("inspect", p)
    expect_error(res, "refused", "open")
    assert not target.exists()


def test_container_without_state_dict(cli: Callable[..., Result], tmp_path: Path) -> None:
    p = tmp_path / "odd.pt"
    torch.save({"epoch": 3, "weights": [1, 2, 3]}, p)
    expect_error(cli("inspect", p), "no state dict found", "--key")
    torch.save({"state_dict": {"w": torch.zeros(2)}}, p)
    expect_error(cli("inspect", "--key", "nope", p), "no entry 'nope'")


def test_key_on_safetensors_is_usage_error(cli: Callable[..., Result]) -> None:
    expect_error(cli("inspect", "--key", "state_dict", RESNET), "--key")


def test_index_with_missing_shard(cli: Callable[..., Result], tmp_path: Path) -> None:
    save_file({"a": torch.zeros(2)}, tmp_path / "s1.safetensors")
    index = tmp_path / "m.safetensors.index.json"
    index.write_text(json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s2.safetensors"}}))
    expect_error(cli("inspect", index), "missing")
    index.write_text(json.dumps({"weight_map": {"a": "s1.safetensors", "b": "s1.safetensors"}}))
    expect_error(cli("inspect", index), "lacks")
    index.write_text("{not json")
    expect_error(cli("inspect", index), "not a safetensors index")


def test_debug_shows_traceback(cli: Callable[..., Result], tmp_path: Path) -> None:
    p = tmp_path / "noise.safetensors"
    p.write_bytes(os.urandom(64))
    res = cli("inspect", p, env={"PLASTIC_DEBUG": "1"})
    assert res.code == 2
    assert "Traceback" in res.stderr and res.stderr.rstrip().splitlines()[-1].startswith("Error: ")


def test_a_failed_diagnose_in_a_pipe_gives_one_error_each_and_says_which_came_first(tmp_path: Path) -> None:
    """`diagnose ... --json | reinit`: diagnose's own error, then reinit's, which points back at it."""
    import subprocess
    import sys

    cmd = (
        f"{sys.executable} -m plastic diagnose {tmp_path / 'missing.safetensors'} --data {CALIB} --json"
        f" | {sys.executable} -m plastic reinit --strategy auto -o {tmp_path / 'out.safetensors'}"
    )
    proc = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=120)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(lines) == 2 and all(ln.startswith("Error: ") for ln in lines), proc.stderr
    assert "missing.safetensors" in proc.stderr and "its own error is the line above" in proc.stderr
    assert not (tmp_path / "out.safetensors").exists()


def test_inputs_the_model_refuses_are_an_input_error(cli: Callable[..., Result], tmp_path: Path) -> None:
    """A ViT built for 224 px fed 96 px images: the user's --input-size, not an internal error."""
    from tests.conftest import save_timm

    vit = save_timm("vit_tiny_patch16_224", tmp_path / "vit.safetensors", num_classes=3)
    res = cli("diagnose", vit, "--data", CALIB, "--input-size", "96", "--max-images", "4", "--device", "cpu")
    expect_error(res, "cannot run on the calibration images", "--input-size")
