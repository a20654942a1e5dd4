"""The transfer benchmark's --quick mode runs end to end, so that the harness cannot rot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.mark.slow
def test_transfer_quick(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "transfer.py"
    cmd = [sys.executable, str(script), "--scenario", "1", "--quick", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*__seed0.json")]
    names = {r["condition"] for r in runs}
    assert {
        "scratch",
        "finetune",
        "topk-layer-k3",
        "random-block-k1",
        "dormant-units",
        "shrink-perturb",
        "auto-lr3x",
        "from-layer1.0",  # from-block at every stage boundary above the stem
        "from-layer4.0",
    } <= names
    assert len(runs) == 26 and all(len(r["test_acc"]) == 2 and 0.0 <= r["final"] <= 1.0 for r in runs)
    assert all(r["changed_tensors"] > 0 for r in runs if r["condition"].startswith(("topk", "random")))
    summary = (tmp_path / "summary.md").read_text()
    assert "| finetune |" in summary and "epochs to 95% of best" in summary
    assert not list(tmp_path.glob("_reinit_*"))  # intermediate checkpoints cleaned up
