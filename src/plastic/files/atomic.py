"""Atomic output files: write a temp file in the target folder, fsync, then move it into place.

A reader never sees a half-written file, and an interrupted run (Ctrl-C, SIGTERM, crash) leaves the old
file or nothing, never a partial one. Without ``--force`` the final name is created exclusively (a hard
link, which fails when the name exists), so two concurrent runs cannot silently replace each other.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from plastic.errors import OutputError


def final_path(target: Path) -> Path:
    """Where the bytes really go: a symlink is followed (the link stays, its target is replaced)."""
    return Path(os.path.realpath(target)) if target.is_symlink() else target


def _same_file(a: Path, b: Path) -> bool:
    """Same path after resolving, or the same inode (hard links, bind mounts)."""
    try:
        return a.resolve() == b.resolve() or os.path.samefile(a, b)
    except OSError:
        return False


def check_distinct(outputs: Iterable[tuple[str, Path]]) -> None:
    """Refuse two outputs of one command that would land on the same file (after ``..``, symlinks and
    hard links): the second write would silently replace the first."""
    seen: list[tuple[str, Path]] = []
    for flag, path in outputs:
        real = Path(os.path.realpath(path))
        for other_flag, other in seen:
            if real == other or _same_file(real, other):
                raise OutputError(f"{flag} {path} and {other_flag} name the same file; give each its own")
        seen.append((flag, real))


def check_target(
    target: Path,
    *,
    inputs: Iterable[Path] = (),
    force: bool = False,
    exist_ok: bool = False,
    force_flag: str | None = "--force",
) -> Path:
    """Refuse an output that is an input (without ``force``), exists (unless allowed) or is not a file.

    ``inputs`` are every file the command reads (all shards, the index, the report, the images).
    ``force_flag`` is the option that would allow overwriting the input (None: the command has none).
    Returns the path the bytes will be written to (symlinks followed).
    """
    real = final_path(target)
    if real.exists() or real.is_symlink():
        for p in inputs:
            if p.exists() and _same_file(real, p) and not (force and force_flag):
                hint = (
                    f"; choose another path or pass {force_flag}" if force_flag else "; choose another path"
                )
                same = "" if p == target else f" ({p})"
                raise OutputError(f"{target}: refusing to overwrite the input{same}{hint}")
        try:
            mode = real.stat().st_mode
        except OSError:
            raise OutputError(f"{target}: a link to nowhere; choose another path") from None
        if stat.S_ISDIR(mode):
            raise OutputError(f"{target}: is a folder")
        if not stat.S_ISREG(mode):
            raise OutputError(f"{target}: not a regular file (a device, pipe or socket); choose a file path")
        if not (force or exist_ok):
            raise OutputError(f"{target}: already exists; pass --force to overwrite it")
    if not real.parent.exists():
        raise OutputError(f"{real.parent}: no such folder")
    return real


def _publish(tmp: str, target: Path, replace: bool) -> None:
    """Move ``tmp`` to ``target``; without ``replace`` fail if ``target`` appeared in the meantime."""
    if replace:
        os.replace(tmp, target)
        return
    try:
        os.link(tmp, target)  # atomic create-if-absent
    except FileExistsError:
        raise OutputError(
            f"{target}: already exists (written by another process meanwhile); pass --force to overwrite it"
        ) from None
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
            raise
        # A file system without hard links: the best we can do is a late existence check.
        if target.exists():
            raise OutputError(f"{target}: already exists; pass --force to overwrite it") from None
        os.replace(tmp, target)
        return
    os.unlink(tmp)


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """A write error (disk full, file too large under ``ulimit -f``) names the output, not a temp file."""
    try:
        yield
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EIO):
            raise OSError(e.errno, e.strerror, str(target)) from None
        raise


@contextlib.contextmanager
def atomic_writer(target: Path, *, replace: bool = True, mode: int | None = None) -> Iterator[BinaryIO]:
    """Yield a binary file in ``target``'s folder; on success it becomes ``target`` atomically.

    ``replace=False`` refuses to replace a file that exists when the write completes. ``mode`` sets the
    permission bits (default: 0666 less the umask, as for any new file).
    """
    target = final_path(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    ok = False
    try:
        with _naming(target), os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if mode is None:
            mask = os.umask(0)
            os.umask(mask)
            mode = 0o666 & ~mask  # mkstemp makes 0600; give the file the usual permissions
        os.chmod(tmp, mode & 0o777)  # permission bits only: never set-uid, set-gid or sticky
        _publish(tmp, target, replace)
        ok = True
    finally:
        if not ok:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)


def write_text(target: Path, text: str, *, replace: bool = True) -> None:
    with atomic_writer(target, replace=replace) as f:
        f.write(text.encode("utf-8"))


def check_folder_target(target: Path, *, inputs: Iterable[Path] = ()) -> Path:
    """An output folder (``reinit -o DIR`` of a hub folder): new, or an empty folder; never one that
    holds an input or anything else (plastic does not delete what it did not write)."""
    real = Path(os.path.realpath(target))
    if real.exists():
        if not real.is_dir():
            raise OutputError(f"{target}: exists and is not a folder; choose a new folder name")
        if any(True for _ in real.iterdir()):
            raise OutputError(f"{target}: a folder that is not empty; choose a new folder name")
    for p in inputs:
        if p.exists() and Path(os.path.realpath(p)).parent == real:
            raise OutputError(f"{target}: holds the input {p}; choose a new folder name")
    if not real.parent.exists():
        raise OutputError(f"{real.parent}: no such folder")
    return real


@contextlib.contextmanager
def atomic_folder(target: Path) -> Iterator[Path]:
    """Yield a temp folder beside ``target``; when the block ends without error it becomes ``target``
    (a new name, or in place of an empty folder) in one rename, so a reader never sees half a folder."""
    real = Path(os.path.realpath(target))
    tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent))
    ok = False
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700: give the folder the usual permissions
        try:
            os.rename(tmp, real)  # replaces an empty folder; fails on a non-empty one
        except OSError as e:
            raise OutputError(
                f"{target}: could not be created ({e.strerror}); choose a new folder name"
            ) from None
        ok = True
    finally:
        if not ok:
            import shutil

            shutil.rmtree(tmp, ignore_errors=True)
