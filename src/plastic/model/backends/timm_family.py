"""timm: the default family. Names are timm's (``resnet50``, ``resnet50.a1_in1k``); detection is the
shipped signature index (``model/signatures.py``); groups are each model's ``group_matcher``."""

from __future__ import annotations

import difflib
from typing import TYPE_CHECKING, Any, ClassVar

from plastic.errors import ArchitectureError
from plastic.model.backends import ArchSpec, Backend, Detection, Nearest

if TYPE_CHECKING:
    from torch import nn


def is_variant_of(base: str, name: str) -> bool:
    """``name`` is ``base`` with letters added (resnetblur18 of resnet18, tf_efficientnet_b0 of
    efficientnet_b0): the look-alike variants timm registers beside a canonical model."""
    it = iter(name)
    return len(name) > len(base) and all(ch in it for ch in base)


def check_arch_name(arch: str, where: str = "--arch") -> None:
    """A timm model name, with a pretrained tag timm knows when it has one (``resnet50.a1_in1k``).
    ``where`` names the source (the option, a config.json, the metadata) in the error."""
    import timm

    base, _, tag = arch.partition(".")  # "resnet50.a1_in1k" -> "resnet50", "a1_in1k"
    if not timm.is_model(base):
        close = difflib.get_close_matches(base, timm.list_models(), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ArchitectureError(f"{where}: unknown timm architecture {arch[:120]!r}{hint}")
    if tag:
        tags = [name.partition(".")[2] for name in timm.list_pretrained(f"{base}.*")]
        if tag not in tags:
            known = f"; its tags: {', '.join(tags[:8])}" + (" ..." if len(tags) > 8 else "") if tags else ""
            raise ArchitectureError(
                f"{where}: {tag[:80]!r} is not a pretrained tag of timm's {base}{known} "
                f"(or give {base} alone)"
            )


def first_conv_key(arch: str) -> str | None:
    """The stem's weight key (timm's ``pretrained_cfg['first_conv']``), or None when timm names none."""
    import timm

    cfg = timm.models.get_pretrained_cfg(arch.split(".", 1)[0])
    first = getattr(cfg, "first_conv", None) if cfg is not None else None
    return f"{first}.weight" if isinstance(first, str) and first else None


class TimmBackend(Backend):
    family: ClassVar[str] = "timm"
    install: ClassVar[str] = "timm"
    replay_exact: ClassVar[bool] = True
    detects: ClassVar[bool] = True
    retries_stems: ClassVar[bool] = True
    library: ClassVar[str] = "timm"

    def owns(self, model: nn.Module) -> bool:
        return type(model).__module__.startswith("timm.")

    def keys(self, spec: ArchSpec) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        from plastic.model.signatures import model_signature

        sig = model_signature(spec.name)
        return sig.keys, sig.classifier

    def name_of(self, model: nn.Module) -> str | None:
        cfg = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None) or {}
        name = cfg.get("architecture") if isinstance(cfg, dict) else None
        return str(name) if name else None

    def check_name(self, name: str, where: str) -> None:
        check_arch_name(name, where)

    def detect(self, shapes: dict[str, tuple[int, ...]]) -> Detection | None:
        from plastic.model.signatures import detect

        found = detect(shapes)
        return Detection(found.candidates, found.classifier, found.exact_index)

    def nearest(self, shapes: dict[str, tuple[int, ...]]) -> Nearest | None:
        """By name pattern (``blocks.#.#.conv_pw.weight``): the shipped timm index keeps hashes only."""
        from plastic.model.signatures import nearest

        found = nearest(shapes)
        return Nearest(self.family, found[0], found[1], "name pattern") if found is not None else None

    def in_order(self, tensors: list[tuple[str, tuple[int, ...]]]) -> list[str]:
        from plastic.model.signatures import order_matches

        return order_matches(tensors)

    def create(self, spec: ArchSpec) -> nn.Module:
        import timm

        extra: dict[str, Any] = {"in_chans": spec.in_chans} if spec.in_chans not in (None, 3) else {}
        if spec.num_classes >= 0:
            extra["num_classes"] = spec.num_classes
        model: nn.Module = timm.create_model(spec.name, pretrained=False, **extra)
        return model.eval()

    def groups(self, model: nn.Module, coarse: bool = False) -> dict[int, list[str]]:
        from plastic.model.structure import timm_groups

        return timm_groups(model, coarse)

    def classifier(self, model: nn.Module) -> list[nn.Module]:
        from torch import nn

        get = getattr(model, "get_classifier", None)
        if get is None:
            return []
        try:
            head = get()
        except Exception:  # a model whose classifier accessor does not apply to this configuration
            return []
        heads = head if isinstance(head, tuple | list) else (head,)  # distilled: (head, head_dist)
        return [h for h in heads if isinstance(h, nn.Module)]

    def first_conv(self, spec: ArchSpec) -> str | None:
        return first_conv_key(spec.name)

    def canonical(self, candidates: list[str]) -> str | None:
        for base in candidates:
            if all(other == base or is_variant_of(base, other) for other in candidates):
                return base
        return None


BACKEND = TimmBackend()
