"""The second adversarial round (issue 20), items 10-13: what the process meets from outside: failed
writes, closed standard streams, memory limits, and the smaller cases. Items 1-9 (inputs) are in
``test_adversarial.py``.
"""

from __future__ import annotations

import os
import pickle
import resource
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

from plastic.errors import ResourceError
from tests.conftest import CALIB, RESNET, Result, expect_error, plastic_process

# --- 10. a write that fails (disk full, ulimit -f) is one clear line, for every format --------------------


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_file_size_limit_gives_one_clear_error_and_no_file(
    cli: Callable[..., Result], tmp_path: Path, suffix: str
) -> None:
    """``ulimit -f`` on this very process for the one command (Python ignores SIGXFSZ, so the write
    fails with EFBIG, as on a full disk it fails with ENOSPC)."""
    out = tmp_path / f"o{suffix}"
    saved = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (500_000, saved[1]))  # bytes; the sample is 1.5 MB
    try:
        res = cli("reinit", RESNET, "-s", "head", "-o", out)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, saved)
    expect_error(res, f"File too large: {out}")
    assert list(tmp_path.iterdir()) == []


# --- 11. closed standard streams --------------------------------------------------------------------------


def _closing(fd: int) -> Callable[[], None]:
    return lambda: os.close(fd)


def test_closed_stdin_is_a_usage_error_not_a_crash(tmp_path: Path) -> None:
    proc = plastic_process(
        "reinit", "-s", "head", "-o", tmp_path / "o.safetensors", stdin=None, preexec_fn=_closing(0)
    )
    expect_error(proc, "no checkpoint: give CKPT")


def test_closed_stdout_writes_the_file_and_exits_as_sigpipe(tmp_path: Path) -> None:
    out = tmp_path / "o.safetensors"
    proc = subprocess.run(
        [sys.executable, "-m", "plastic", "reinit", str(RESNET), "-s", "head", "-o", str(out), "--json"],
        stderr=subprocess.PIPE, text=True, timeout=300, preexec_fn=_closing(1),
    )  # fmt: skip
    assert proc.returncode == 141 and proc.stderr == ""
    assert set(load_file(out)) == set(load_file(RESNET))


def test_closed_stderr_keeps_exit_code_2_for_a_usage_error() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "plastic", "inspect", "--no-such-option"],
        stdout=subprocess.PIPE, timeout=300, preexec_fn=_closing(2),
    )  # fmt: skip
    assert proc.returncode == 2 and proc.stdout == b""


# --- 12. memory: a failure to allocate is one Error line that says what to change -------------------------


def test_an_address_space_too_small_for_torch_is_one_error_line() -> None:
    """Under ``ulimit -v`` 1.5 GiB PyTorch's C++ start-up would abort (exit 134): plastic checks first."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, resource.RLIM_INFINITY))

    proc = plastic_process("diagnose", RESNET, "--data", CALIB, preexec_fn=limit)
    expect_error(proc, "PyTorch cannot start under this process's address-space limit")


def test_an_allocation_failure_in_the_pass_suggests_smaller_batches() -> None:
    """A real allocation failure of PyTorch's CPU allocator (2**60 floats), not a fake one."""
    import timm

    from plastic.measure.onepass import PassSettings, one_pass

    def batches(_size: int) -> Any:
        yield [0], torch.empty(1 << 60), []

    model = timm.create_model("test_resnet", num_classes=10)
    with pytest.raises(
        ResourceError, match=r"out of memory during the data pass \(batch_size=.*lower batch_size"
    ):
        one_pass(
            [model],
            batches,
            PassSettings(torch.zeros(1, dtype=torch.long), 10, 1, 32, 0, torch.device("cpu")),
        )


# --- 13. the smaller ones ---------------------------------------------------------------------------------


def test_outputs_never_copy_set_uid_set_gid_or_sticky_bits(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    src = tmp_path / "m.safetensors"
    shutil.copy(RESNET, src)
    os.chmod(src, 0o7777)
    out = tmp_path / "o.safetensors"
    assert cli("reinit", src, "-s", "head", "-o", out).code == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o777


@pytest.mark.parametrize(
    ("strategy", "extra", "needle"),
    [
        ("shrink-perturb", ["--value", "mean"], "--value does not apply to --strategy shrink-perturb"),
        ("head", ["--k", "5", "--include-head"], "--k, --include-head do not apply to --strategy head"),
        ("from-block", ["--from", "layer4", "--fraction", "0.5"], "--fraction does not apply"),
        ("layers", ["--layers", "fc.*", "--shrink", "0.9"], "--shrink does not apply"),
    ],
)
def test_options_the_strategy_does_not_read_are_refused(
    cli: Callable[..., Result], tmp_path: Path, strategy: str, extra: list[str], needle: str
) -> None:
    expect_error(cli("reinit", RESNET, "-s", strategy, *extra, "-o", tmp_path / "o.safetensors"), needle)


@pytest.mark.parametrize("value", ["0", "-0.5", "1.5", "nan", "inf"])
def test_fraction_has_one_range_in_every_message(
    cli: Callable[..., Result], tmp_path: Path, value: str
) -> None:
    res = cli("reinit", RESNET, "-s", "weights", "--fraction", value, "-o", tmp_path / "o.safetensors")
    expect_error(res, "--fraction must be a number in (0, 1]")


def test_an_unreadable_pickle_never_echoes_torchs_weights_only_false_advice(tmp_path: Path) -> None:
    from plastic.errors import UnsafeCheckpointError
    from plastic.files.torch_file import torch_load

    class Runs:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, ("true",))

    bad = tmp_path / "raw.pt"
    bad.write_bytes(pickle.dumps({"a": Runs()}, protocol=4))  # not even a torch file: a bare pickle
    with pytest.raises(UnsafeCheckpointError) as err:
        torch_load(bad)
    message = str(err.value)
    assert "never loads pickles with weights_only=False" in message
    assert "Re-running" not in message and "will likely succeed" not in message


def test_a_report_larger_than_the_cap_is_refused(cli: Callable[..., Result], tmp_path: Path) -> None:
    from plastic.documents.reports import MAX_REPORT_BYTES

    rep = tmp_path / "big.json"
    with open(rep, "wb") as f:  # sparse
        f.truncate(MAX_REPORT_BYTES + 1)
    expect_error(cli("reinit", "--report", rep, "-s", "auto", "-o", tmp_path / "o.safetensors"), "32 MiB")
