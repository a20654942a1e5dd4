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


# What a reinit folder output holds (a hub folder's files): --force replaces a folder of only these, never
# one holding anything else (a training run's logs, other checkpoints' subfolders)
FOLDER_OUTPUT_FILES = (".safetensors", ".json", ".bin", ".pt", ".pth", ".ckpt", ".tar", ".md", ".txt")


def check_folder_target(target: Path, *, inputs: Iterable[Path] = (), force: bool = False) -> Path:
    """An output folder (``reinit -o DIR`` of a hub folder): new, or an empty folder; with ``force`` also
    a folder that holds only a hub folder's files (weights, JSON configs, a model card), which is then
    replaced whole. Never the input's folder, and never one holding anything else: plastic does not
    delete what it cannot tell is a checkpoint."""
    real = Path(os.path.realpath(target))
    for p in inputs:
        if p.exists() and Path(os.path.realpath(p)).parent == real:
            raise OutputError(f"{target}: holds the input {p}; choose a new folder name")
    if real.exists():
        if not real.is_dir():
            raise OutputError(f"{target}: exists and is not a folder; choose a new folder name")
        entries = sorted(real.iterdir())
        if entries and not force:
            raise OutputError(
                f"{target}: a folder that is not empty; choose a new folder name, or pass --force to "
                "replace it (a folder of checkpoint files only)"
            )
        other = [
            e
            for e in entries
            if e.is_symlink() or not e.is_file() or not e.name.endswith(FOLDER_OUTPUT_FILES)
        ]
        if other:
            raise OutputError(
                f"{target}: holds {other[0].name}, which is not a checkpoint file: --force replaces only a "
                "folder of weights, configs and a model card; choose a new folder name"
            )
    if not real.parent.exists():
        raise OutputError(f"{real.parent}: no such folder")
    return real


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths in one step (Linux ``renameat2(RENAME_EXCHANGE)``); False where not available."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def atomic_folder(target: Path, *, replace: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside ``target``; when the block ends without error it becomes ``target``
    (a new name, or in place of an empty folder) in one rename, so a reader never sees half a folder.

    ``replace``: an existing folder (checked by :func:`check_folder_target`) is kept until the new one is
    complete, then swapped with it in one step (Linux; elsewhere two renames, the old one restored if the
    second fails) and deleted.
    """
    import shutil

    real = Path(os.path.realpath(target))
    tmp = Path(tempfile.mkdtemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent))
    ok = False
    try:
        yield tmp
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o777 & ~mask)  # mkdtemp makes 0700: give the folder the usual permissions
        if replace and real.is_dir() and any(True for _ in real.iterdir()):
            _swap_in(tmp, real, target)  # tmp now holds the old folder
            shutil.rmtree(tmp, ignore_errors=True)
            ok = True
            return
        try:
            os.rename(tmp, real)  # replaces an empty folder; fails on a non-empty one
        except OSError as e:
            raise OutputError(
                f"{target}: could not be created ({e.strerror}); choose a new folder name"
            ) from None
        ok = True
    finally:
        if not ok:
            shutil.rmtree(tmp, ignore_errors=True)


def _swap_in(new: Path, real: Path, target: Path) -> None:
    """``new`` becomes ``real``; the old ``real`` is left at ``new``'s name for the caller to delete."""
    if _exchange(new, real):
        return
    old = Path(tempfile.mkdtemp(prefix=f".{real.name}.", suffix=".old", dir=real.parent))
    os.rmdir(old)
    os.rename(real, old)
    try:
        os.rename(new, real)
    except OSError as e:
        os.rename(old, real)  # put the old folder back: nothing lost
        raise OutputError(f"{target}: could not be replaced ({e.strerror})") from None
    os.rename(old, new)
