"""Recognising a timm architecture from a checkpoint's (key, shape) signature, classifier excluded.

Building all ~1,400 timm models takes minutes, so ``scripts/build_signature_index.py`` does it once
per timm release and ships the result (``data/signatures-timm-<version>.json.gz``): for every model,
the hash of its non-classifier (key, shape) pairs, the hash of its key names alone, and its classifier
keys. At run time we hash the checkpoint the same way for each known classifier key set.
When the installed timm differs from the index's, shapes may have moved: we use the index's key-name
hashes only to shortlist candidates, then build just those on the ``meta`` device to confirm.
"""

from __future__ import annotations

import gzip
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any, cast

DATA = Path(__file__).resolve().parents[1] / "data"


def signature_hash(items: Iterable[tuple[str, tuple[int, ...]]]) -> str:
    """Order-independent hash of (key, shape) pairs."""
    lines = sorted(f"{k}:{'x'.join(map(str, s))}" for k, s in items)
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()[:20]


def role(key: str) -> str:
    """What a tensor is for, from its leaf name: ``weight`` (``in_proj_weight`` too), ``bias``, or the
    leaf itself (``running_mean``, ``num_batches_tracked``): what survives another implementation's
    naming of the same layer."""
    leaf = key.rpartition(".")[2]
    return next((r for r in ("weight", "bias") if leaf.endswith(r)), leaf)


def order_hash(items: Iterable[tuple[str, tuple[int, ...]]]) -> str:
    """Names-free hash of (key, shape) pairs in state-dict order: each tensor's role and shape. Two
    implementations of one architecture that register their layers in the same order share it
    (timm's ``efficientnet_lite0`` and ``efficientnet_pytorch``'s ``_blocks.N._depthwise_conv``)."""
    lines = [f"{role(k)}:{'x'.join(map(str, s))}" for k, s in items]
    return hashlib.sha1("\n".join(lines).encode()).hexdigest()[:20]


def name_pattern(key: str) -> str:
    """A tensor name with its indices replaced: ``blocks.3.1.conv.weight`` -> ``blocks.#.#.conv.weight``."""
    return ".".join("#" if part.isdigit() else part for part in key.split("."))


@cache
def load_patterns() -> tuple[list[str], dict[str, frozenset[int]]] | None:
    """(vocabulary, {arch: its pattern ids}) from the shipped pattern file, the newest one."""
    files = sorted(DATA.glob("patterns-timm-*.json.gz"))
    if not files:
        return None
    with gzip.open(files[-1], "rt", encoding="utf-8") as f:
        doc = json.load(f)
    return list(doc["vocabulary"]), {a: frozenset(ids) for a, ids in doc["models"].items()}


def nearest(keys: Iterable[str]) -> tuple[str, float] | None:
    """The timm model whose name patterns cover most of the checkpoint's tensors, and that share (ties:
    the model with fewer patterns, then the name); None without the pattern file."""
    loaded = load_patterns()
    names = list(keys)
    if loaded is None or not names:
        return None
    vocab, models = loaded
    ids = {p: i for i, p in enumerate(vocab)}
    have = [ids.get(name_pattern(k), -1) for k in names]
    best = max(
        models.items(), key=lambda kv: (sum(1 for i in have if i in kv[1]), -len(kv[1]), kv[0]), default=None
    )
    if best is None:
        return None
    return best[0], sum(1 for i in have if i in best[1]) / len(names)


def names_hash(keys: Iterable[str]) -> str:
    return hashlib.sha1("\n".join(sorted(keys)).encode()).hexdigest()[:20]


@dataclass(frozen=True)
class ModelSignature:
    arch: str
    shapes: str  # signature_hash of non-classifier entries
    names: str  # names_hash of non-classifier keys
    classifier: tuple[str, ...]  # state-dict keys of the classifier
    keys: tuple[str, ...] = ()  # every state-dict key, classifier included
    order: str = ""  # order_hash of the non-classifier entries, in state-dict order


@cache
def model_signature(arch: str) -> ModelSignature:
    """Build ``arch`` on the meta device (no memory, no init) and describe its state dict (cached:
    detection, alignment and classifier lookup all ask for the same architecture)."""
    import timm
    import torch

    from plastic.model.init_replay import MetaShapesOnly

    with torch.device("meta"), MetaShapesOnly():
        model = timm.create_model(arch, pretrained=False)
    heads = cast(Any, model).get_classifier()  # nn.Module or a tuple of them (distilled heads)
    heads = heads if isinstance(heads, tuple | list) else (heads,)
    head_ids = {id(h) for h in heads}
    prefixes = [name for name, mod in model.named_modules() if id(mod) in head_ids and name]
    sd = model.state_dict()
    classifier = tuple(sorted(k for k in sd if any(k.startswith(p + ".") for p in prefixes)))
    body = [(k, tuple(v.shape)) for k, v in sd.items() if k not in classifier]
    return ModelSignature(
        arch, signature_hash(body), names_hash(k for k, _ in body), classifier, tuple(sd), order_hash(body)
    )


@dataclass
class SignatureIndex:
    timm_version: str
    by_shapes: dict[str, list[str]]
    by_names: dict[str, list[str]]
    classifier_sets: list[tuple[str, ...]]
    by_order: dict[str, list[str]] = field(default_factory=dict)  # order_hash -> architectures

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> SignatureIndex:
        return cls(
            doc["timm_version"],
            doc["by_shapes"],
            doc["by_names"],
            [tuple(c) for c in doc["classifier_sets"]],
            doc.get("by_order", {}),
        )


def timm_version() -> str:
    """The installed timm's version, read without importing timm (which costs a second or two)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("timm")
    except PackageNotFoundError:
        import timm

        return str(timm.__version__)


@cache
def load_index() -> SignatureIndex | None:
    """The shipped index for the installed timm, else the newest shipped one (used for names only)."""
    exact = DATA / f"signatures-timm-{timm_version()}.json.gz"
    files = [exact] if exact.exists() else sorted(DATA.glob("signatures-timm-*.json.gz"))
    if not files:
        return None
    with gzip.open(files[-1], "rt", encoding="utf-8") as f:
        return SignatureIndex.from_json(json.load(f))


@dataclass
class Detection:
    candidates: list[str]  # every architecture whose signature matches, sorted
    classifier: tuple[str, ...]  # the checkpoint keys taken as the classifier
    exact_index: bool  # True when the index was built for the installed timm


def detect(entries: dict[str, tuple[int, ...]]) -> Detection:
    """Candidate architectures for a checkpoint given as {key: shape}; empty list when none match."""
    index = load_index()
    if index is None:
        return Detection([], (), False)
    exact = index.timm_version == timm_version()
    keys = set(entries)
    tried: list[tuple[str, ...]] = [c for c in index.classifier_sets if set(c) <= keys]
    tried.append(())  # a headless checkpoint (num_classes=0)
    for cls_keys in tried:
        body = [(k, s) for k, s in entries.items() if k not in cls_keys]
        if exact:
            found = index.by_shapes.get(signature_hash(body), [])
            if found:
                return Detection(sorted(found), cls_keys, True)
            continue
        import timm

        shortlist = index.by_names.get(names_hash(k for k, _ in body), [])
        target = signature_hash(body)
        confirmed = []
        for arch in shortlist:
            if not timm.is_model(arch):
                continue
            try:
                sig = model_signature(arch)
            except Exception:  # an architecture that no longer builds is just not a candidate
                continue
            if sig.shapes == target and set(sig.classifier) == set(cls_keys):
                confirmed.append(arch)
        if confirmed:
            return Detection(sorted(confirmed), cls_keys, False)
    if exact:  # a second head that follows the class count but is not the classifier (VOLO's aux_head)
        for cls_keys in tried[:-1]:
            found = _confirm_at_classes(index, entries, cls_keys)
            if found:
                return Detection(found, cls_keys, True)
    return Detection([], (), exact)


def _confirm_at_classes(
    index: SignatureIndex, entries: dict[str, tuple[int, ...]], cls_keys: tuple[str, ...]
) -> list[str]:
    """The architectures whose names match ``entries`` (the classifier aside) and which, built on meta
    at the file's class count, have exactly its shapes: the index hashes a model's body at the default
    1,000 classes, so a tensor outside the classifier that also has a row per class does not match."""
    import timm
    import torch

    from plastic.model.init_replay import MetaShapesOnly

    rows = [entries[k][0] for k in cls_keys if k.endswith("weight") and len(entries[k]) == 2]
    body = [(k, s) for k, s in entries.items() if k not in cls_keys]
    shortlist = index.by_names.get(names_hash(k for k, _ in body), [])
    if not rows or not shortlist:
        return []
    found = []
    for arch in shortlist[:8]:
        try:
            with torch.device("meta"), MetaShapesOnly():
                model = timm.create_model(arch, pretrained=False, num_classes=rows[0])
        except Exception:  # an architecture that does not build this way is just not a candidate
            continue
        if {k: tuple(v.shape) for k, v in model.state_dict().items()} == entries:
            found.append(arch)
    return sorted(found)


def quick_detect(entries: dict[str, tuple[int, ...]]) -> Detection | None:
    """Detection from the shipped index alone (no timm import, no model built); None when the index
    is not the installed timm's, so that only building candidates could confirm them."""
    index = load_index()
    if index is None or index.timm_version != timm_version():
        return None
    return detect(entries)


def in_order(tensors: list[tuple[str, tuple[int, ...]]], heads: Iterable[int]) -> list[str]:
    """Hashes to look up for a checkpoint in another implementation's names: its (key, shape) pairs in
    file order, without the last ``n`` (a classifier at the end) for each ``n`` in ``heads`` and 0."""
    out = []
    for n in sorted({0, *heads}):
        if n < len(tensors):
            out.append(order_hash(tensors[: len(tensors) - n]))
    return out


def order_matches(tensors: list[tuple[str, tuple[int, ...]]]) -> list[str]:
    """timm architectures whose tensors line up with ``tensors`` (file order) in role and shape, the
    classifier aside; from the shipped index of the installed timm (empty otherwise)."""
    index = load_index()
    if index is None or index.timm_version != timm_version() or not index.by_order:
        return []
    for h in in_order(tensors, {len(c) for c in index.classifier_sets}):
        if h in index.by_order:
            return sorted(index.by_order[h])
    return []
