"""torchvision: every classification model of ``torchvision.models`` (``list_models``), saved as a
state dict. Names are torchvision's (``mobilenet_v3_small``), labelled ``torchvision:NAME``.

Detection reads a shipped index (``scripts/build_signature_index.py --family torchvision``): for each
model, every (key, shape) of its state dict and its classifier keys, so a checkpoint with any class
count is matched, and one that matches nothing gets the nearest model and the share of its tensors
that matched. Preprocessing is the ImageNet recipe torchvision's weights use (resize 256, crop 224,
bilinear; ``inception_v3`` 342/299).
"""

from __future__ import annotations

import gzip
import json
import warnings
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from plastic.errors import ArchitectureError
from plastic.model.backends import ArchSpec, Backend, Detection, Nearest
from plastic.model.signatures import DATA, signature_hash

if TYPE_CHECKING:
    from torch import nn

# the container whose children are the stages, by model class; the rest use ``features``
TRUNKS = {
    "ResNet": "",
    "ShuffleNetV2": "",
    "GoogLeNet": "",
    "Inception3": "",
    "VisionTransformer": "encoder.layers",
    "RegNet": "trunk_output",
    "MNASNet": "layers",
    "MaxVit": "blocks",
}
# Builds of one model with other constructor arguments, as its own weights are saved: torchvision's
# pretrained GoogLeNet and Inception-v3 come without their auxiliary heads (``aux_logits=False``)
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "googlenet@noaux": ("googlenet", {"aux_logits": False}),
    "inception_v3@noaux": ("inception_v3", {"aux_logits": False}),
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TvEntry:
    name: str
    entries: frozenset[str]  # "key:shape" of every tensor, classifier included
    classifier: tuple[str, ...]
    body: str  # signature_hash of the non-classifier (key, shape) pairs
    first_conv: str | None
    shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()  # (key, shape) in state-dict order


@cache
def _by_order() -> dict[str, list[str]]:
    """{order_hash of a model's non-classifier tensors: models}, from the shipped index."""
    from plastic.model.signatures import order_hash

    out: dict[str, list[str]] = {}
    for e in load_index()[1].values():
        if e.shapes:
            body = [(k, s) for k, s in e.shapes if k not in e.classifier]
            out.setdefault(order_hash(body), []).append(e.name)
    return out


def _entry(key: str, shape: tuple[int, ...]) -> str:
    return f"{key}:{'x'.join(map(str, shape))}"


def torchvision_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torchvision")
    except PackageNotFoundError:  # pragma: no cover - torchvision ships with timm's dependencies
        return "0"


@cache
def load_index() -> tuple[str, dict[str, TvEntry]]:
    """(the torchvision version it was built for, {name: entry}); the newest shipped index."""
    exact = DATA / f"signatures-torchvision-{torchvision_version()}.json.gz"
    files = [exact] if exact.exists() else sorted(DATA.glob("signatures-torchvision-*.json.gz"))
    if not files:
        return "", {}
    with gzip.open(files[-1], "rt", encoding="utf-8") as f:
        doc = json.load(f)
    models = {}
    for name, m in doc["models"].items():
        pairs = [(k, tuple(s)) for k, s in m["tensors"]]
        cls = tuple(m["classifier"])
        body = signature_hash((k, s) for k, s in pairs if k not in cls)
        models[name] = TvEntry(
            name, frozenset(_entry(k, s) for k, s in pairs), cls, body, m.get("first_conv"), tuple(pairs)
        )
    return str(doc["torchvision_version"]), models


def _builder(name: str) -> Any:
    from torchvision import models

    if name not in models.list_models(module=models):
        raise KeyError(name)
    return models.get_model_builder(name)


class TorchvisionBackend(Backend):
    family: ClassVar[str] = "torchvision"
    install: ClassVar[str] = "torchvision"
    detects: ClassVar[bool] = True
    library: ClassVar[str] = "torchvision"

    def owns(self, model: nn.Module) -> bool:
        return type(model).__module__.startswith("torchvision.models")

    def keys(self, spec: ArchSpec) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        entry = load_index()[1].get(spec.name)
        return (tuple(k for k, _ in entry.shapes), entry.classifier) if entry is not None else None

    def name_of(self, model: nn.Module) -> str | None:
        """The one torchvision model whose signature the state dict has (its classes aside)."""
        found = self.detect({k: tuple(v.shape) for k, v in model.state_dict().items()})
        return found.candidates[0] if found is not None and len(found.candidates) == 1 else None

    def check_name(self, name: str, where: str) -> None:
        import difflib

        from torchvision import models

        known = [*models.list_models(module=models), *VARIANTS]
        if name not in known:
            close = difflib.get_close_matches(name, known, n=3)
            hint = f"; did you mean {', '.join('torchvision:' + c for c in close)}?" if close else ""
            raise ArchitectureError(f"{where}: torchvision has no classification model {name[:120]!r}{hint}")

    def detect(self, shapes: dict[str, tuple[int, ...]]) -> Detection | None:
        _version, index = load_index()
        keys = set(shapes)
        found: dict[tuple[str, ...], list[str]] = {}
        for entry in index.values():
            if not set(entry.classifier) <= keys:
                continue
            body = [(k, s) for k, s in shapes.items() if k not in entry.classifier]
            if signature_hash(body) == entry.body:
                found.setdefault(entry.classifier, []).append(entry.name)
        for cls, names in found.items():
            return Detection(sorted(names), cls, True)
        headless = signature_hash(shapes.items())  # num_classes=0 has no head at all
        names = [e.name for e in index.values() if e.body == headless]
        return Detection(sorted(names), (), True)

    def nearest(self, shapes: dict[str, tuple[int, ...]]) -> Nearest | None:
        _version, index = load_index()
        have = {_entry(k, s) for k, s in shapes.items()}
        if not index or not have:
            return None
        best = max(index.values(), key=lambda e: (len(have & e.entries), -len(e.entries), e.name))
        return Nearest(self.family, best.name, len(have & best.entries) / len(have))

    def in_order(self, tensors: list[tuple[str, tuple[int, ...]]]) -> list[str]:
        from plastic.model.signatures import in_order

        by_order = _by_order()
        heads = {len(e.classifier) for e in load_index()[1].values()}
        return next((sorted(by_order[h]) for h in in_order(tensors, heads) if h in by_order), [])

    def create(self, spec: ArchSpec) -> nn.Module:
        base, extra = VARIANTS.get(spec.name, (spec.name, {}))
        try:
            build = _builder(base)
        except KeyError:
            raise ArchitectureError(f"torchvision has no classification model {spec.name!r}") from None
        kwargs: dict[str, Any] = {"weights": None, **extra}
        if spec.num_classes >= 0:
            kwargs["num_classes"] = spec.num_classes
        if base in ("googlenet", "inception_v3"):
            kwargs["init_weights"] = True  # their documented init (and no FutureWarning)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model: nn.Module = build(**kwargs)
        if spec.in_chans not in (None, 3):
            raise ArchitectureError(
                f"torchvision:{spec.name} takes 3 input channels; a {spec.in_chans}-channel stem is not "
                "one of its models"
            )
        return model.eval()

    def groups(self, model: nn.Module, coarse: bool = False) -> dict[int, list[str]]:
        from plastic.model.backends.tree import tree_groups

        return tree_groups(model, TRUNKS.get(type(model).__name__, "features"), coarse)

    def classifier(self, model: nn.Module) -> list[nn.Module]:
        from plastic.model.backends.tree import last_layer

        return last_layer(model)

    def data_defaults(self, model: nn.Module) -> dict[str, Any]:
        size = 299 if type(model).__name__ == "Inception3" else 224
        resize = 342 if size == 299 else 256
        return {
            "input_size": (3, size, size),
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "interpolation": "bilinear",
            "crop_pct": size / resize,
            "crop_mode": "center",
        }

    def first_conv(self, spec: ArchSpec) -> str | None:
        entry = load_index()[1].get(spec.name)
        return entry.first_conv if entry is not None else None


BACKEND = TorchvisionBackend()
