"""Writing the output checkpoint, streaming, atomically, byte-for-byte where nothing changed.

safetensors: the header is ours (same keys, dtypes, shapes and data layout as the input), untouched
tensors are copied as raw bytes from the input file, changed ones are written from their new values;
peak memory is one changed tensor. PyTorch: the input's container is rebuilt around a state dict
whose untouched entries are the input's own (memory-mapped) tensors.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import struct
import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from plastic.errors import CheckpointError
from plastic.files.atomic import atomic_writer
from plastic.files.checkpoint import Checkpoint, TensorInfo
from plastic.files.containers import resolve_container
from plastic.files.st_header import DTYPE_TO_ST
from plastic.files.torch_file import torch_load


@dataclass(frozen=True)
class Target:
    """Where and how to write: replace an existing file only with --force; keep the input's mode."""

    path: Path
    replace: bool = False
    mode: int | None = None


NewValue = Callable[[TensorInfo], torch.Tensor | None]  # None: unchanged
COPY_CHUNK = 16 << 20


@dataclass(frozen=True)
class LateValue:
    """A metadata value known only once the data is written (the source's SHA-256, hashed in a thread
    while the kernel copies): a placeholder of ``length`` characters goes into the header, and the
    value is written over it before the file is published."""

    length: int
    get: Callable[[], str]


def tensor_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b""


def write_safetensors(
    ckpt: Checkpoint,
    out: Target | Path,
    new_value: NewValue,
    metadata: dict[str, str],
    late: dict[str, LateValue] | None = None,
) -> dict[str, str]:
    """Stream ``ckpt`` into a safetensors file at ``out``, replacing the tensors ``new_value`` returns.

    Returns the metadata as written (``late`` values filled in)."""
    late = late or {}
    metadata = {**metadata, **{k: "0" * v.length for k, v in late.items()}}
    header: dict[str, Any] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for info in ckpt.tensors:  # storage order: for safetensors inputs, the input's own layout
        header[info.key] = {
            "dtype": DTYPE_TO_ST[info.dtype],
            "shape": list(info.shape),
            "data_offsets": [offset, offset + info.nbytes],
        }
        offset += info.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the format pads the header to 8-byte alignment with spaces
    # where each placeholder sits: `"key":"000..."` occurs once (quotes inside JSON strings are escaped)
    spots = {k: 8 + raw.index(f'{json.dumps(k)}:"'.encode()) + len(json.dumps(k)) + 2 for k in late}
    out = out if isinstance(out, Target) else Target(out, replace=True)
    with atomic_writer(out.path, replace=out.replace, mode=out.mode) as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        run: list[TensorInfo] = []  # untouched tensors that lie back to back in one input file
        for info in ckpt.tensors:
            new = new_value(info)
            if new is None and ckpt.format.startswith("safetensors"):
                if run and not _follows(ckpt, run[-1], info):
                    _copy_raw(ckpt, run, f)
                    run = []
                run.append(info)
                continue
            if run:
                _copy_raw(ckpt, run, f)
                run = []
            f.write(
                tensor_bytes(
                    new.to(getattr(torch, info.dtype)) if new is not None else ckpt.tensor(info.name)
                )
            )
        if run:
            _copy_raw(ckpt, run, f)
        f.flush()
        if late:  # make the data durable while the late values finish (the hash thread runs meanwhile);
            os.fsync(f.fileno())  # the final fsync then has only the header's page left to write
        for k, v in late.items():
            value = v.get()
            if len(value) != v.length or json.dumps(value) != f'"{value}"':  # escapes non-ASCII too
                raise ValueError(f"{k}: a late metadata value must be {v.length} plain ASCII characters")
            os.pwrite(f.fileno(), value.encode("ascii"), spots[k])  # over its placeholder, same length
            metadata[k] = value
    return metadata


def _follows(ckpt: Checkpoint, prev: TensorInfo, info: TensorInfo) -> bool:
    a, b = ckpt.entries[prev.key], ckpt.entries[info.key]
    return ckpt.file_of(prev) == ckpt.file_of(info) and a.end == b.start


def _copy_raw(ckpt: Checkpoint, run: list[TensorInfo], f: BinaryIO) -> None:
    """Copy the input bytes of back-to-back tensors in the kernel (``copy_file_range``, else
    ``sendfile``, else read/write), without passing them through Python."""
    first, last = ckpt.entries[run[0].key], ckpt.entries[run[-1].key]
    path = ckpt.file_of(run[0])
    f.flush()  # the buffered header and tensors go first; the copy then writes at the fd's position
    out_fd = f.fileno()
    at = os.lseek(out_fd, 0, os.SEEK_CUR)
    with open(path, "rb") as src:
        start, left = first.start, last.end - first.start
        while left:
            n = _kernel_copy(src.fileno(), out_fd, start, min(left, COPY_CHUNK))
            if n == 0:
                raise CheckpointError(
                    f"{path}: ended early while copying {run[0].key}: the file was truncated or replaced "
                    "while plastic was reading it"
                )
            start_writeback(out_fd, at, n)
            at += n
            start += n
            left -= n


def _kernel_copy(src: int, dst: int, offset: int, count: int) -> int:
    """Copy up to ``count`` bytes from ``src`` at ``offset`` to ``dst`` at its position; bytes copied."""
    for copy in (_copy_file_range, _sendfile):
        try:
            return copy(src, dst, offset, count)
        except OSError as e:
            if e.errno not in (errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF):
                raise
    data = os.pread(src, count, offset)
    os.write(dst, data)  # a regular file: one write takes all of it
    return len(data)


SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>: start writing the range's dirty pages, do not wait


@functools.cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux only; Python's os module has no binding), else None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def start_writeback(fd: int, offset: int, count: int) -> None:
    """Ask the kernel to start writing ``count`` bytes at ``offset`` to the disk now, so the final fsync
    finds them written rather than writing all of them then (ViT-L: the 0.5 s fsync overlaps the copy).
    A hint: where it is unsupported nothing happens, and durability still comes from that fsync."""
    fn = _sync_file_range()
    if fn is not None:
        fn(fd, offset, count, SYNC_FILE_RANGE_WRITE)  # an error (a pipe, an odd file system) is ignored


def _copy_file_range(src: int, dst: int, offset: int, count: int) -> int:
    if not hasattr(os, "copy_file_range"):
        raise OSError(errno.ENOSYS, "no copy_file_range")
    return os.copy_file_range(src, dst, count, offset_src=offset)


def _sendfile(src: int, dst: int, offset: int, count: int) -> int:
    if not hasattr(os, "sendfile"):
        raise OSError(errno.ENOSYS, "no sendfile")
    return os.sendfile(dst, src, offset, count)


# Entries of a training checkpoint that describe the run, not the model: stale after a re-initialization.
RUN_STATE = frozenset(
    {"optimizer", "optimizer_states", "lr_schedulers", "scheduler", "loops", "callbacks", "scaler"}
)


def _holds_tensor(v: Any) -> bool:
    if isinstance(v, torch.Tensor):
        return True
    if isinstance(v, dict):
        return any(_holds_tensor(x) for x in v.values())
    if isinstance(v, list | tuple):
        return any(_holds_tensor(x) for x in v)
    return False


def _describes_the_model(key: str, v: Any) -> bool:
    """Kept by default: scalars and tensor-free metadata (Lightning's ``hyper_parameters``, which
    ``load_from_checkpoint`` needs); dropped: the run's state (optimizer moments, loops) and other tensors."""
    return key not in RUN_STATE and not _holds_tensor(v)


def write_torch(
    ckpt: Checkpoint, out: Target | Path, new_value: NewValue, metadata: dict[str, str], *, keep_extra: bool
) -> list[str]:
    """A PyTorch file with the input's container structure (bare dicts stay bare). Returns the
    container's entries left out (the run's state: optimizer moments, an EMA of the old weights), so
    that the caller can say so."""
    # the input's kind of dict: torch.save(model.state_dict()) writes an OrderedDict whose _metadata
    # (module versions) some loaders need, kept as it was; a plain dict stays plain
    state: dict[str, torch.Tensor] = {} if ckpt.module_versions is None else OrderedDict()
    for info in ckpt.tensors:
        new = new_value(info)
        state[info.key] = new.to(getattr(torch, info.dtype)) if new is not None else ckpt.tensor(info.name)
    if ckpt.module_versions is not None:
        state._metadata = dict(ckpt.module_versions)  # type: ignore[attr-defined]
    obj: Any = state
    dropped: list[str] = []
    if ckpt.format == "torch" and ckpt.container_key is not None:
        original = torch_load(ckpt.path)
        resolve_container(ckpt.path, original, ckpt.container_key)
        obj = {}
        for k, v in original.items():
            if k == ckpt.container_key:
                obj[k] = state
            elif keep_extra or _describes_the_model(str(k), v):
                obj[k] = v  # epoch, arch, hyper_parameters ... always; optimizer state only with --keep-extra
            else:
                dropped.append(str(k))
        obj["plastic"] = dict(metadata)
    out = out if isinstance(out, Target) else Target(out, replace=True)
    with atomic_writer(out.path, replace=out.replace, mode=out.mode) as f:
        sink = _Sink(f)
        try:
            torch.save(obj, sink)  # type: ignore[arg-type]  # a writable file object is all it needs
        except RuntimeError:
            if sink.error is not None:  # torch's zip writer turns a failed write into its own message
                raise sink.error from None
            raise
    return dropped


class _Sink:
    """The file torch.save writes to, keeping the OSError of a failed write (disk full, ``ulimit -f``):
    torch reports it only as ``enforce fail at inline_container.cc``, which says nothing to a user."""

    def __init__(self, f: BinaryIO) -> None:
        self.f = f
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()
