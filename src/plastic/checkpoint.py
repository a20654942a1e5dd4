"""Checkpoint I/O: one entry point, :func:`open_checkpoint`, for every file a user may hand over.

Formats: ``.safetensors`` (with or without ``__metadata__``), sharded ``*.safetensors.index.json`` (or a
folder holding one), and PyTorch pickles (``.pt``, ``.pth``, ``.pth.tar``, ``.bin``, ``.ckpt``) loaded
with ``torch.load(weights_only=True)`` only. The result is a lazy view: names, shapes and dtypes come
from headers; tensor data is read (memory-mapped) only when asked for, one tensor at a time.
"""

from __future__ import annotations

import contextlib
import json
import mmap
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plastic.errors import CheckpointError, UnsafeCheckpointError, UsageError
from plastic.st_header import StEntry, StHeader, read_header

if TYPE_CHECKING:
    import torch

TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar")
# Where training scripts nest the weights, in the order we look (timm, Lightning, DeiT, common scripts).
CONTAINER_KEYS = ("state_dict", "model", "model_ema", "state_dict_ema", "model_state_dict", "module", "net")
# Prefixes that wrappers add to every key: DataParallel/DDP and torch.compile.
STRIP_PREFIXES = ("module.", "_orig_mod.")
# Buffers, not parameters: counted as tensors but not in parameter counts.
BUFFER_SUFFIXES = ("running_mean", "running_var", "num_batches_tracked")
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


@dataclass
class Checkpoint:
    """A lazy view of a checkpoint. Use as a context manager, or call :meth:`close`."""

    path: Path
    format: str  # "safetensors" | "safetensors-sharded" | "torch"
    size_bytes: int
    tensors: list[TensorInfo]
    metadata: dict[str, str]
    container_key: str | None = None
    arch: str | None = None
    arch_source: str | None = None  # "option" | "metadata" | "checkpoint"
    stripped_prefixes: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    _entries: dict[str, StEntry] = field(default_factory=dict, repr=False)
    _maps: dict[str, mmap.mmap] = field(default_factory=dict, repr=False)
    _state: dict[str, Any] | None = field(default=None, repr=False)  # torch formats: name -> tensor

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}

    def tensor(self, name: str) -> torch.Tensor:
        """The tensor called ``name`` (stripped name). Safetensors data is memory-mapped, not copied."""
        if self._state is not None:
            try:
                return self._state[name]  # type: ignore[no-any-return]
            except KeyError:
                raise CheckpointError(f"{self.path}: no tensor named {name!r}") from None
        info = self.by_name.get(name)
        if info is None:
            raise CheckpointError(f"{self.path}: no tensor named {name!r}")
        return self._st_tensor(info)

    def iter_tensors(self, names: list[str] | None = None) -> Iterator[tuple[TensorInfo, torch.Tensor]]:
        """Yield tensors in file order, one at a time, so that callers can stream over big files."""
        wanted = None if names is None else set(names)
        for info in self.tensors:
            if wanted is None or info.name in wanted:
                yield info, self.tensor(info.name)

    def _st_tensor(self, info: TensorInfo) -> torch.Tensor:
        import torch

        entry = self._entries[info.name]
        mm = self._maps.get(info.file)
        if mm is None:
            p = self.path.parent / info.file if self.format == "safetensors-sharded" else self.path
            with open(p, "rb") as f:
                # ACCESS_COPY: a private mapping, so torch gets a writable buffer and the file stays intact.
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
            self._maps[info.file] = mm
        dtype = getattr(torch, info.dtype)
        if info.numel == 0:
            return torch.empty(info.shape, dtype=dtype)
        t = torch.frombuffer(mm, dtype=dtype, count=info.numel, offset=entry.start)
        if entry.start % t.element_size():
            t = t.clone()  # misaligned in the file: copy rather than hand out an unaligned view
        return t.view(info.shape)

    def close(self) -> None:
        for mm in self._maps.values():
            # BufferError: a caller still holds a tensor that views the map; the GC closes it later.
            with contextlib.suppress(BufferError):
                mm.close()
        self._maps.clear()
        self._state = None


def open_checkpoint(path: str | Path, *, key: str | None = None, arch: str | None = None) -> Checkpoint:
    """Open any supported checkpoint lazily.

    ``key`` picks the container entry of a training checkpoint (``state_dict``, ``model_ema``, ...);
    ``arch`` overrides the architecture name recorded in the file.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"{p}: no such file or folder")
    if p.is_dir():
        ckpt = _open_folder(p)
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
        raise UsageError(
            "--key applies to PyTorch training checkpoints only; safetensors files hold one dict"
        )
    if arch:
        ckpt.arch, ckpt.arch_source = arch, "option"
    elif ckpt.metadata.get("arch"):
        ckpt.arch = ckpt.metadata["arch"]
        ckpt.arch_source = "metadata" if ckpt.format != "torch" else "checkpoint"
    return ckpt


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


def _from_headers(path: Path, fmt: str, headers: list[StHeader], metadata: dict[str, str]) -> Checkpoint:
    sharded = fmt == "safetensors-sharded"
    all_keys = [e.key for h in headers for e in h.entries]
    mapping, stripped = _strip(all_keys)
    tensors: list[TensorInfo] = []
    entries: dict[str, StEntry] = {}
    for h in headers:
        for e in h.entries:
            name = mapping[e.key]
            file = h.path.name if sharded else ""
            tensors.append(TensorInfo(name, e.key, e.shape, e.dtype, e.end - e.start, file))
            entries[name] = e
    return Checkpoint(
        path=path,
        format=fmt,
        size_bytes=sum(h.size_bytes for h in headers),
        tensors=tensors,
        metadata=metadata,
        stripped_prefixes=stripped,
        files=[h.path for h in headers],
        _entries=entries,
    )


def _open_safetensors(p: Path) -> Checkpoint:
    h = read_header(p)
    return _from_headers(p, "safetensors", [h], h.metadata)


def _open_folder(p: Path) -> Checkpoint:
    index = sorted(p.glob("*.safetensors.index.json"))
    if len(index) == 1:
        return _open_sharded(index[0])
    singles = sorted(p.glob("*.safetensors"))
    if not index and len(singles) == 1:
        return _open_safetensors(singles[0])
    found = [f.name for f in index] or [f.name for f in singles]
    raise CheckpointError(
        f"{p}: a folder must hold exactly one *.safetensors.index.json or one *.safetensors file "
        f"(found {found or 'none'}); pass the file itself"
    )


def _open_sharded(index_path: Path) -> Checkpoint:
    try:
        doc = json.loads(index_path.read_text(encoding="utf-8"))
        weight_map = doc["weight_map"]
        assert isinstance(weight_map, dict)
    except (OSError, ValueError, KeyError, AssertionError, TypeError):
        raise CheckpointError(
            f"{index_path}: not a safetensors index (needs a 'weight_map' object)"
        ) from None
    shard_names = sorted(set(weight_map.values()))
    headers: list[StHeader] = []
    for name in shard_names:
        shard = index_path.parent / str(name)
        if not shard.is_file():
            raise CheckpointError(f"{index_path}: shard {name!r} is missing")
        h = read_header(shard)
        listed = {k for k, v in weight_map.items() if v == name}
        present = {e.key for e in h.entries}
        if listed - present:
            missing = sorted(listed - present)[:3]
            raise CheckpointError(f"{index_path}: shard {name!r} lacks tensors the index lists: {missing}")
        headers.append(h)
    metadata = {k: str(v) for k, v in (doc.get("metadata") or {}).items()}
    for h in headers:  # the first shard's __metadata__ usually carries format info; keep index keys first
        for k, v in h.metadata.items():
            metadata.setdefault(k, v)
    return _from_headers(index_path, "safetensors-sharded", headers, metadata)


_UNSAFE_GLOBAL = re.compile(r"Unsupported global:? (?:GLOBAL )?([\w.]+)|GLOBAL ([\w.]+)", re.I)


def _torch_load(p: Path) -> Any:
    """``torch.load(weights_only=True)``, memory-mapped when the file allows; errors made readable."""
    import pickle

    import torch

    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: file is empty")
    try:
        try:
            return torch.load(p, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as e:
            if "mmap" not in str(e) and "zip" not in str(e).lower():
                raise
            # Legacy (pre-1.6, non-zip) files cannot be memory-mapped; corrupt zips fail again below.
            return torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        m = _UNSAFE_GLOBAL.search(str(e))
        if m and "weights only" in str(e).lower():
            glob = next(g for g in m.groups() if g)
            raise UnsafeCheckpointError(
                f"{p}: refused: loading it would run code ({glob}); plastic loads pickles with "
                "weights_only=True only. Convert it with a trusted script, or save a state_dict/safetensors"
            ) from None
        raise CheckpointError(f"{p}: corrupt or not a PyTorch checkpoint ({_first_line(e)})") from None
    except Exception as e:  # torch raises RuntimeError/EOFError/ValueError/... for damaged files
        raise CheckpointError(
            f"{p}: truncated, corrupt or not a PyTorch checkpoint ({_first_line(e)})"
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {text[0][:200]}" if text else e.__class__.__name__


def _is_state_dict(obj: object) -> bool:
    import torch

    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _resolve_container(p: Path, obj: Any, key: str | None) -> tuple[Mapping[str, Any], str | None]:
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: holds a {type(obj).__name__}, not a state dict")
    if key is not None:
        if key not in obj:
            raise UsageError(f"{p}: no entry {key!r}; top-level entries: {sorted(map(str, obj))[:20]}")
        if not _is_state_dict(obj[key]):
            raise UsageError(f"{p}: entry {key!r} is not a state dict of tensors")
        return obj[key], key
    if _is_state_dict(obj):
        return obj, None
    for k in CONTAINER_KEYS:
        if k in obj and _is_state_dict(obj[k]):
            return obj[k], k
    raise CheckpointError(
        f"{p}: no state dict found; top-level entries: {sorted(map(str, obj))[:20]}; choose one with --key"
    )


def _open_torch(p: Path, key: str | None) -> Checkpoint:
    obj = _torch_load(p)
    state, container_key = _resolve_container(p, obj, key)
    mapping, stripped = _strip(list(state))
    tensors, clean = [], {}
    for k, t in state.items():
        name = mapping[k]
        dtype = str(t.dtype).removeprefix("torch.")
        tensors.append(TensorInfo(name, k, tuple(t.shape), dtype, t.numel() * t.element_size()))
        clean[name] = t
    # Scalars beside the weights (epoch, arch, version, metric) are worth showing as metadata.
    metadata: dict[str, str] = {}
    if container_key is not None:
        for k, v in obj.items():
            if isinstance(v, str | int | float | bool) and not isinstance(k, int):
                metadata[str(k)] = str(v)
    return Checkpoint(
        path=p,
        format="torch",
        size_bytes=p.stat().st_size,
        tensors=tensors,
        metadata=metadata,
        container_key=container_key,
        stripped_prefixes=stripped,
        files=[p],
        _state=clean,
    )
