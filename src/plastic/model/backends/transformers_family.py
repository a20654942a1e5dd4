"""Hugging Face transformers: a ``save_pretrained`` folder (``config.json`` + ``model.safetensors``,
sharded, or ``pytorch_model.bin``). The config says exactly what the model is (``architectures``,
``model_type``), so nothing is guessed from tensor names: the model is built with its class's
constructor from that config (``_init_weights``: the family's own init), never downloaded.
Labelled ``transformers:CLASS`` (``transformers:ViTForImageClassification``).

``transformers`` is optional (``pip install 'plastic-reinit[transformers]'``); without it, such a
folder gets one error that names the extra.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from plastic.errors import ArchitectureError
from plastic.model.backends import ArchSpec, Backend
from plastic.model.backends.tree import last_layer, tree_groups

if TYPE_CHECKING:
    from torch import nn

EXTRA = "pip install 'plastic-reinit[transformers]'"
TRUNK_NAME = re.compile(r"(^|\.)(layer|layers|stages|blocks|block)$")
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


class TransformersBackend(Backend):
    family: ClassVar[str] = "transformers"
    install: ClassVar[str] = EXTRA

    def owns(self, model: nn.Module) -> bool:
        return type(model).__module__.startswith("transformers.")

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
            raise ArchitectureError(f"cannot build transformers {spec.name}: {e}"[:300]) from None
        return model.eval()

    def groups(self, model: nn.Module, coarse: bool = False) -> dict[int, list[str]]:
        from torch import nn

        for name, m in model.named_modules():
            if TRUNK_NAME.search(name) and isinstance(m, nn.ModuleList | nn.Sequential) and len(m) >= 2:
                return tree_groups(model, name, coarse)
        return {}

    def classifier(self, model: nn.Module) -> list[nn.Module]:
        """``classifier`` (Linear, or a Sequential ending in one); none in a backbone or num_labels=0."""
        from torch import nn

        head = getattr(model, "classifier", None)
        if not isinstance(head, nn.Module):
            return []
        layers = last_layer(head)
        return layers if any(True for _ in head.parameters()) else []

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
