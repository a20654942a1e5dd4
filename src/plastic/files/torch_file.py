"""Reading PyTorch pickles safely: ``torch.load(weights_only=True)`` only, and zip records checked first.

torch's memory-mapped load (``mmap=True``) trusts the sizes in the pickle: a storage whose zip record
is shorter than the storage (or lies past the end of the file) would be read from whatever bytes
follow, or fault when touched. :func:`check_zip_records` compares every storage the pickle refers to
with its record, without executing anything from the pickle: globals resolve to inert stand-ins,
never to real code.
"""

from __future__ import annotations

import io
import pickle
import re
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

from plastic.errors import CheckpointError, UnsafeCheckpointError

_UNSAFE_GLOBAL = re.compile(r"Unsupported global:? (?:GLOBAL )?([\w.]+)|GLOBAL ([\w.]+)", re.I)
# Element size of the storage classes torch writes into persistent ids; UntypedStorage counts bytes.
_ITEMSIZE = {
    "UntypedStorage": 1, "ByteStorage": 1, "CharStorage": 1, "BoolStorage": 1, "QUInt8Storage": 1,
    "QInt8Storage": 1, "QUInt4x2Storage": 1, "QUInt2x4Storage": 1, "ShortStorage": 2, "HalfStorage": 2,
    "BFloat16Storage": 2, "IntStorage": 4, "FloatStorage": 4, "QInt32Storage": 4, "LongStorage": 8,
    "DoubleStorage": 8, "ComplexFloatStorage": 8, "ComplexDoubleStorage": 16,
}  # fmt: skip
MAX_PICKLE_BYTES = 256 << 20  # a state dict's pickle is KBs to a few MBs; more is a bomb, not weights
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, (skipped fields), name length, extra length


class _Inert:
    """Stands in for every global the pickle names: accepts any call or state, does nothing."""

    qualname = ""

    def __new__(cls, *_a: object, **_k: object) -> _Inert:
        return object.__new__(cls)

    def __init__(self, *_a: object, **_k: object) -> None:
        pass

    def __call__(self, *_a: object, **_k: object) -> _Inert:
        return _Inert()

    def __setstate__(self, _state: object) -> None:
        pass

    def __setitem__(self, _k: object, _v: object) -> None:
        pass

    def append(self, _v: object) -> None:
        pass

    def extend(self, _v: object) -> None:
        pass


class _StorageScan(pickle.Unpickler):
    """Collects the persistent ids ('storage', type, key, location, numel) of a torch ``data.pkl``."""

    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.storages: list[tuple[str, int]] = []  # (record key, bytes)

    def find_class(self, module: str, name: str) -> Any:
        return type(name, (_Inert,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid: Any) -> Any:
        if isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage":
            _, stype, key, _location, numel = pid
            size = _ITEMSIZE.get(getattr(stype, "__name__", ""))
            if size is not None and isinstance(numel, int):
                self.storages.append((str(key), numel * size))
        return _Inert()


def check_zip_records(p: Path) -> None:
    """Refuse a zip checkpoint whose storages are not fully inside their (stored, uncompressed) records."""
    if not zipfile.is_zipfile(p):
        return  # legacy format: torch reads it without a memory map and checks sizes itself
    try:
        with zipfile.ZipFile(p) as zf, open(p, "rb") as raw:
            infos = zf.infolist()
            pkl = next((i for i in infos if i.filename.endswith("data.pkl")), None)
            if pkl is None:
                return  # torch.load gives the error
            prefix = pkl.filename[: -len("data.pkl")]
            records = {
                i.filename[len(prefix) + 5 :]: i for i in infos if i.filename.startswith(prefix + "data/")
            }
            if pkl.compress_type != zipfile.ZIP_STORED or pkl.file_size > MAX_PICKLE_BYTES:
                raise CheckpointError(
                    f"{p}: not a PyTorch checkpoint as torch writes them ({pkl.filename} is compressed or "
                    f"over {MAX_PICKLE_BYTES >> 20} MiB)"
                )
            scan = _StorageScan(zf.read(pkl))
            scan.load()
            size = p.stat().st_size
            for key, nbytes in scan.storages:
                rec = records.get(key)
                if rec is None:
                    raise CheckpointError(f"{p}: corrupt: storage {key!r} has no record in the archive")
                raw.seek(rec.header_offset)
                sig, n_name, n_extra = _LOCAL_HEADER.unpack(raw.read(_LOCAL_HEADER.size))
                end = rec.header_offset + _LOCAL_HEADER.size + n_name + n_extra + rec.compress_size
                if sig != b"PK\x03\x04" or rec.compress_type != zipfile.ZIP_STORED or end > size:
                    raise CheckpointError(f"{p}: truncated or corrupt: record {rec.filename!r} is damaged")
                if rec.file_size < nbytes:
                    raise CheckpointError(
                        f"{p}: truncated or corrupt: record {rec.filename!r} holds {rec.file_size} bytes, "
                        f"its storage needs {nbytes}"
                    )
    except CheckpointError:
        raise
    except Exception as e:  # BadZipFile, CRC errors, a pickle that is not a pickle, short reads
        raise CheckpointError(
            f"{p}: truncated, corrupt or not a PyTorch checkpoint ({e.__class__.__name__})"
        ) from None


def torch_load(p: Path) -> Any:
    """``torch.load(weights_only=True)``, memory-mapped when the file allows; errors made readable.

    One class beyond torch's weights-only set is allowed: ``argparse.Namespace``, in which timm's
    ``train.py`` (and many scripts like it) store their arguments beside the weights. It is a plain
    attribute holder: unpickled as an empty object whose ``__dict__`` the weights-only unpickler fills
    with the values it already allows; nothing is imported or called."""
    import argparse

    import torch

    if p.stat().st_size == 0:
        raise CheckpointError(f"{p}: file is empty")
    check_zip_records(p)
    try:
        with warnings.catch_warnings(), torch.serialization.safe_globals([argparse.Namespace]):
            warnings.simplefilter("ignore")  # torch's own notes (sparse validation, ...) are not for users
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
        if "weights only" in str(e).lower():  # torch's message advises weights_only=False: never here
            raise UnsafeCheckpointError(
                f"{p}: refused: the weights-only loader cannot read it ({_unpickler_reason(e)}); plastic "
                "never loads pickles with weights_only=False. Re-save the weights with a trusted script "
                "(torch.save(model.state_dict(), ...) or safetensors)"
            ) from None
        raise CheckpointError(f"{p}: corrupt or not a PyTorch checkpoint ({first_line(e)})") from None
    except Exception as e:  # torch raises RuntimeError/EOFError/ValueError/... for damaged files
        raise CheckpointError(
            f"{p}: truncated, corrupt or not a PyTorch checkpoint ({first_line(e)})"
        ) from None


def _unpickler_reason(e: BaseException) -> str:
    """What torch's weights-only unpickler objected to (``Unsupported operand 149``), without its advice."""
    _, _, detail = str(e).partition("WeightsUnpickler error:")
    lines = [line.strip() for line in detail.splitlines() if line.strip()]
    return lines[0][:200] if lines else "an unsupported pickle instruction"


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{e.__class__.__name__}: {text[0][:200]}" if text else e.__class__.__name__
