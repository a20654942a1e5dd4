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


MAX_CONFIG_BYTES = 16 << 20  # a config.json is a few KB (with label names, a few MB); more is not one
TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


def read_json_capped(path: Path, what: str) -> Any:
    """A small JSON file: at most MAX_CONFIG_BYTES read (a 2 GB file is refused, not loaded), nesting
    bounded by the parser's recursion limit; any failure is a CheckpointError naming the file."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise CheckpointError(f"{path}: unreadable {what} ({e.strerror or type(e).__name__})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{path}: larger than {MAX_CONFIG_BYTES >> 20} MiB; not a {what}")
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise CheckpointError(f"{path}: not UTF-8 text; not a {what}") from None
    except ValueError as e:
        raise CheckpointError(f"{path}: not JSON ({str(e).splitlines()[0][:80]}); not a {what}") from None
    except RecursionError:
        raise CheckpointError(f"{path}: nested too deeply; not a {what}") from None


def read_hub_config(folder: Path) -> HubConfig | None:
    """The timm config in ``folder``, or None when there is none (or it is not timm's).

    Every field plastic uses is checked (documents.validation.field_problem, the rule options and
    reports follow too); a bad one is a CheckpointError naming the file and the field.
    """
    from plastic.documents.validation import check_fields

    path = folder / CONFIG_NAME
    if not path.is_file():
        return None
    doc = read_json_capped(path, "config.json")
    if not isinstance(doc, dict) or not isinstance(doc.get("architecture"), str) or not doc["architecture"]:
        return None
    raw_cfg, raw_args = doc.get("pretrained_cfg"), doc.get("model_args")
    cfg: dict[str, Any] = raw_cfg if isinstance(raw_cfg, dict) else {}
    args: dict[str, Any] = raw_args if isinstance(raw_args, dict) else {}
    fields = {f"pretrained_cfg.{k}": cfg[k] for k in PREPROCESSING if cfg.get(k) is not None}
    if args.get("in_chans") is not None:
        fields["model_args.in_chans"] = args["in_chans"]
    if doc.get("num_classes") is not None:
        fields["num_classes"] = doc["num_classes"]
    check_fields(fields, str(path), CheckpointError)
    size = cfg.get("input_size")
    input_size = (int(size[0]), int(size[1]), int(size[2])) if size is not None else None
    in_chans = args.get("in_chans")
    if in_chans is None:
        in_chans = input_size[0] if input_size and input_size[0] != 3 else None
    arch, tag = doc["architecture"], cfg.get("tag")
    if tag is not None and (not isinstance(tag, str) or not tag or not set(tag) <= TAG_CHARS):
        raise CheckpointError(
            f"{path}: pretrained_cfg.tag must be a timm tag (letters, digits, _ and -), not {tag!r}"[:300]
        )
    if tag and "." not in arch:
        arch = f"{arch}.{tag}"  # the tag selects the pretrained config timm knows for these weights
    mean, std = cfg.get("mean"), cfg.get("std")
    return HubConfig(
        path=path,
        architecture=arch,
        num_classes=doc.get("num_classes"),
        in_chans=in_chans,
        input_size=input_size,
        mean=tuple(float(v) for v in mean) if mean is not None else None,
        std=tuple(float(v) for v in std) if std is not None else None,
        interpolation=cfg.get("interpolation"),
        crop_pct=float(cfg["crop_pct"]) if cfg.get("crop_pct") is not None else None,
        crop_mode=cfg.get("crop_mode"),
    )


PREPROCESSING = ("input_size", "mean", "std", "interpolation", "crop_pct", "crop_mode")
