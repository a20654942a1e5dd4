"""Reading and validating safetensors headers without torch.

A safetensors file is ``u64 little-endian header length N`` + ``N bytes of JSON`` + a data region. We
parse and check the header ourselves (pure Python, no torch import) so that header-only ``inspect`` is
instant, and so that a header that lies about sizes or offsets is caught before any tensor is read.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass
from pathlib import Path

from plastic.errors import CheckpointError

# safetensors dtype code -> (torch-style name, bytes per element; fractional for sub-byte types)
ST_DTYPES: dict[str, tuple[str, float]] = {
    "F64": ("float64", 8),
    "F32": ("float32", 4),
    "F16": ("float16", 2),
    "BF16": ("bfloat16", 2),
    "F8_E4M3": ("float8_e4m3fn", 1),
    "F8_E5M2": ("float8_e5m2", 1),
    "F8_E8M0": ("float8_e8m0fnu", 1),
    "F4": ("float4_e2m1fn_x2", 0.5),
    "I64": ("int64", 8),
    "I32": ("int32", 4),
    "I16": ("int16", 2),
    "I8": ("int8", 1),
    "U64": ("uint64", 8),
    "U32": ("uint32", 4),
    "U16": ("uint16", 2),
    "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
    "C64": ("complex64", 8),
}
DTYPE_TO_ST = {name: code for code, (name, _) in ST_DTYPES.items()}

# The safetensors library refuses headers over 100 MB; so do we (a lying length would make us read GBs).
MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class StEntry:
    """One tensor as the header describes it; offsets are absolute positions in the file."""

    key: str
    dtype: str  # torch-style name, e.g. "float32"
    shape: tuple[int, ...]
    start: int  # absolute byte offset of the first byte
    end: int  # absolute byte offset one past the last byte


@dataclass(frozen=True)
class StHeader:
    path: Path
    size_bytes: int
    data_start: int  # 8 + header length
    entries: list[StEntry]  # in data-offset order
    metadata: dict[str, str]


def read_header(path: Path) -> StHeader:
    """Parse and validate the header of ``path``; raise CheckpointError naming what is wrong."""
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path}: file is empty")
    if size < 8:
        raise CheckpointError(f"{path}: not a safetensors file ({size} bytes, too short for a header)")
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        if n > MAX_HEADER_BYTES:
            raise CheckpointError(f"{path}: not a safetensors file (header length {n} is implausible)")
        if 8 + n > size:
            raise CheckpointError(
                f"{path}: truncated or not a safetensors file (header says {n} bytes, file has {size - 8})"
            )
        raw = f.read(n)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: corrupt safetensors header ({e.__class__.__name__})") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: corrupt safetensors header (not a JSON object)")
    return _validate(path, size, 8 + n, header)


def _validate(path: Path, size: int, data_start: int, header: dict[str, object]) -> StHeader:
    meta_raw = header.pop("__metadata__", None) or {}
    if not isinstance(meta_raw, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in meta_raw.items()
    ):
        raise CheckpointError(
            f"{path}: corrupt safetensors header (__metadata__ must map strings to strings)"
        )
    entries: list[StEntry] = []
    for key, info in header.items():
        if not isinstance(info, dict):
            raise CheckpointError(f"{path}: corrupt safetensors header (entry {key!r} is not an object)")
        code, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if not isinstance(code, str) or code not in ST_DTYPES:
            raise CheckpointError(f"{path}: tensor {key!r} has unknown dtype {code!r}")
        if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CheckpointError(f"{path}: tensor {key!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(o, int) and o >= 0 for o in offsets)
            or offsets[0] > offsets[1]
        ):
            raise CheckpointError(f"{path}: tensor {key!r} has invalid data_offsets {offsets!r}")
        name, itemsize = ST_DTYPES[code]
        expected = math.ceil(math.prod(shape) * itemsize)
        if offsets[1] - offsets[0] != expected:
            raise CheckpointError(
                f"{path}: header lies about tensor {key!r}: shape {shape} x {name} needs {expected} bytes, "
                f"offsets span {offsets[1] - offsets[0]}"
            )
        entries.append(StEntry(key, name, tuple(shape), data_start + offsets[0], data_start + offsets[1]))
    entries.sort(key=lambda e: (e.start, e.end))
    cursor = data_start
    for e in entries:
        if e.start != cursor:
            what = "overlaps the previous tensor" if e.start < cursor else "leaves a gap before it"
            raise CheckpointError(f"{path}: header lies about offsets: tensor {e.key!r} {what}")
        cursor = e.end
    if cursor > size:
        raise CheckpointError(
            f"{path}: truncated: header describes {cursor - data_start} bytes of tensor data, "
            f"the file holds {size - data_start}"
        )
    if cursor < size:
        raise CheckpointError(
            f"{path}: corrupt: {size - cursor} unexpected bytes after the last tensor's data"
        )
    return StHeader(path, size, data_start, entries, dict(meta_raw))
