"""Shared fixtures: the shipped samples, and a way to run the real CLI in-process or as a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n: one process per core already; one thread each (torch's and its children's), not a core
    # each times the workers, which would make every CPU-bound test slower
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    # execnet gives its workers COLUMNS=80 and LINES=24: a terminal that is not there. The tests that
    # are about a width set COLUMNS themselves; the others expect what a pipe gets
    for name in ("COLUMNS", "LINES"):
        os.environ.pop(name, None)

if "PLASTIC_CACHE_DIR" not in os.environ:
    # the reference cache (measure/refcache.py) of this test process: never the user's own
    import atexit
    import shutil
    import tempfile

    os.environ["PLASTIC_CACHE_DIR"] = tempfile.mkdtemp(prefix="plastic-test-cache-")
    atexit.register(shutil.rmtree, os.environ["PLASTIC_CACHE_DIR"], True)

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_checkpoints"
RESNET = SAMPLES / "test_resnet.mnist.safetensors"
VIT_PT = SAMPLES / "test_vit.mnist.pt"
MOBILENET = SAMPLES / "mobilenetv2_100.imagenet.safetensors"
CALIB = SAMPLES / "calib"


@pytest.fixture(autouse=True)
def _seeded_torch() -> None:
    """Every test starts from the same global RNG state, so a test's random inputs cannot make CI flaky.

    Tests that are about seeds pass their own; this only pins the draws a test does not think about.
    """
    import torch

    torch.manual_seed(0)


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Result]]:
    """Run ``plastic ARGS`` in-process through the real entry point (fast: torch stays imported)."""
    from plastic.cli.main import main

    opened: list[Any] = []  # stdin files given to run()

    def run(
        *args: str | Path,
        env: dict[str, str] | None = None,
        own_signal: bool = False,
        stdin: Path | None = None,
    ) -> Result:
        """``own_signal``: the test itself delivers a stop signal during the command (and checks the
        exit code). Otherwise a stop signal that reaches the command came from outside (CI cancelling
        the run, Ctrl-C): it is handed on to pytest, which stops, instead of failing this one test.
        ``stdin``: a file the command reads as its standard input, as ``plastic ... < FILE`` (a real
        descriptor: the CLI tells a file or pipe from a terminal by it); a real pipe needs a process."""
        import plastic.cli.main as entry

        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        if stdin is not None:
            opened.append(open(stdin, encoding="utf-8"))  # noqa: SIM115 (closed when the test ends)
            monkeypatch.setattr(sys, "stdin", opened[-1])
        monkeypatch.setattr(sys, "argv", ["plastic", *map(str, args)])
        capsys.readouterr()
        code = 0
        handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        assert {s: signal.getsignal(s) for s in handlers} == handlers, "main() left its signal handlers"
        if entry._received and not own_signal:
            signal.raise_signal(entry._received[0])
        out, err = capsys.readouterr()
        return Result(code, out, err)

    yield run
    monkeypatch.undo()  # sys.stdin back before its file closes
    for f in opened:
        f.close()


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


def plastic_process(*args: str | Path, **kw: Any) -> Result:
    """``python -m plastic ARGS`` in a fresh interpreter (no launcher in between), with subprocess.run's
    own keywords (``preexec_fn`` to close a stream or set a limit, ``stdin``)."""
    proc = subprocess.run(
        [sys.executable, "-m", "plastic", *map(str, args)], capture_output=True, text=True, timeout=300, **kw
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def expect_error(res: Result, *needles: str) -> str:
    """The README's contract for bad input: exit 2, nothing on stdout, one ``Error:`` line, no traceback."""
    assert res.code == 2, res
    assert res.stdout == "", res.stdout[:500]
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.stderr[-2000:]
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def json_doc(res: Result) -> dict[str, Any]:
    """The JSON document a successful ``--json`` run printed."""
    assert res.code == 0, res.stderr[-3000:]
    doc = json.loads(res.stdout)
    assert isinstance(doc, dict)
    return doc


def save_timm(
    arch: str, path: Path, *, seed: int = 0, metadata: dict[str, str] | None = None, **kw: Any
) -> Path:
    """A freshly initialised (seeded) timm model saved as safetensors: a real file with known weights."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    state = timm.create_model(arch, pretrained=False, **kw).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata=metadata or {"arch": arch})
    return path


def file_digests(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) -> its bytes, to prove that nothing changed."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def run_light(*args: str | Path) -> str:
    """``plastic ARGS`` in a fresh interpreter that must not import torch or timm; its stdout."""
    code = (
        f"import sys; sys.argv=['plastic', *{[str(a) for a in args]!r}]\n"
        "from plastic.cli.main import main\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules and 'timm' not in sys.modules, 'heavy import'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
