"""timm's hub layout: a ``config.json`` beside ``model.safetensors`` / ``pytorch_model.bin``.

timm writes it with ``push_to_hf_hub``/``save_for_hf``: ``architecture`` (``resnet50.a1_in1k``),
``num_classes``, optional ``model_args`` (``in_chans``...), and ``pretrained_cfg`` with the
preprocessing the weights were trained with. It outranks detection and the model's defaults; options
outrank it. A ``config.json`` without a string ``architecture`` (another library's) is ignored.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plastic.errors import CheckpointError

CONFIG_NAME = "config.json"
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


@dataclass(frozen=True)
class HubConfig:
    path: Path
    architecture: str
    num_classes: int | None = None
    in_chans: int | None = None
    input_size: tuple[int, int, int] | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    interpolation: str | None = None
    crop_pct: float | None = None
    crop_mode: str | None = None


def _floats(v: Any, n: int | None = None) -> tuple[float, ...] | None:
    if isinstance(v, list) and v and all(isinstance(x, int | float) and not isinstance(x, bool) for x in v):
        return tuple(float(x) for x in v) if n is None or len(v) == n else None
    return None


def read_hub_config(folder: Path) -> HubConfig | None:
    """The timm config in ``folder``, or None when there is none (or it is not timm's)."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable config ({e.__class__.__name__})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("architecture"), str) or not doc["architecture"]:
        return None
    raw_cfg, raw_args = doc.get("pretrained_cfg"), doc.get("model_args")
    cfg: dict[str, Any] = raw_cfg if isinstance(raw_cfg, dict) else {}
    args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
    size = _floats(cfg.get("input_size"), 3)
    input_size = (int(size[0]), int(size[1]), int(size[2])) if size else None
    in_chans = args.get("in_chans")
    if not isinstance(in_chans, int) or isinstance(in_chans, bool):
        in_chans = input_size[0] if input_size and input_size[0] != 3 else None
    num_classes = doc.get("num_classes")
    crop = cfg.get("crop_pct")
    tag = cfg.get("tag")
    arch = doc["architecture"]
    if isinstance(tag, str) and tag and "." not in arch:
        arch = f"{arch}.{tag}"  # the tag selects the pretrained config timm knows for these weights
    return HubConfig(
        path=path,
        architecture=arch,
        num_classes=num_classes
        if isinstance(num_classes, int) and not isinstance(num_classes, bool)
        else None,
        in_chans=in_chans,
        input_size=input_size,
        mean=_floats(cfg.get("mean")),
        std=_floats(cfg.get("std")),
        interpolation=cfg.get("interpolation") if isinstance(cfg.get("interpolation"), str) else None,
        crop_pct=float(crop) if isinstance(crop, int | float) and not isinstance(crop, bool) else None,
        crop_mode=cfg.get("crop_mode") if isinstance(cfg.get("crop_mode"), str) else None,
    )
