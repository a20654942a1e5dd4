"""Training checkpoints: where a PyTorch pickle's dict keeps the weights, and what beside them says
which model they are. timm's ``train.py``, Lightning, DeiT and most scripts save
``{"state_dict": ..., "optimizer": ..., "epoch": 3, "arch": ..., "args": Namespace(...)}``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plastic.errors import CheckpointError, UsageError

# Where training scripts nest the weights, in the order we look (timm, Lightning, DeiT, common scripts).
CONTAINER_KEYS = ("state_dict", "model", "model_ema", "state_dict_ema", "model_state_dict", "module", "net")


def is_state_dict(obj: object) -> bool:
    """A non-empty mapping of string keys to tensors."""
    import torch

    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def resolve_container(p: Path, obj: Any, key: str | None) -> tuple[Mapping[str, Any], str | None]:
    """(the state dict, the entry it came from: None for a bare one): ``key`` when given (``--key``),
    else the first of ``CONTAINER_KEYS`` that holds one."""
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{p}: holds a {type(obj).__name__}, not a state dict")
    if key is not None:
        if key not in obj:
            raise UsageError(f"{p}: no entry {key!r}; top-level entries: {sorted(map(str, obj))[:20]}")
        if not is_state_dict(obj[key]):
            raise UsageError(f"{p}: entry {key!r} is not a state dict of tensors")
        return obj[key], key
    if is_state_dict(obj):
        return obj, None
    for k in CONTAINER_KEYS:
        if k in obj and is_state_dict(obj[k]):
            return obj[k], k
    raise CheckpointError(
        f"{p}: no state dict found; top-level entries: {sorted(map(str, obj))[:20]}; choose one with --key"
    )


def container_metadata(obj: Mapping[Any, Any]) -> dict[str, str]:
    """What a training checkpoint's dict says beside the weights: its scalars (epoch, arch, version,
    metric), and as ``args.model`` the model name in the script's arguments (timm's ``train.py``: an
    ``argparse.Namespace``), more precise than the ``arch`` beside it, which timm fills with the
    model's class name."""
    metadata = {
        str(k): str(v)
        for k, v in obj.items()
        if isinstance(v, str | int | float | bool) and not isinstance(k, int)
    }
    args = obj.get("args")
    model = args.get("model") if isinstance(args, dict) else getattr(args, "model", None)
    if isinstance(model, str) and model:
        metadata["args.model"] = model
    return metadata
