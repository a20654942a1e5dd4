"""Hugging Face transformers: a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``,
sharded, or ``pytorch_model.bin``). The config says exactly what the model is (``architectures``,
``model_type``), so nothing is guessed from tensor names: the model is built with its class's
constructor from that config (``_init_weights``: the family's own init), never downloaded.
Labelled ``transformers:CLASS`` (``transformers:ViTForImageClassification``).

``transformers`` is optional (``pip install 'plastic-reinit[transformers]'``); without it, such a
folder gets one error that names the extra.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from plastic.errors import ArchitectureError
from plastic.model.backends import ArchSpec, Backend

if TYPE_CHECKING:
    from torch import nn

    from plastic.files.checkpoint import Checkpoint

EXTRA = "pip install 'plastic-reinit[transformers]'"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _library() -> Any:
    try:
        import transformers
    except ImportError:
        raise ArchitectureError(
            f"this checkpoint is a Hugging Face transformers model; install the extra: {EXTRA}"
        ) from None
    return transformers


def model_class(name: str) -> Any:
    """The transformers model class called ``name`` (``ViTForImageClassification``)."""
    lib = _library()
    cls = getattr(lib, name, None) if name.isidentifier() else None
    if cls is None or not isinstance(cls, type) or not issubclass(cls, lib.PreTrainedModel):
        raise ArchitectureError(f"transformers {lib.__version__} has no model class {name[:120]!r}")
    return cls


def config_object(doc: Mapping[str, Any]) -> Any:
    """The ``PretrainedConfig`` for a ``config.json`` document (``model_type`` picks its class)."""
    lib = _library()
    model_type = doc.get("model_type")
    try:
        config_cls = lib.CONFIG_MAPPING[model_type]
    except KeyError:
        raise ArchitectureError(
            f"transformers {lib.__version__} does not know model_type {str(model_type)[:80]!r}"
        ) from None
    try:
        return config_cls.from_dict(dict(doc))
    except Exception as e:
        raise ArchitectureError(f"config.json does not make a {model_type} config: {e}"[:300]) from None


def class_for(doc: Mapping[str, Any]) -> str:
    """The class a config names (``architectures[0]``), else its model_type's image classifier."""
    archs = doc.get("architectures")
    if isinstance(archs, list) and archs and isinstance(archs[0], str):
        return archs[0]
    lib = _library()
    config = config_object(doc)
    mapping = lib.MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING
    try:
        return str(mapping[type(config)].__name__)
    except KeyError:
        raise ArchitectureError(
            f"config.json names no architecture and model_type {doc.get('model_type')!r} has no image "
            "classifier in transformers"
        ) from None


# A config.json says how big a model to build; the file says how big it is. A config asking for far more
# than its weights (num_hidden_layers: 10**6) would build for hours before the strict load could refuse it.
BUILD_RATIO = 100  # a config may ask for this many times the checkpoint's parameters (ALBERT-style sharing)
BUILD_FLOOR = 1_000_000_000  # and always this many: the estimate is rough for convnets (EfficientNet)
BUILD_DEPTH_RATIO = 4  # layers per tensor of the file: every layer holds at least one tensor
BUILD_DEPTH_FLOOR = 1_000
BUILD_LIMIT_ENV = "PLASTIC_MAX_BUILD_PARAMS"  # a number of parameters: replaces the limit above
_DEPTH_KEYS = ("num_hidden_layers", "num_layers", "n_layer", "n_layers", "depth", "encoder_layers")
_WIDTH_KEYS = ("hidden_size", "d_model", "embed_dim", "n_embd", "hidden_dim", "dim")
_WIDTHS_KEYS = ("hidden_sizes", "embed_dims", "dims")
_FFN_KEYS = ("intermediate_size", "ffn_dim", "d_ff", "n_inner")


def _count(value: object) -> int | None:
    """A config's size field as an int (None: absent or not a size)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        return None
    return max(0, int(min(value, 1e30)))


def estimate_params(doc: Mapping[str, Any]) -> int:
    """Roughly how many parameters a transformers config asks for, from its size fields alone (no
    import, no build): per (sub-)config, layers x (4 width^2 + 2 width x ffn), the position grid
    (image_size / patch_size)^2 x width and the vocabulary x width. Stages of convnets (``depths`` beside
    ``hidden_sizes``) count 12 width^2 per block. An upper-ish estimate: within ~10x of the real count."""
    total = 0
    width = max([_count(doc.get(k)) or 0 for k in _WIDTH_KEYS])
    depths, widths = (
        doc.get("depths"),
        next((doc[k] for k in _WIDTHS_KEYS if isinstance(doc.get(k), list)), None),
    )
    if isinstance(depths, list) and isinstance(widths, list) and len(depths) == len(widths):
        total += sum(
            12 * (_count(d) or 0) * (_count(w) or 0) ** 2 for d, w in zip(depths, widths, strict=True)
        )
        width = max([width, *((_count(w) or 0) for w in widths)])
    else:
        depth = _own_depth(doc)
        if isinstance(widths, list):
            width = max([width, *((_count(w) or 0) for w in widths)])
        ffn = max([_count(doc.get(k)) or 0 for k in _FFN_KEYS]) or 4 * width
        total += depth * (4 * width * width + 2 * width * ffn)
    image, patch = doc.get("image_size"), _count(doc.get("patch_size")) or 1
    side = (
        max(((_count(v) or 0) for v in image), default=0) if isinstance(image, list) else _count(image) or 0
    )
    total += (side // max(patch, 1)) ** 2 * width
    total += (_count(doc.get("vocab_size")) or 0) * width
    for value in doc.values():  # vision_config, text_config, backbone_config...
        if isinstance(value, Mapping):
            total += estimate_params(value)
    return total


def _own_depth(doc: Mapping[str, Any]) -> int:
    """The layers or blocks one (sub-)config asks for: its depth field, or its stages' ``depths`` summed."""
    depth = max([_count(doc.get(k)) or 0 for k in _DEPTH_KEYS])
    depths = doc.get("depths")
    if isinstance(depths, list):
        depth = max(depth, sum(_count(d) or 0 for d in depths))
    return depth


def config_depth(doc: Mapping[str, Any]) -> int:
    """How many layers or blocks a config asks for, summed over its sub-configs."""
    return _own_depth(doc) + sum(config_depth(v) for v in doc.values() if isinstance(v, Mapping))


def meta_params(name: str, doc: Mapping[str, Any]) -> int | None:
    """The exact parameter count of the model a config builds, built on ``meta`` (no memory, no init
    values); None when it cannot be built there."""
    import torch

    from plastic.model.init_replay import MetaShapesOnly

    try:
        config = config_object(dict(doc))
        with torch.device("meta"), MetaShapesOnly():
            model = model_class(name)(config)
        return int(sum(p.numel() for p in model.parameters()))
    except Exception:
        return None


def check_build_size(
    doc: Mapping[str, Any], file_params: int, file_tensors: int, where: str,
    exact: Callable[[], int | None] | None = None,
) -> None:  # fmt: skip
    """Refuse, before anything is built, a config that asks for far more than its file holds: more
    than ``BUILD_RATIO`` times its parameters (and over ``BUILD_FLOOR``), or more layers than
    ``BUILD_DEPTH_RATIO`` per tensor (and over ``BUILD_DEPTH_FLOOR``). ``PLASTIC_MAX_BUILD_PARAMS`` sets
    the parameter limit and lifts the layer one.

    The parameter count is first estimated from the config's size fields (``estimate_params``); that
    reads a convnet's fields as a transformer's (EfficientNet's ``hidden_dim`` 1280 and
    ``num_hidden_layers`` 64 make 1.3e9 for a 5e6-parameter B0), so an estimate over the limit is
    checked by ``exact`` (the model built on ``meta``: bounded work once the layer count has passed)
    before anything is refused."""
    import os

    asked = estimate_params(doc)
    given = os.environ.get(BUILD_LIMIT_ENV, "").strip()
    if given:
        try:
            limit = int(float(given))
        except (ValueError, OverflowError):
            raise ArchitectureError(
                f"{BUILD_LIMIT_ENV}={given[:40]!r}: give a number of parameters"
            ) from None
        how = f"{BUILD_LIMIT_ENV}={limit:.3g}"
    else:
        limit = max(BUILD_RATIO * file_params, BUILD_FLOOR)
        how = f"{BUILD_RATIO}x the {file_params:,} parameters its weights hold"
    depth = config_depth(doc)
    too_deep = not given and depth > max(BUILD_DEPTH_RATIO * file_tensors, BUILD_DEPTH_FLOOR)
    if asked > limit and not too_deep and exact is not None:
        counted = exact()
        asked = counted if counted is not None else asked
    if asked > limit or too_deep:
        what = f"about {asked:.3g} parameters" if asked > limit else f"{depth:,} layers"
        than = how if asked > limit else f"its {file_tensors:,} tensors could hold"
        raise ArchitectureError(
            f"{where}: config.json asks for a model of {what}, more than {than}: not built (it would "
            f"not match its weights, and building it could take hours); fix the config, or set "
            f"{BUILD_LIMIT_ENV} to build it anyway"
        )


class TransformersBackend(Backend):
    family: ClassVar[str] = "transformers"
    install: ClassVar[str] = EXTRA
    library: ClassVar[str] = "transformers"

    def owns(self, model: nn.Module) -> bool:
        return type(model).__module__.startswith("transformers.")

    def name_of(self, model: nn.Module) -> str | None:
        return type(model).__name__

    def named(
        self, name: str, config: Mapping[str, Any] | None, ckpt: Checkpoint
    ) -> tuple[str, Mapping[str, Any] | None]:
        """Built from the ``config.json`` beside the weights (refused without it, or when it would build
        a model far larger than the file); the class from the config when the label names none."""
        import math

        if config is None:
            raise ArchitectureError(
                f"{ckpt.path}: a transformers model is built from the config.json that save_pretrained "
                "writes beside its weights; give that folder"
            )
        params = sum(math.prod(t.shape) for t in ckpt.tensors)
        cls = name or class_for(config)
        where = str(ckpt.hub.path if ckpt.hub else ckpt.path)
        check_build_size(config, params, len(ckpt.tensors), where, lambda: meta_params(cls, config))
        return cls, config

    def view(self, ckpt: Checkpoint, spec: ArchSpec) -> tuple[Checkpoint, list[str]] | None:
        """The file's names (transformers' save format) under the model's own (a view; its note says so)."""
        import torch

        from plastic.model.init_replay import MetaShapesOnly

        with torch.device("meta"), MetaShapesOnly():
            model = self.create(spec)
        mapping = model_names(model, [t.name for t in ckpt.tensors])
        if any(k != v for k, v in mapping.items()):
            ckpt = ckpt.renamed(
                mapping, "transformers' file names for this model's tensors (kept in outputs)"
            )
        return ckpt, []

    def naming_hint(self, spec: ArchSpec, ckpt: Checkpoint) -> str:
        return (
            "; a checkpoint saved by another transformers version may use older names: load it with "
            "from_pretrained and save_pretrained it again with this one"
        )

    def config_of(self, model: nn.Module) -> Mapping[str, Any] | None:
        to_dict = getattr(getattr(model, "config", None), "to_dict", None)
        return to_dict() if callable(to_dict) else None

    def check_name(self, name: str, where: str) -> None:
        try:
            model_class(name)
        except ArchitectureError as e:
            raise ArchitectureError(f"{where}: {e}") from None

    def create(self, spec: ArchSpec) -> nn.Module:
        if spec.config is None:
            raise ArchitectureError(
                f"transformers:{spec.name} is built from its config.json: give the save_pretrained folder"
            )
        cls = model_class(spec.name)
        doc = dict(spec.config)
        if spec.num_classes >= 0 and "num_labels" not in doc and "id2label" not in doc:
            doc["num_labels"] = spec.num_classes
        config = config_object(doc)
        try:
            model: nn.Module = cls(config)
        except Exception as e:
            said = " ".join(str(e).split())  # transformers' messages span lines: one line for the Error:
            raise ArchitectureError(f"cannot build transformers {spec.name}: {said}"[:300]) from None
        return model.eval()

    def groups(self, model: nn.Module, coarse: bool = False) -> dict[int, list[str]]:
        from plastic.model.backends.tree import trunk_groups

        return trunk_groups(model, coarse)

    def feed_problem(self, model: nn.Module) -> str | None:
        """From the class's ``forward``: ImageGPT reads colour-cluster token ids (``input_ids``), SigLIP 2
        reads variable-size patch sequences with their ``spatial_shapes`` (NaFlex); plastic feeds
        fixed-size pixel batches."""
        import inspect

        name = type(model).__name__
        params = [p for p in inspect.signature(type(model).forward).parameters if p != "self"]
        if "pixel_values" not in params:
            return (
                f"{name} reads {params[0] if params else 'no input'!s}, not images (pixel_values): plastic "
                "measures models that take image batches; reinit's data-free strategies still apply"
            )
        if "spatial_shapes" in params:
            return (
                f"{name} reads images as variable-size patch sequences with their spatial_shapes (NaFlex); "
                "plastic feeds fixed-size image batches: not supported; reinit's data-free strategies "
                "still apply"
            )
        return None

    def classifier(self, model: nn.Module) -> list[nn.Module]:
        """The head: ``classifier`` (Linear, or a module ending in one), as most image classifiers of
        transformers name it; else the linear layers beside the base model that map to ``num_labels``:
        ``fc`` in HGNetV2 and TextNet (whose ``classifier`` is an empty list), ``head`` in PP-LCNet,
        ``head`` and ``dist_head`` in SwiftFormer (class head first). None in a backbone or with
        num_labels = 0: a layer is a head by what it maps to, not by its name alone."""
        from torch import nn

        from plastic.model.backends.tree import last_layer

        head = getattr(model, "classifier", None)
        if isinstance(head, nn.Module) and any(True for _ in head.parameters()):
            return last_layer(head)
        labels = getattr(getattr(model, "config", None), "num_labels", None)
        base = getattr(model, "base_model_prefix", None)
        return [
            m for name, m in model.named_children()
            if name != base and isinstance(m, nn.Linear) and labels and m.out_features == labels
        ]  # fmt: skip

    def data_defaults(self, model: nn.Module) -> dict[str, Any]:
        config = getattr(model, "config", None)
        # a two-tower model (CLIP, SigLIP) keeps the image's settings in its vision config
        config = getattr(config, "vision_config", None) or config
        size = getattr(config, "image_size", 224)
        if isinstance(size, list | tuple):
            h, w = (int(size[0]), int(size[-1]))
        else:
            h = w = int(size) if isinstance(size, int) and size > 0 else 224
        chans = int(getattr(config, "num_channels", 3) or 3)
        return {
            "input_size": (chans, h, w),
            "mean": IMAGENET_MEAN,
            "std": IMAGENET_STD,
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "crop_mode": "center",
        }


def model_names(model: nn.Module, file_keys: list[str]) -> dict[str, str]:
    """{file key: model key} by the library's own checkpoint conversion (``save_pretrained`` writes
    ViT's ``encoder.layer.N.attention.attention.query`` for the model's ``layers.N.attention.q_proj``);
    only renames: a checkpoint whose tensors the library merges or splits on load is refused."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightConverter, WeightRenaming, rename_source_key
    except ImportError:  # transformers 4: files carry the model's own names
        return {k: k for k in file_keys}

    transforms = get_model_conversion_mapping(model)  # type: ignore[arg-type]
    renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
    converters = [t for t in transforms if isinstance(t, WeightConverter)]
    meta = model.state_dict()
    prefix = getattr(model, "base_model_prefix", None)
    out = {}
    for key in file_keys:
        new, converter = rename_source_key(key, renamings, converters, prefix, meta)
        if converter is not None:
            raise ArchitectureError(
                f"transformers converts {key!r} on load (merged or split tensors): plastic cannot keep "
                "such a checkpoint's file layout"
            )
        out[key] = new
    return out


BACKEND = TransformersBackend()
