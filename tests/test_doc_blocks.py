"""Every command and code block in README.md and docs/ runs as printed (issue 32): the shell lines in a
folder where the files they name exist (small stand-ins: the shipped test ResNet for ``model.safetensors``
and ``m.safetensors``, a few calibration images for ``./calib``), the Python blocks as they are, the JSON
shapes against the documents' TypedDicts. The few lines that cannot run inside the test suite (installs,
the suite itself, a benchmark that rewrites BENCHMARKS.md) are listed in ``NOT_RUN`` with why, and a test
fails on any other line that is not run: a new command in the docs is tested or named here."""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import plastic
from tests.conftest import CALIB, MOBILENET, RESNET, ROOT, SAMPLES, VIT_PT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# line prefix -> why it is not run here
NOT_RUN = {
    "pip install": "installs: the environment running the suite is that install",
    "python -m pytest": "the test suite itself (.ci/run)",
    "python benchmarks/": "a benchmark that rewrites BENCHMARKS.md (benchmarks/ are run by hand)",
    "ruff check": "the developer checks (run before every commit, not by the suite)",
    "mypy": "the developer checks (run before every commit, not by the suite)",
}


def blocks(lang: str) -> list[tuple[str, str]]:
    """(file name, body) of every fenced block of ``lang`` in README.md and docs/*.md."""
    found = []
    for doc in DOCS:
        for m in re.finditer(r"```(\w*)\n(.*?)```", doc.read_text(), re.S):
            if m.group(1) == lang:
                found.append((doc.name, m.group(2)))
    return found


def shell_lines(body: str) -> list[list[str]]:
    """A bash block's command lines, each as its ``&&`` chain: continuation lines joined, comments
    dropped."""
    text = re.sub(r"\s*\\\n\s*", " ", body)
    out = []
    for line in text.splitlines():
        line = re.sub(r"\s+#\s.*$", "", line).strip()  # a trailing comment (never inside these quotes)
        if line and not line.startswith("#"):
            out.append([part.strip() for part in line.split(" && ")])
    return out


def _skipped(part: str) -> bool:
    return any(part.startswith(prefix) for prefix in NOT_RUN)


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The files the docs' commands name, small: run in a copy of this folder, each line afresh."""
    d = tmp_path_factory.mktemp("stand_ins")
    for name in ("model.safetensors", "m.safetensors"):
        shutil.copy(RESNET, d / name)
    for folder in ("calib", "labelled"):  # class subfolders, 4 images a class: enough for --trial
        for cls in ("bear", "bird", "cat"):
            (d / folder / cls).mkdir(parents=True)
            for img in sorted((CALIB / cls).iterdir())[:4]:
                shutil.copy(img, d / folder / cls / img.name)
    sd = load_file(RESNET)
    torch.save({"epoch": 3, "model_ema": sd}, d / "train.pth.tar")
    names = sorted(sd)
    (d / "shards").mkdir()
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2 :])):
        fname = f"model-{i + 1:05d}-of-00002.safetensors"
        save_file({k: sd[k] for k in part}, d / "shards" / fname, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, fname))
    (d / "shards" / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    (d / "sample_checkpoints").symlink_to(SAMPLES)
    return d


def _run(line: str, folder: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(folder / "summary.md"), "COLUMNS": "100"}
    bindir = str(Path(sys.executable).parent)  # the `plastic` script of this install
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    return subprocess.run(["bash", "-c", "set -o pipefail; " + line], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


CHAINS = [chain for _, body in blocks("bash") for chain in shell_lines(body)]
# each line as it runs: its chain without the parts that cannot run here (an install before the job)
RUN = [" && ".join(kept) for chain in CHAINS if (kept := [p for p in chain if not _skipped(p)])]


def test_every_shell_line_is_run_or_named_as_not_run() -> None:
    assert len(CHAINS) >= 12 and len(RUN) >= 10
    unknown = [p for chain in CHAINS for p in chain if not _skipped(p) and not p.startswith("plastic ")]
    assert not unknown, f"commands neither run here nor in NOT_RUN: {unknown}"


@pytest.mark.parametrize("line", RUN, ids=lambda s: s[:60].replace(" ", "_"))
def test_the_shell_line_runs_as_printed(line: str, stand_ins: Path, tmp_path: Path) -> None:
    folder = tmp_path / "work"
    shutil.copytree(stand_ins, folder, symlinks=True)
    proc = _run(line, folder)
    allowed = (0, 1) if "--fail-on" in line else (0,)  # 1: findings over --fail-on, as documented
    assert proc.returncode in allowed, (line, proc.returncode, proc.stderr[-1500:])
    assert "Traceback" not in proc.stderr
    if "GITHUB_STEP_SUMMARY" in line:
        assert (folder / "summary.md").read_text().strip()


def test_the_python_blocks_of_docs_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The docs' Python blocks (the README's are run by tests/test_api.py), with the files they load
    written first by plastic itself."""
    found = [(name, body) for name, body in blocks("python") if name != "README.md"]
    assert found
    monkeypatch.chdir(tmp_path)
    plastic.reinit_checkpoint(MOBILENET, "head", "out.safetensors")
    plastic.reinit_checkpoint(VIT_PT, "head", "out.pth.tar")
    for name, body in found:
        exec(compile(body, f"{name} block", "exec"), {"__name__": "doc_block"})


def _keys(shape: str) -> set[str]:
    """The key names a schematic JSON block spells (``{"name", "shape", "dtypes": {...}}``): quoted words
    before a comma, a colon or a closing bracket, not after a colon (those are example values)."""
    return set(re.findall(r'(?<!:)(?<!: )"([a-z_0-9]+)"\s*(?=[,:}\]])', shape))


def _all_keys(value: object) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for v in value.values() for k in _all_keys(v)}
    if isinstance(value, list):
        return {k for v in value for k in _all_keys(v)}
    return set()


def test_the_json_shapes_in_the_docs_name_only_document_keys(cli: Any, tmp_path: Path) -> None:
    """The schematic JSON blocks of docs/commands.md name keys that real documents have (no stale or
    misspelt name): inspect, diagnose (with --fail-on's findings, a from-block verdict and a trial
    section) and reinit documents of the samples, and the TypedDicts' fields."""
    from tests.test_documents_model import trial_result

    res = cli("diagnose", MOBILENET, "--data", CALIB, "--max-images", "16", "--json", "--fail-on", "score>=0")
    assert res.code == 1, res.stderr  # every layer is a finding
    diagnosed = json.loads(res.stdout)
    diagnosed["trial"] = trial_result().to_dict()
    docs = [
        plastic.inspect_checkpoint(RESNET).to_dict(),
        diagnosed,
        plastic.reinit_checkpoint(MOBILENET, "auto", tmp_path / "o.safetensors", report=diagnosed).to_dict(),
    ]
    from typing import get_type_hints, is_typeddict

    from plastic.documents import schema

    typed = {
        k for t in vars(schema).values() if isinstance(t, type) and is_typeddict(t) for k in get_type_hints(t)
    }
    options = {f.name for f in dataclasses.fields(plastic.Options)}  # a recommendation's options
    known = typed | options | {k for d in docs for k in _all_keys(d)} | {"figure"}  # the estimates' example
    shapes = [body for name, body in blocks("json") if name == "commands.md"]
    assert len(shapes) >= 3
    stale = sorted(k for body in shapes for k in _keys(body) if k not in known)
    assert not stale, stale


def test_the_shape_reader_takes_keys_not_values() -> None:
    """The known answer: keys listed, keyed and nested are read; a value after a colon is not."""
    assert _keys('{"name", "devise": "cpu", "arch": {"pick"}, "rows": [{"a"}]}') == {
        "name", "devise", "arch", "pick", "rows", "a"
    }  # fmt: skip
    assert shell_lines('plastic a x \\\n  | plastic b  # note\n# comment\npip install . && plastic c\n') == [
        ["plastic a x | plastic b"], ["pip install .", "plastic c"]
    ]  # fmt: skip
