"""The ``plastic`` process: the entry point around the Typer app. It owns what a process owns: signal
handlers (installed for the call, restored after), the standard streams (closed or read-only ones),
the one ``Error:`` line and the exit codes (0 ok, 1 --fail-on findings, 2 usage or input error, 128 + N
for a signal, 141 for a closed stdout).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import traceback
from typing import Any

import typer

from plastic.cli import StdoutClosed
from plastic.cli.app import app, printable
from plastic.errors import CLI_SPELLING, MEMORY_HINT, PlasticError, ResourceError, is_allocation_failure


def _fail(message: str) -> None:
    """The one ``Error:`` line; a stderr that cannot be written (closed, full) leaves the exit code."""
    try:
        if os.environ.get("PLASTIC_DEBUG") == "1":
            traceback.print_exc(file=sys.stderr)
        sys.stderr.write(f"Error: {printable(message)}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


class Interrupted(BaseException):
    """Ctrl-C, SIGTERM or SIGHUP, raised by our handler: click would turn a KeyboardInterrupt into exit 1,
    which means "findings" here. Unwinding runs every ``finally`` (temp files removed, hooks taken off)."""


_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")
_received: list[int] = []  # the signal that stopped us, also when a library turned it into another error


def _on_signal(signum: int, _frame: object) -> None:
    _received.append(signum)
    if len(_received) == 1:
        raise Interrupted


def _interrupted() -> None:
    try:
        sys.stderr.write("Interrupted.\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass
    signum = _received[0] if _received else signal.SIGINT
    sys.exit(128 + int(signum))


def _click_errors() -> tuple[tuple[type[Exception], ...], tuple[type[BaseException], ...]]:
    """Usage-error and abort classes of the click that typer uses (its own vendored copy since 0.29)."""
    usage: set[type[Exception]] = {c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError"}
    aborts: set[type[BaseException]] = {typer.Abort}
    try:
        import click

        usage.add(click.exceptions.UsageError)
        aborts.add(click.exceptions.Abort)
    except ImportError:
        pass
    return tuple(usage), tuple(aborts)


def _exit_code(
    e: Exception, usage_errors: tuple[type[Exception], ...], aborts: tuple[type[BaseException], ...]
) -> int:
    """The exit code for an exception out of the app, after its one ``Error:`` line."""
    if isinstance(e, aborts):
        _interrupted()
    if isinstance(e, typer.Exit):
        return int(e.exit_code)
    if isinstance(e, usage_errors):  # click's own 4-line usage block, as one line
        ctx = getattr(e, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _fail(" ".join(str(getattr(e, "format_message", e.__str__)()).split()) + where)
        return 2
    if _received:  # a signal that a library (torch.save's C++ writer) turned into its own error
        _interrupted()
    if isinstance(e, PlasticError):
        _fail(str(e))
    elif is_allocation_failure(e):  # outside the data pass (which says more): building, reading, writing
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else "MemoryError"
        _fail(f"out of memory ({first}); {MEMORY_HINT}")
    elif isinstance(e, ImportError) and "failed to map segment" in str(e):
        _fail(f"a library could not be loaded ({e}): not enough address space; raise the limit (ulimit -v)")
    elif isinstance(e, OSError):  # unreadable file, permission denied, disk full: input/output problems
        _fail(f"{e.strerror or e.__class__.__name__}: {e.filename or ''}".rstrip(": "))
    else:  # a bug: still one line, but say so
        _fail(f"internal error ({e.__class__.__name__}: {e}); rerun with PLASTIC_DEBUG=1 and report it")
    return 2


def _writable(stream: Any) -> bool:
    """Can this standard stream be written? Python sets a stream closed at startup (``>&-``) to None;
    a launcher (a shell shim) may leave a read-only file on its descriptor instead."""
    if stream is None:
        return False
    try:
        import fcntl

        flags = fcntl.fcntl(stream.fileno(), fcntl.F_GETFL)
    except (ImportError, OSError, ValueError, AttributeError):  # no descriptor (captured): a Python stream
        return True
    return flags & os.O_ACCMODE in (os.O_WRONLY, os.O_RDWR)


def _check_torch_loads() -> None:
    """Under an address-space cap (``ulimit -v``) PyTorch's C++ start-up can abort the whole process
    (``std::bad_alloc``, exit 134) before Python could catch anything. With a finite cap, and only then,
    import torch once in a child under the same cap first (a few seconds): if it dies, say so in one
    ``Error:`` line instead of aborting."""
    try:
        import resource
    except ImportError:  # not Unix
        return
    soft, _hard = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY or "torch" in sys.modules or not _needs_torch(sys.argv[1:]):
        return
    import subprocess

    try:
        proc = subprocess.run(
            [sys.executable, "-c", "import torch"], capture_output=True, timeout=300, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return  # could not tell: go on, the command reports what it meets
    if proc.returncode != 0:
        raise ResourceError(
            f"PyTorch cannot start under this process's address-space limit (ulimit -v {soft >> 10} KiB): "
            "raise the limit (it needs a few GiB of address space, more with CUDA builds)"
        )


def _needs_torch(args: list[str]) -> bool:
    """diagnose and reinit always import torch; inspect only for PyTorch pickles."""
    if not args or args[0] in ("-h", "--help", "--version", "strategies"):
        return False
    if args[0] == "inspect":
        return not any(a.endswith((".safetensors", ".json")) for a in args[1:]) or any(
            a.endswith((".pt", ".pth", ".bin", ".ckpt", ".tar")) for a in args[1:]
        )
    return "-h" not in args and "--help" not in args


STDOUT_CLOSED = 128 + 13  # as a shell reports a process ended by SIGPIPE


def main() -> None:
    """Entry point: every PlasticError or usage error becomes one ``Error:`` line and exit 2; Ctrl-C,
    SIGTERM and SIGHUP print ``Interrupted.`` and exit 128 + the signal number (130 for Ctrl-C).

    ``PLASTIC_DEBUG=1`` prints the traceback as well.
    """
    usage_errors, aborts = _click_errors()
    _received.clear()
    if not _writable(sys.stderr):  # started with 2>&-: messages have nowhere to go, exit codes still hold
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (lives as long as the process)
    closed_stdout = not _writable(sys.stdout)  # >&-: run, write files, then exit as `| head` would
    if closed_stdout:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
    saved: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for name in _STOP_SIGNALS:
            if hasattr(signal, name):
                signum = getattr(signal, name)
                saved[signum] = signal.signal(signum, _on_signal)
    spelling = CLI_SPELLING.set(True)  # the library's messages name options as the command line does
    try:
        _main(usage_errors, aborts, closed_stdout)
    finally:  # called in-process (a test, a notebook): leave the caller's handlers as they were
        CLI_SPELLING.reset(spelling)
        for signum, handler in saved.items():
            signal.signal(signum, handler)


def _main(
    usage_errors: tuple[type[Exception], ...], aborts: tuple[type[BaseException], ...], closed_stdout: bool
) -> None:
    """Run the app; every way out is a SystemExit with the exit code."""
    stdout = sys.stdout
    try:
        _check_torch_loads()
        code = app(prog_name="plastic", standalone_mode=False)
    except (KeyboardInterrupt, Interrupted):
        _interrupted()
    except StdoutClosed:  # rich's table or text met a closed stdout (`| head`)
        sys.exit(STDOUT_CLOSED)
    except SystemExit:
        # plain writes (--json) that met a closed stdout: click swaps in quiet streams and exits 1, which
        # a pipeline would read as --fail-on findings; exit as a process that SIGPIPE ended instead.
        # The files a command writes are written before its results are printed.
        if sys.stdout is not stdout:
            sys.exit(STDOUT_CLOSED)
        raise
    except Exception as e:
        sys.exit(_exit_code(e, usage_errors, aborts))
    code = code if isinstance(code, int) else 0
    sys.exit(STDOUT_CLOSED if closed_stdout and code == 0 else code)
