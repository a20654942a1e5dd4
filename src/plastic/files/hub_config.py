"""timm's hub layout: a ``config.json`` beside ``model.safetensors`` / ``pytorch_model.bin``.

timm writes it with ``push_to_hf_hub``/``save_for_hf``: ``architecture`` (``resnet50.a1_in1k``),
``num_classes``, optional ``model_args`` (``in_chans``...), and ``pretrained_cfg`` with the
preprocessing the weights were trained with. It outranks detection and the model's defaults; options
outrank it.

Hugging Face transformers writes a ``config.json`` too (``save_pretrained``), with ``model_type`` and
``architectures`` instead: the model is built from that whole document, and the preprocessing comes from
``preprocessor_config.json`` beside it when there is one. Any other ``config.json`` is ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plastic.errors import CheckpointError

CONFIG_NAME = "config.json"
PREPROCESSOR_NAME = "preprocessor_config.json"


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
    family: str = "timm"  # "timm" | "transformers"
    config: Mapping[str, Any] | None = None  # transformers: the whole config.json
    preprocessor: Path | None = None  # transformers: preprocessor_config.json, when read


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
    if isinstance(doc, dict) and isinstance(doc.get("model_type"), str) and "architecture" not in doc:
        return _transformers_config(path, doc)
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


PIL_RESAMPLE = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}


def _transformers_config(path: Path, doc: dict[str, Any]) -> HubConfig:
    """A transformers ``config.json`` (and its ``preprocessor_config.json``): the class to build, the
    label count, the channels, and the image processor's size, mean, std, resample and crop."""
    from plastic.documents.validation import check_fields

    archs = doc.get("architectures")
    if archs is not None and (
        not isinstance(archs, list) or not archs or not all(isinstance(a, str) and a for a in archs)
    ):
        raise CheckpointError(f"{path}: architectures must be a list of class names, not {archs!r}"[:300])
    name = archs[0] if archs else ""
    if name and not name.isidentifier():
        raise CheckpointError(f"{path}: architectures[0] is not a class name: {name[:80]!r}")
    labels = doc.get("id2label")
    num_classes = len(labels) if isinstance(labels, dict) else doc.get("num_labels")
    chans = doc.get("num_channels")
    fields: dict[str, Any] = {}
    if num_classes is not None:
        fields["num_classes"] = num_classes
    if chans is not None:
        fields["in_chans"] = chans
    check_fields(fields, str(path), CheckpointError)
    prep = path.parent / PREPROCESSOR_NAME
    pre = _preprocessing(prep) if prep.is_file() else {}
    size = pre.get("input_size")
    return HubConfig(
        path=path,
        architecture=f"transformers:{name}" if name else "transformers:",
        num_classes=num_classes,
        in_chans=chans if chans not in (None, 3) else None,
        input_size=(int(chans or 3), *size) if size is not None else None,  # type: ignore[arg-type]
        mean=pre.get("mean"),
        std=pre.get("std"),
        interpolation=pre.get("interpolation"),
        crop_pct=pre.get("crop_pct"),
        crop_mode="center" if pre else None,
        family="transformers",
        config=doc,
        preprocessor=prep if pre else None,
    )


def _preprocessing(path: Path) -> dict[str, Any]:
    """An image processor's settings as timm's data-config fields; a field it lacks stays unset."""
    from plastic.documents.validation import check_fields

    doc = read_json_capped(path, PREPROCESSOR_NAME)
    if not isinstance(doc, dict):
        raise CheckpointError(f"{path}: not a JSON object; not a {PREPROCESSOR_NAME}")
    out: dict[str, Any] = {}
    size, crop = doc.get("size"), doc.get("crop_size")
    edge = None
    if isinstance(size, dict):
        if isinstance(size.get("height"), int) and isinstance(size.get("width"), int):
            out["input_size"] = (size["height"], size["width"])
        elif isinstance(size.get("shortest_edge"), int):
            edge = size["shortest_edge"]
            out["input_size"] = (edge, edge)
    elif isinstance(size, int):
        out["input_size"] = (size, size)
    if doc.get("do_center_crop") and isinstance(crop, dict) and isinstance(crop.get("height"), int):
        out["input_size"] = (crop["height"], crop.get("width", crop["height"]))
        if edge:
            out["crop_pct"] = crop["height"] / edge
    elif isinstance(doc.get("crop_pct"), int | float) and not isinstance(doc.get("crop_pct"), bool):
        out["crop_pct"] = float(doc["crop_pct"])
    elif "input_size" in out:
        out["crop_pct"] = 1.0  # resized straight to the model's size, no crop
    for key, field in (("image_mean", "mean"), ("image_std", "std")):
        value = doc.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = [value] * 3
        if value is not None:
            out[field] = value
    resample = doc.get("resample")
    if isinstance(resample, int) and resample in PIL_RESAMPLE:
        out["interpolation"] = PIL_RESAMPLE[resample]
    checked = {k: v for k, v in out.items() if k in ("mean", "std", "crop_pct")}
    if "input_size" in out:
        checked["input_size"] = (3, *out["input_size"])
    check_fields(checked, str(path), CheckpointError)
    if "mean" in out:
        out["mean"] = tuple(float(v) for v in out["mean"])
    if "std" in out:
        out["std"] = tuple(float(v) for v in out["std"])
    return out
