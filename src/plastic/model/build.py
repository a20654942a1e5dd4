"""Building the timm model a checkpoint belongs to, and loading the checkpoint into it strictly."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from plastic.errors import ArchitectureError
from plastic.files.checkpoint import Checkpoint

if TYPE_CHECKING:
    import torch
    from torch import nn

SHOW = 5  # how many offending keys an error names


@dataclass
class BuiltModel:
    model: nn.Module
    arch: str
    arch_source: str  # "option" | "metadata" | "checkpoint" | "detected"
    candidates: list[str]
    num_classes: int
    classifier_keys: list[str]
    notes: list[str] = field(default_factory=list)  # for the user (stderr in the CLI)


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


def arch_origin(ckpt: Checkpoint) -> str:
    """Where the checkpoint's architecture name came from, as an error names it."""
    if ckpt.arch_source == "config.json" and ckpt.hub is not None:
        return f"{ckpt.hub.path}: architecture (and pretrained_cfg.tag)"
    if ckpt.arch_source in ("metadata", "checkpoint"):
        return f"{ckpt.path}: the 'arch' recorded in the file"
    return "--arch"


def _create(arch: str, num_classes: int, device: str = "cpu", in_chans: int | None = None) -> nn.Module:
    import timm
    import torch

    extra: dict[str, Any] = {"in_chans": in_chans} if in_chans not in (None, 3) else {}
    with torch.device(device):
        return timm.create_model(arch, pretrained=False, num_classes=num_classes, **extra)


def classifier_keys(arch: str, keys: set[str]) -> list[str]:
    from plastic.model.signatures import model_signature

    return [k for k in model_signature(arch).classifier if k in keys]


def num_classes_of(ckpt: Checkpoint, classifier_keys: list[str]) -> int:
    shapes = {t.name: t.shape for t in ckpt.tensors}
    weights = [shapes[k] for k in classifier_keys if k.endswith("weight") and len(shapes[k]) >= 2]
    return int(weights[0][0]) if weights else 0


def compare_names(model: nn.Module, ckpt: Checkpoint) -> tuple[list[str], list[str], list[str]]:
    """Missing, unexpected and mis-shaped keys of ``ckpt`` against ``model``."""
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    have = {t.name: t.shape for t in ckpt.tensors}
    missing = [k for k in want if k not in have]
    unexpected = [k for k in have if k not in want]
    shaped = [f"{k} {have[k]} vs {want[k]}" for k in want if k in have and have[k] != want[k]]
    return missing, unexpected, shaped


def mismatch_message(arch: str, missing: list[str], unexpected: list[str], shaped: list[str]) -> str:
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", shaped)):
        if items:
            more = f" (+{len(items) - SHOW} more)" if len(items) > SHOW else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:SHOW])}{more}")
    return f"checkpoint does not match architecture {arch!r}: " + "; ".join(parts)


def _map_by_position(arch: str, ckpt: Checkpoint) -> tuple[nn.Module, dict[str, torch.Tensor], int] | None:
    """Map a foreign state dict (e.g. torchvision names) onto timm names when every shape lines up.

    Only for PyTorch files: safetensors stores tensors sorted by name, so their model order is lost.
    The class count is unknown without names: try the architecture's default, then the row count of
    the checkpoint's last matrix.
    """
    if ckpt.format != "torch":
        return None
    mats = [t.shape[0] for t in ckpt.tensors if len(t.shape) == 2]
    for num_classes in dict.fromkeys([-1, *(mats[-1:])]):  # -1: timm's default for the architecture
        model = _create(arch, num_classes) if num_classes >= 0 else _create_default(arch)
        target = list(model.state_dict().items())
        if len(target) == len(ckpt.tensors) and all(
            tuple(v.shape) == t.shape for (_, v), t in zip(target, ckpt.tensors, strict=True)
        ):
            state = {k: ckpt.tensor(t.name) for (k, _), t in zip(target, ckpt.tensors, strict=True)}
            return model, state, int(getattr(model, "num_classes", num_classes))
    return None


def _create_default(arch: str) -> nn.Module:
    import timm

    return timm.create_model(arch, pretrained=False)


def _same_function(archs: list[str], ckpt: Checkpoint, num_classes: int) -> bool:
    """Do these architectures compute the same outputs with the same weights (fixed random input)?"""
    import torch
    from timm.data.config import resolve_model_data_config

    state = {i.name: t for i, t in ckpt.iter_tensors()}
    outputs, sizes = [], set()
    for arch in archs:
        model = _create(arch, num_classes, in_chans=ckpt.in_chans).eval()
        model.load_state_dict(state, strict=True)
        size = (ckpt.in_chans or 3, *tuple(resolve_model_data_config(model)["input_size"])[1:])
        sizes.add(size)
        x = torch.randn(2, *size, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            outputs.append(model(x))
        del model
    if len(sizes) != 1:
        return False
    return all(torch.allclose(outputs[0], o, rtol=1e-4, atol=1e-5) for o in outputs[1:])


def wrapper_prefixes(names: list[str]) -> list[str]:
    """Dotted prefixes that every name shares, longest first: ``module.model.`` -> both it and ``module.``."""
    if not names:
        return []
    common = common_components(names)[: min(n.count(".") for n in names)]  # never a whole name
    return [".".join(common[:i]) + "." for i in range(len(common), 0, -1)]


def common_components(names: list[str]) -> list[str]:
    """The leading dotted components every name shares: ``[blocks, 6, 0]`` for ``blocks.6.0.*``."""
    common: list[str] = []
    for comps in zip(*(n.split(".") for n in names), strict=False):
        if len(set(comps)) != 1:
            break
        common.append(comps[0])
    return common


def _body_keys(arch: str) -> tuple[set[str], set[str]]:
    """(state-dict keys without the classifier, classifier keys) of ``arch``, from its meta build."""
    from plastic.model.signatures import model_signature

    sig = model_signature(arch)
    classifier = set(sig.classifier)
    return set(sig.keys) - classifier, classifier


def first_conv_key(arch: str) -> str | None:
    """The stem's weight key (timm's ``pretrained_cfg['first_conv']``), or None when timm names none."""
    import timm

    cfg = timm.models.get_pretrained_cfg(arch.split(".", 1)[0])
    first = getattr(cfg, "first_conv", None) if cfg is not None else None
    return f"{first}.weight" if isinstance(first, str) and first else None


def stem_channels(ckpt: Checkpoint, arch: str) -> int | None:
    """The input channels the checkpoint's stem was built for, when they are not 3."""
    key = first_conv_key(arch)
    shape = ckpt.by_name[key].shape if key is not None and key in ckpt.by_name else None
    return shape[1] if shape is not None and len(shape) >= 2 and shape[1] != 3 else None


def _align_to(ckpt: Checkpoint, arch: str) -> str | None:
    """Strip the wrapper prefix under which ``ckpt`` holds ``arch``'s names; the note, or None."""
    names = [t.name for t in ckpt.tensors]
    body, classifier = _body_keys(arch)
    if set(names) - classifier == body:
        return None
    for prefix in wrapper_prefixes(names):
        if {n[len(prefix) :] for n in names} - classifier == body:
            ckpt.strip_prefix(prefix)
            return _prefix_note(prefix)
    return None


def _prefix_note(prefix: str) -> str:
    return f"tensor names carry the wrapper prefix {prefix!r}: stripped for the model, kept in outputs"


def resolve_arch(
    ckpt: Checkpoint, images: Callable[[nn.Module], torch.Tensor | None] | None = None
) -> tuple[str, str, list[str], list[str]]:
    """(arch, source, candidates, notes): the file's or the user's name, else signature detection.

    A wrapper's prefix on every name (``model.`` in a Lightning checkpoint) is found and stripped here,
    for a named architecture and for detection alike.
    """
    if ckpt.arch:
        check_arch_name(ckpt.arch, arch_origin(ckpt))
        note = _align_to(ckpt, ckpt.arch)
        ckpt.in_chans = ckpt.in_chans or stem_channels(ckpt, ckpt.arch)
        return ckpt.arch, ckpt.arch_source or "option", [ckpt.arch], [note] if note else []
    from plastic.model.signatures import detect

    notes: list[str] = []
    shapes = {t.name: t.shape for t in ckpt.tensors}
    found = detect(shapes)
    if not found.candidates:
        for prefix in wrapper_prefixes(list(shapes)):
            found = detect({k[len(prefix) :]: v for k, v in shapes.items()})
            if found.candidates:
                ckpt.strip_prefix(prefix)
                notes.append(_prefix_note(prefix))
                break
    if not found.candidates:  # a stem built for 1 (or 4...) channels: try each such conv as the stem
        shapes = {t.name: t.shape for t in ckpt.tensors}
        stems = [k for k, v in shapes.items() if len(v) == 4 and v[1] != 3 and k.endswith("weight")][:64]
        for key in stems:
            as_rgb = detect({**shapes, key: (shapes[key][0], 3, *shapes[key][2:])})
            if as_rgb.candidates and all(first_conv_key(a) == key for a in as_rgb.candidates):
                found, ckpt.in_chans = as_rgb, shapes[key][1]
                notes.append(
                    f"the stem {key} takes {ckpt.in_chans} input channel(s): in_chans={ckpt.in_chans}"
                )
                break
    if not found.candidates:
        raise ArchitectureError(
            f"{ckpt.path}: could not recognise the architecture from its tensor names and shapes; "
            "pass --arch NAME (a timm model name)"
        )
    if len(found.candidates) == 1:
        return found.candidates[0], "detected", found.candidates, notes
    num_classes = num_classes_of(ckpt, list(found.classifier))
    if _same_function(found.candidates, ckpt, num_classes):
        pick = found.candidates[0]
        note = (
            f"architectures {', '.join(found.candidates)} share this checkpoint's signature and compute "
            f"the same; using {pick} (its data config); pass --arch to choose"
        )
        return pick, "detected", found.candidates, [*notes, note]
    evidence = None
    if images is not None:
        from plastic.model.ties import weigh_candidates

        state = {i.name: t for i, t in ckpt.iter_tensors()}

        def build(arch: str) -> nn.Module:
            model = _create(arch, num_classes, in_chans=ckpt.in_chans)
            model.load_state_dict(state, strict=True)
            return model

        evidence = weigh_candidates(found.candidates, build, images)
        ckpt.tie_evidence = evidence
        if evidence is not None and evidence.pick is not None:
            note = (
                f"architectures {', '.join(found.candidates)} share this checkpoint's signature; the "
                f"calibration images decide for {evidence.pick}: {evidence.describe()}"
            )
            return evidence.pick, "detected", found.candidates, [*notes, note]
    why = f"; the calibration images do not decide ({evidence.describe()})" if evidence is not None else ""
    raise ArchitectureError(
        f"{ckpt.path}: ambiguous architecture: {', '.join(found.candidates)} all match its tensors but "
        f"compute differently{why}; pass --arch with one of them"
    )


def build_model(
    ckpt: Checkpoint,
    *,
    allow_position_mapping: bool | None = None,
    images: Callable[[nn.Module], torch.Tensor | None] | None = None,
) -> BuiltModel:
    """The timm model for ``ckpt`` on the CPU, in eval mode, with the checkpoint loaded strictly.

    Keys that follow another library's naming are mapped by position only when the user named the
    architecture (``--arch``) and every shape lines up in order; a note says so.
    """
    arch, source, candidates, notes = resolve_arch(ckpt, images)
    keys = {t.name for t in ckpt.tensors}
    classifier = classifier_keys(arch, keys)
    num_classes = num_classes_of(ckpt, classifier)
    model = _create(arch, num_classes, in_chans=ckpt.in_chans)
    missing, unexpected, shaped = compare_names(model, ckpt)
    if missing or unexpected or shaped:
        positional = source == "option" if allow_position_mapping is None else allow_position_mapping
        mapped = (
            _map_by_position(arch, ckpt) if positional and len(missing) == len(model.state_dict()) else None
        )
        if mapped is None:
            raise ArchitectureError(mismatch_message(arch, missing, unexpected, shaped))
        model, state, num_classes = mapped
        classifier = classifier_keys(arch, set(state))
        notes.append(
            f"checkpoint keys do not follow timm's {arch} naming; mapped all {len(state)} tensors by "
            "position (every shape matches in order)"
        )
    else:
        state = {i.name: t for i, t in ckpt.iter_tensors()}
    model.load_state_dict(state, strict=True)
    model.eval()
    return BuiltModel(model, arch, source, candidates, num_classes, classifier, notes)
