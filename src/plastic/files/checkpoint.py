"""Checkpoint I/O: one entry point, :func:`open_checkpoint`, for every file a user may hand over.

Formats: ``.safetensors`` (with or without ``__metadata__``), sharded ``*.safetensors.index.json`` (or a
folder holding one), and PyTorch pickles (``.pt``, ``.pth``, ``.pth.tar``, ``.bin``, ``.ckpt``) loaded
with ``torch.load(weights_only=True)`` only. The result is a lazy view: names, shapes and dtypes come
from headers; tensor data is read (memory-mapped) only when asked for, one tensor at a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plastic.errors import CheckpointError, UsageError
from plastic.files.containers import container_metadata, resolve_container
from plastic.files.hub_config import CONFIG_NAME, HubConfig, read_hub_config
from plastic.files.st_header import StEntry, StHeader, read_header
from plastic.files.torch_file import torch_load

if TYPE_CHECKING:
    import torch

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")
# Buffers, not parameters: counted as tensors but not in parameter counts.
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
# safetensors dtypes numpy reads directly (little-endian, as the format stores them)
NUMPY_DTYPES = {
    "float64": "<f8", "float32": "<f4", "float16": "<f2", "int64": "<i8", "int32": "<i4", "int16": "<i2",
    "int8": "i1", "uint64": "<u8", "uint32": "<u4", "uint16": "<u2", "uint8": "u1", "bool": "?",
}  # fmt: skip
FLOAT_DTYPES = frozenset({"float64", "float32", "float16", "bfloat16"})


@dataclass(frozen=True)
class TensorInfo:
    """What a checkpoint says about one tensor, without its data."""

    name: str  # key with wrapper prefixes stripped: what timm's state_dict() calls it
    key: str  # key exactly as stored in the file
    shape: tuple[int, ...]
    dtype: str  # torch-style name: "float32", "bfloat16", "int64", ...
    nbytes: int
    file: str = ""  # shard file name for sharded checkpoints

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def is_float(self) -> bool:
        return self.dtype in FLOAT_DTYPES

    @property
    def is_parameter(self) -> bool:
        """Heuristic without the model: floating tensors that are not norm running statistics."""
        return self.is_float and not self.name.endswith(BUFFER_SUFFIXES)


class _Hashing(threading.Thread):
    """The fingerprint computed off the main thread; its result (or error) is read after ``join``."""

    def __init__(self, files: list[Path]) -> None:
        super().__init__(name="plastic-sha256", daemon=True)
        self.files = files
        self.digest: str | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.digest = sha256_of(self.files)
        except BaseException as e:  # re-raised on the main thread by compute_sha256
            self.error = e


HASH_CHUNK = 256 << 10  # one cache-sized buffer: 1.1 s for 1.2 GB here, against 1.5 s in 16 MB reads


def sha256_of(files: list[Path]) -> str:
    """SHA-256 over the files' bytes, one after the other."""
    h = hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    for path in files:
        with open(path, "rb", buffering=0) as f:
            while n := f.readinto(buf):
                h.update(view[:n])
    return h.hexdigest()


@dataclass
class _Open:
    """The open data behind a checkpoint and every renamed view of it: file descriptors, a torch file's
    tensors (by stored key), the fingerprint. Shared, so a view reads the same bytes without reopening
    anything, the fingerprint is computed once, and closing any of them closes all."""

    fds: dict[str, int] = field(default_factory=dict)
    state: dict[str, Any] | None = None  # torch formats: stored key -> tensor
    sha256: str | None = None
    hashing: _Hashing | None = None


@dataclass(frozen=True, eq=False)
class Checkpoint:
    """A lazy, immutable view of a checkpoint. Use as a context manager, or call :meth:`close`.

    Nothing changes it after :func:`open_checkpoint` returns: reading it under other names (a wrapper's
    prefix stripped, transformers' file names mapped to the model's) gives a new view over the same open
    files (:meth:`strip_prefix`, :meth:`renamed`), and what the architecture resolution decides (the
    channels, the evidence between look-alikes) travels in its own result, not in here.
    """

    path: Path
    format: str  # "safetensors" | "safetensors-sharded" | "torch" | "memory"
    size_bytes: int
    tensors: tuple[TensorInfo, ...]
    metadata: Mapping[str, str]
    container_key: str | None = None
    arch: str | None = None
    arch_source: str | None = None  # "option" | "config.json" | "metadata" | "checkpoint"
    stripped_prefixes: tuple[str, ...] = ()
    files: tuple[Path, ...] = ()
    entries: Mapping[str, StEntry] = field(default_factory=dict, repr=False)  # by stored key
    notes: tuple[str, ...] = ()  # what the reader decided on the user's behalf
    hub: HubConfig | None = None  # config.json beside the weights (timm's or transformers')
    in_chans: int | None = None  # input channels when not 3, as given: the option or config.json
    # a torch state dict's ``_metadata`` (module prefix -> {"version": n}, by stored key): what some
    # modules' loaders read (torchvision's MNASNet refuses a dict without it; BatchNorm's version)
    module_versions: Mapping[str, Any] | None = field(default=None, repr=False)
    renamed_names: bool = False  # a view under names the file does not use (:meth:`renamed`)
    _open: _Open = field(default_factory=_Open, repr=False)
    _by_name: dict[str, TensorInfo] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {t.name: t for t in self.tensors})

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def by_name(self) -> Mapping[str, TensorInfo]:
        return self._by_name

    @property
    def sha256(self) -> str | None:
        """SHA-256 of every input file's bytes, in order, once :meth:`compute_sha256` has run."""
        return self._open.sha256

    @property
    def input_files(self) -> list[Path]:
        """Every file this checkpoint was read from: the shards, the index, timm's config.json."""
        files = [*self.files, self.path] if self.format == "safetensors-sharded" else list(self.files)
        return [*files, self.hub.path] if self.hub is not None else files

    def compute_sha256(self) -> str:
        """The checkpoint's fingerprint: SHA-256 over every input file (index first, then shards)."""
        io = self._open
        if io.sha256 is None:
            job, io.hashing = io.hashing, None
            if job is not None:
                job.join()
                if job.error is not None:
                    raise job.error
            io.sha256 = job.digest if job is not None and job.digest else sha256_of(self._hash_order)
        return io.sha256

    def hash_in_background(self) -> None:
        """Start :meth:`compute_sha256` in a thread: hashlib releases the GIL while it hashes, so the
        fingerprint of a 1 GB file is ready by the time a writer needs it instead of costing a second."""
        io = self._open
        if io.sha256 is None and io.hashing is None:
            io.hashing = _Hashing(self._hash_order)
            io.hashing.start()

    @property
    def _hash_order(self) -> list[Path]:
        return sorted(self.input_files, key=lambda p: (p != self.path, str(p)))

    def strip_prefix(self, prefix: str) -> Checkpoint:
        """This checkpoint with a wrapper's prefix (``model.``, ``backbone.``...) dropped from every
        tensor name: a new view over the same files.

        Stored keys are untouched, so an output keeps the input's names and its own loader reads it back.
        """
        if not prefix or not all(t.name.startswith(prefix) for t in self.tensors):
            raise CheckpointError(f"{self.path}: not every tensor name starts with {prefix!r}")
        n = len(prefix)
        tensors = tuple(dataclasses.replace(t, name=t.name[n:]) for t in self.tensors)
        return dataclasses.replace(self, tensors=tensors, stripped_prefixes=(*self.stripped_prefixes, prefix))

    def renamed(self, mapping: Mapping[str, str], why: str) -> Checkpoint:
        """This checkpoint with its tensors under the names their model uses (a transformers checkpoint
        in its library's older naming): a new view; stored keys are untouched, so an output keeps the
        file's own names."""
        new = [mapping.get(t.name, t.name) for t in self.tensors]
        if len(set(new)) != len(new):
            raise CheckpointError(f"{self.path}: renaming its tensors ({why}) makes two of them collide")
        tensors = tuple(dataclasses.replace(t, name=n) for t, n in zip(self.tensors, new, strict=True))
        note = f"{sum(a != b for a, b in mapping.items())} tensor names mapped: {why}"
        return dataclasses.replace(self, tensors=tensors, notes=(*self.notes, note), renamed_names=True)

    def versions_for_model(self) -> dict[str, Any] | None:
        """:attr:`module_versions` under the tensors' names (stripped wrapper prefixes dropped: the
        wrapped model's entries win over the wrapper's own), for ``load_state_dict``; None when the file
        has none, or when this view renamed its tensors (the file's versions name its own modules, not
        the model's; the caller falls back to the installed library's, whose names were checked)."""
        if self.module_versions is None or self.renamed_names:
            return None
        ranked: list[tuple[int, str, Any]] = []
        for key, value in self.module_versions.items():
            name, strips = key + ".", 0
            while hit := next((p for p in self.stripped_prefixes if name.startswith(p)), None):
                name, strips = name[len(hit) :], strips + 1
            ranked.append((strips, name[:-1], value))
        return {name: value for _strips, name, value in sorted(ranked, key=lambda r: r[0])}

    def file_of(self, info: TensorInfo) -> Path:
        """The file holding ``info``'s data: the shard the index assigns it to, or the file itself."""
        return self.path.parent / info.file if info.file else self.path

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor called ``name`` (stripped name). Safetensors data is memory-mapped, not copied."""
        info = self.by_name.get(name)
        if info is None:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}")
        if self._open.state is not None:
            return self._open.state[info.key]  # type: ignore[no-any-return]
        return self._st_tensor(info)

    def iter_tensors(self, names: list[str] | None = None) -> Iterator[tuple[TensorInfo, torch.Tensor]]:
        """Yield tensors in file order, one at a time, so that callers can stream over big files."""
        wanted = None if names is None else set(names)
        for info in self.tensors:
            if wanted is None or info.name in wanted:
                yield info, self.tensor(info.name)

    def _st_tensor(self, info: TensorInfo) -> torch.Tensor:
        """Read one tensor with checked reads (not a memory map): a file truncated or replaced while
        plastic runs gives a clear error instead of a SIGBUS."""
        import torch

        entry = self.entries[info.key]
        dtype = getattr(torch, info.dtype)
        if info.numel == 0:
            return torch.empty(info.shape, dtype=dtype)
        buf = torch.empty(entry.end - entry.start, dtype=torch.uint8)  # (nbytes,)
        read_exactly(self._fd(info), buf.numpy(), entry.start, self.file_of(info), info.key)
        return buf.view(dtype).view(info.shape)

    def _fd(self, info: TensorInfo) -> int:
        fds = self._open.fds
        fd = fds.get(info.file)
        if fd is None:
            fd = os.open(self.file_of(info), os.O_RDONLY)
            fds[info.file] = fd
        return fd

    def open_files(self) -> None:
        """Open every data file now (before reading from several threads)."""
        for info in self.tensors:
            if self._open.state is None:
                self._fd(info)

    def array(self, name: str, scratch: Any = None) -> Any:
        """The tensor as numpy, without importing torch for safetensors files: a numpy array, or
        ``weight_stats.Bf16`` (raw bits) for bfloat16. Torch files, and dtypes numpy lacks (float8),
        come back as torch tensors. ``scratch``: a uint8 buffer of at least the tensor's size to read
        into (reused memory reads ~5x faster than fresh pages); the result is a view into it."""
        import numpy as np

        info = self.by_name.get(name)
        if info is None:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}")
        np_dtype = NUMPY_DTYPES.get("uint16" if info.dtype == "bfloat16" else info.dtype)
        if self._open.state is not None or np_dtype is None:
            return self.tensor(name)
        if scratch is not None and scratch.nbytes >= info.nbytes:
            buf = scratch[: info.nbytes].view(np_dtype)  # (numel,)
        else:
            buf = np.empty(info.numel, dtype=np_dtype)  # (numel,)
        if info.numel:
            read_exactly(self._fd(info), buf, self.entries[info.key].start, self.file_of(info), info.key)
        shaped = buf.reshape(info.shape)
        if info.dtype == "bfloat16":
            from plastic.files.bf16 import Bf16

            return Bf16(shaped)
        return shaped

    def close(self) -> None:
        """Close the files (for every view of them)."""
        io = self._open
        for fd in io.fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        io.fds.clear()
        io.state = None


def read_exactly(fd: int, out: Any, offset: int, path: Path, what: str) -> None:
    """Fill the writable buffer ``out`` from ``fd`` at ``offset``; a short read is a CheckpointError."""
    view = memoryview(out).cast("B")
    done = 0
    while done < len(view):
        n = os.preadv(fd, [view[done:]], offset + done)
        if n == 0:
            raise CheckpointError(
                f"{path}: ended early while reading {what}: the file was truncated or replaced while "
                "plastic was reading it"
            )
        done += n


def checkpoint_files(path: str | Path) -> list[Path]:
    """The files that opening ``path`` reads (index and shards included), without reading tensors.

    Used to protect inputs from outputs before any long work starts; a path that cannot be resolved
    yields itself (opening it later gives the real error).
    """
    p = Path(path)
    extra = [p.parent / CONFIG_NAME] if p.is_file() else [p / CONFIG_NAME]
    if p.name == CONFIG_NAME:
        p = p.parent
    return [*_checkpoint_files(p), *(c for c in extra if c.is_file())]


def _checkpoint_files(p: Path) -> list[Path]:
    try:
        if p.is_dir():
            index = sorted(p.glob("*.safetensors.index.json"))
            if len(index) == 1:
                p = index[0]
            else:
                singles = sorted(p.glob("*.safetensors"))
                if not singles and (p / "pytorch_model.bin").is_file():
                    return [p / "pytorch_model.bin"]
                return singles if len(singles) == 1 else [p]
        if p.name.endswith(".safetensors.index.json"):
            doc = json.loads(p.read_text(encoding="utf-8"))
            names = sorted({str(v) for v in doc["weight_map"].values()})
            return [p, *(p.parent / _shard_name(p, n) for n in names)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError, CheckpointError):
        return [p]
    return [p]


def open_checkpoint(
    path: str | Path, *, key: str | None = None, arch: str | None = None, in_chans: int | None = None
) -> Checkpoint:
    """Open any supported checkpoint lazily.

    ``key`` picks the container entry of a training checkpoint (``state_dict``, ``model_ema``, ...);
    ``arch`` overrides the architecture name recorded in the file; ``in_chans`` the input channels a
    config.json beside it records.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or folder")
    if p.name == CONFIG_NAME and p.is_file():
        p = p.parent  # timm's hub layout: the config names the folder that holds the weights
    if p.is_dir():
        ckpt = _open_folder(p, key)
    elif p.name.endswith(".safetensors.index.json"):
        ckpt = _open_sharded(p)
    elif p.suffix == ".safetensors":
        ckpt = _open_safetensors(p)
    elif p.suffix in TORCH_SUFFIXES:
        ckpt = _open_torch(p, key)
    else:
        raise CheckpointError(
            f"{p}: unknown checkpoint extension {p.suffix or '(none)'!r}; expected .safetensors, "
            ".safetensors.index.json, .pt, .pth, .pth.tar, .bin or .ckpt"
        )
    if key is not None and ckpt.format != "torch":
        ckpt.close()
        raise UsageError(
            "--key applies to PyTorch training checkpoints only; safetensors files hold one dict"
        )
    hub = read_hub_config(ckpt.path.parent)
    named, source = None, None
    if arch:
        named, source = arch, "option"
    elif hub is not None:
        named, source = hub.architecture, "config.json"
    elif ckpt.metadata.get("args.model") or ckpt.metadata.get("arch"):
        named = ckpt.metadata.get("args.model") or ckpt.metadata["arch"]
        source = "metadata" if ckpt.format != "torch" else "checkpoint"
    chans = in_chans if in_chans is not None else hub.in_chans if hub is not None else None
    return dataclasses.replace(ckpt, hub=hub, arch=named, arch_source=source, in_chans=chans)


def from_state_dict(
    state: Mapping[str, torch.Tensor], *, path: Path, format: str, size_bytes: int | None = None,
    strip: bool = True, **fields: Any,
) -> Checkpoint:  # fmt: skip
    """A checkpoint over an in-memory state dict (a torch file's, or a live model's): no copy; with
    ``strip``, names lose DataParallel's and torch.compile's prefixes; ``fields``: the rest of
    :class:`Checkpoint`."""
    import torch

    mapping, stripped = _strip(list(state)) if strip else ({k: k for k in state}, [])
    fields.setdefault("module_versions", getattr(state, "_metadata", None))
    tensors = []
    for k, t in state.items():
        if t.layout != torch.strided:
            layout = str(t.layout).removeprefix("torch.")
            raise CheckpointError(f"{path}: tensor {k!r} is {layout}; plastic reads dense tensors only")
        dtype = str(t.dtype).removeprefix("torch.")
        tensors.append(TensorInfo(mapping[k], k, tuple(t.shape), dtype, t.numel() * t.element_size()))
    return Checkpoint(
        path=path, format=format, tensors=tuple(tensors), stripped_prefixes=tuple(stripped),
        size_bytes=sum(t.nbytes for t in tensors) if size_bytes is None else size_bytes,
        _open=_Open(state=dict(state)), **fields,
    )  # fmt: skip


def _strip(keys: list[str]) -> tuple[dict[str, str], list[str]]:
    """Map stored key -> clean name; raise if stripping makes two keys collide."""
    mapping: dict[str, str] = {}
    stripped: set[str] = set()
    for k in keys:
        name = k
        while name.startswith(STRIP_PREFIXES):
            pre = next(s for s in STRIP_PREFIXES if name.startswith(s))
            stripped.add(pre)
            name = name[len(pre) :]
        mapping[k] = name
    if len(set(mapping.values())) != len(mapping):
        raise CheckpointError("stripping 'module.'/'_orig_mod.' prefixes makes two tensor names collide")
    return mapping, sorted(stripped)


def _from_headers(
    path: Path,
    fmt: str,
    headers: list[tuple[str, StHeader, list[StEntry]]],
    metadata: dict[str, str],
) -> Checkpoint:
    """``headers``: (shard name relative to the index, or "", its header, the entries taken from it)."""
    all_keys = [e.key for _, _, taken in headers for e in taken]
    mapping, stripped = _strip(all_keys)
    tensors: list[TensorInfo] = []
    entries: dict[str, StEntry] = {}  # stored key -> where its bytes are
    for file, _h, taken in headers:
        for e in taken:
            tensors.append(TensorInfo(mapping[e.key], e.key, e.shape, e.dtype, e.end - e.start, file))
            entries[e.key] = e
    return Checkpoint(
        path=path,
        format=fmt,
        size_bytes=sum(h.size_bytes for _, h, _ in headers),
        tensors=tuple(tensors),
        metadata=metadata,
        stripped_prefixes=tuple(stripped),
        files=tuple(h.path for _, h, _ in headers),
        entries=entries,
    )


def _open_safetensors(p: Path) -> Checkpoint:
    h = read_header(p)
    return _from_headers(p, "safetensors", [("", h, h.entries)], h.metadata)


def _open_folder(p: Path, key: str | None) -> Checkpoint:
    index = sorted(p.glob("*.safetensors.index.json"))
    if len(index) == 1:
        return _open_sharded(index[0])
    singles = sorted(p.glob("*.safetensors"))
    if not index and len(singles) == 1:
        return _open_safetensors(singles[0])
    if not index and not singles and (p / "pytorch_model.bin").is_file():
        return _open_torch(p / "pytorch_model.bin", key)
    found = [f.name for f in index] or [f.name for f in singles]
    raise CheckpointError(
        f"{p}: a folder must hold exactly one *.safetensors.index.json or one *.safetensors file "
        f"(found {found or 'none'}); pass the file itself"
    )


def _shard_name(index_path: Path, name: object) -> str:
    """A shard name must be a relative path inside the index's folder (no absolute path, no '..')."""
    text = str(name)
    parts = text.replace("\\", "/").split("/")
    if (
        not isinstance(name, str)
        or not text
        or text.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
    ):
        raise CheckpointError(
            f"{index_path}: shard name {text!r} is not a relative path inside the index's folder; refused"
        )
    return text


def _open_sharded(index_path: Path) -> Checkpoint:
    try:
        doc = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map = doc["weight_map"] if isinstance(doc, dict) else None
    except (OSError, ValueError, KeyError, TypeError):
        weight_map = None
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(
            f"{index_path}: not a safetensors index (needs a non-empty 'weight_map' object)"
        )
    for k, v in weight_map.items():
        _shard_name(index_path, v)
        if not isinstance(k, str):
            raise CheckpointError(f"{index_path}: weight_map keys must be tensor names")
    shard_names = sorted(set(weight_map.values()))
    headers: list[tuple[str, StHeader, list[StEntry]]] = []
    ignored: list[str] = []
    for name in shard_names:
        shard = index_path.parent / name
        if not shard.is_file():
            raise CheckpointError(f"{index_path}: shard {name!r} is missing")
        h = read_header(shard)
        listed = {k for k, v in weight_map.items() if v == name}
        present = {e.key for e in h.entries}
        if listed - present:
            missing = sorted(listed - present)[:3]
            raise CheckpointError(f"{index_path}: shard {name!r} lacks tensors the index lists: {missing}")
        # The index is the truth: a tensor the index assigns elsewhere (or nowhere) is not read from here.
        ignored += sorted(present - listed)
        headers.append((name, h, [e for e in h.entries if e.key in listed]))
    raw_meta = doc.get("metadata") or {}
    metadata = {str(k): str(v) for k, v in raw_meta.items()} if isinstance(raw_meta, dict) else {}
    for _, h, _ in headers:  # the first shard's __metadata__ usually carries format info; index keys first
        for k, v in h.metadata.items():
            metadata.setdefault(k, v)
    ckpt = _from_headers(index_path, "safetensors-sharded", headers, metadata)
    if ignored:
        note = (
            f"{len(ignored)} tensor(s) stored in a shard the index does not assign them to were ignored "
            f"(e.g. {ignored[0]!r}); the index decides which shard holds each tensor"
        )
        ckpt = dataclasses.replace(ckpt, notes=(*ckpt.notes, note))
    return ckpt


def _open_torch(p: Path, key: str | None) -> Checkpoint:
    obj = torch_load(p)
    state, container_key = resolve_container(p, obj, key)
    metadata = container_metadata(obj) if container_key is not None else {}
    return from_state_dict(
        state, path=p, format="torch", size_bytes=p.stat().st_size, metadata=metadata,
        container_key=container_key, files=(p,),
    )  # fmt: skip
