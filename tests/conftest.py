"""Shared fixtures: the shipped samples, and a way to run the real CLI in-process or as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_checkpoints"
RESNET = SAMPLES / "test_resnet.mnist.safetensors"
VIT_PT = SAMPLES / "test_vit.mnist.pt"
MOBILENET = SAMPLES / "mobilenetv2_100.imagenet.safetensors"
CALIB = SAMPLES / "calib"


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    """Run ``plastic ARGS`` in-process through the real entry point (fast: torch stays imported)."""
    from plastic.cli.app import main

    def run(*args: str | Path, env: dict[str, str] | None = None) -> Result:
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        monkeypatch.setattr(sys, "argv", ["plastic", *map(str, args)])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def run_subprocess(*args: str | Path, env: dict[str, str] | None = None, stdin: str | None = None) -> Result:
    """Run ``python -m plastic ARGS`` in a fresh interpreter (for import-time and pipe behaviour)."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "plastic", *map(str, args)],
        capture_output=True,
        text=True,
        env=full_env,
        input=stdin,
        timeout=600,
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)
