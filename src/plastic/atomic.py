"""Atomic output files: write a temp file in the target folder, fsync, then rename over the target.

A reader never sees a half-written file, and an interrupted run (Ctrl-C, crash) leaves the old file
or nothing, never a partial one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from plastic.errors import OutputError


def check_target(
    target: Path, *, inputs: Iterable[Path] = (), force: bool = False, exist_ok: bool = False
) -> None:
    """Refuse to write over an input (without ``force``) or an existing file (unless allowed)."""
    resolved = target.resolve()
    for p in inputs:
        if p.exists() and resolved == p.resolve() and not force:
            raise OutputError(
                f"{target}: refusing to overwrite the input; choose another path or pass --force"
            )
    if target.exists() and not (force or exist_ok):
        raise OutputError(f"{target}: already exists; pass --force to overwrite it")
    if target.exists() and target.is_dir():
        raise OutputError(f"{target}: is a folder")
    if not target.parent.exists():
        raise OutputError(f"{target.parent}: no such folder")


@contextlib.contextmanager
def atomic_writer(target: Path) -> Iterator[BinaryIO]:
    """Yield a binary file in ``target``'s folder; on success it replaces ``target`` atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    ok = False
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, target)
        ok = True
    finally:
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_text(target: Path, text: str) -> None:
    with atomic_writer(target) as f:
        f.write(text.encode("utf-8"))
