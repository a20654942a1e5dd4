"""Deciding which architecture a checkpoint is (any family: ``model/backends``), building it, and
loading the checkpoint into it strictly."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

from plastic.errors import ArchitectureError, PlasticError, is_allocation_failure
from plastic.files.checkpoint import Checkpoint
from plastic.model.backends import (
    ArchSpec,
    Detection,
    backend,
    backend_of,
    classifier_names,
    config_text,
    detecting,
    parse_arch,
)

if TYPE_CHECKING:
    import torch
    from torch import nn

    from plastic.model.ties import TieEvidence

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
    spec: ArchSpec | None = None  # None for a live model of unknown architecture
    certainty: str | None = None  # "assumed": see Resolution
    checkpoint: Checkpoint | None = None  # the checkpoint under the model's names (Resolution.checkpoint)
    evidence: TieEvidence | None = None  # see Resolution


def arch_origin(ckpt: Checkpoint) -> str:
    """Where the checkpoint's architecture name came from, as an error names it."""
    if ckpt.arch_source == "config.json" and ckpt.hub is not None:
        timm_field = "architecture (and pretrained_cfg.tag)"
        what = "architectures" if ckpt.hub.family == "transformers" else timm_field
        return f"{ckpt.hub.path}: {what}"
    if ckpt.arch_source in ("metadata", "checkpoint"):
        return f"{ckpt.path}: the 'arch' recorded in the file"
    return "--arch"


@dataclass(frozen=True)
class Resolution:
    """Which architecture a checkpoint is, how that was decided, and how sure it is."""

    spec: ArchSpec  # family, name, class count, channels (and a transformers config)
    source: str  # "option" | "config.json" | "metadata" | "checkpoint" | "detected"
    candidates: tuple[str, ...]  # labels of every architecture that matched
    classifier: tuple[str, ...]  # the checkpoint keys of the classifier
    checkpoint: Checkpoint  # the one given, under the model's names (a view: prefix stripped, renamed)
    notes: tuple[str, ...] = ()
    certainty: str | None = None  # "assumed": the canonical model among look-alikes the data left open
    evidence: TieEvidence | None = None  # what the calibration images said between look-alikes

    @property
    def arch(self) -> str:
        return self.spec.label


def _create(spec: ArchSpec, device: str = "cpu") -> nn.Module:
    import torch

    with torch.device(device):
        return backend_of(spec).create(spec)


@cache
def meta_model(spec: ArchSpec, _config: str) -> tuple[dict[str, tuple[int, ...]], tuple[str, ...]]:
    """({state-dict key: shape}, classifier keys) of a family's model, from one build on the meta
    device; cached per spec and config text (an ArchSpec compares without its config)."""
    import torch

    from plastic.model.init_replay import MetaShapesOnly

    with torch.device("meta"), MetaShapesOnly():
        model = backend_of(spec).create(spec)
    names = set(classifier_names(model))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    classifier = tuple(sorted(k for k in shapes if k.rpartition(".")[0] in names))
    return shapes, classifier


def _meta_keys(spec: ArchSpec, config: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(state-dict keys, classifier keys) of a family's model (:func:`meta_model`)."""
    shapes, classifier = meta_model(spec, config)
    return tuple(shapes), classifier


def spec_keys(spec: ArchSpec) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(every state-dict key, the classifier's keys) of ``spec`` at its default class count."""
    found = backend_of(spec).keys(spec)
    if found is not None:
        return found
    return _meta_keys(
        ArchSpec(spec.family, spec.name, -1, spec.in_chans, spec.config), config_text(spec.config)
    )


def classifier_keys(spec: ArchSpec, keys: set[str]) -> list[str]:
    """The checkpoint's keys (of ``keys``) that are ``spec``'s classifier. A model whose default has no
    head (timm's EVA-02 MIM weights default to num_classes=0) names its head's keys only when built
    with one: asked again at 1,000 classes when the default shows none."""
    found = [k for k in spec_keys(spec)[1] if k in keys]
    if not found:
        headed = ArchSpec(spec.family, spec.name, 1000, spec.in_chans, spec.config)
        found = [k for k in _meta_keys(headed, config_text(spec.config))[1] if k in keys]
    return found


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


def _by_position(ckpt: Checkpoint, spec: ArchSpec) -> tuple[Checkpoint, list[str]] | None:
    """``ckpt`` under ``spec``'s names when its own names are another implementation's (torchvision's
    files read as timm's, ``efficientnet_pytorch``'s ``_blocks.N._depthwise_conv``) but every tensor lines
    up with the model's in order, in shape and in role (weight, bias, running statistic); None otherwise.

    Only for PyTorch files, which keep the model's registration order (safetensors sorts by name), and
    only for an architecture the user named: order alone is not evidence enough to detect one. A view,
    like a stripped prefix: an output keeps the file's own names. The class count is unknown without
    names: the architecture's default is tried, then the row count of the checkpoint's last matrix.
    """
    import torch

    from plastic.model.init_replay import MetaShapesOnly
    from plastic.model.signatures import role

    if ckpt.format != "torch":
        return None
    mats = [t.shape[0] for t in ckpt.tensors if len(t.shape) == 2]
    for num_classes in dict.fromkeys([-1, *(mats[-1:])]):  # -1: the family's default for the architecture
        with torch.device("meta"), MetaShapesOnly():
            model = backend_of(spec).create(spec.with_classes(num_classes))
        target = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        if len(target) == len(ckpt.tensors) and all(
            shape == t.shape and role(k) == role(t.name)
            for (k, shape), t in zip(target, ckpt.tensors, strict=True)
        ):
            mapping = {t.name: k for (k, _), t in zip(target, ckpt.tensors, strict=True)}
            why = (
                f"another implementation's names, read by position as {spec.family}'s {spec.name} (every "
                "tensor's shape and role matches in order); outputs keep the file's names"
            )
            return ckpt.renamed(mapping, why), []  # the view's note says so
    return None


def load_strict(model: nn.Module, state: dict[str, torch.Tensor], ckpt: Checkpoint) -> None:
    """``model.load_state_dict(state, strict=True)`` with the module versions some loaders read: the
    file's own (a torch state dict's ``_metadata``), else the installed library's, since the names and
    shapes were checked against it (a safetensors file has none, and torchvision's MNASNet refuses to
    load without them)."""
    from collections import OrderedDict

    versions = ckpt.versions_for_model()
    if versions is None:
        versions = dict(getattr(model.state_dict(), "_metadata", {}))
    loaded: Any = OrderedDict(state)
    loaded._metadata = versions
    try:
        model.load_state_dict(loaded, strict=True)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:  # a module's own loader objected
        if is_allocation_failure(e):
            raise
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        raise ArchitectureError(f"{ckpt.path}: {type(model).__name__} refused these weights: {first}") from e


def _same_function(specs: list[ArchSpec], ckpt: Checkpoint) -> bool:
    """Do these architectures compute the same outputs with the same weights (fixed random input)?"""
    import torch

    state = {i.name: t for i, t in ckpt.iter_tensors()}
    outputs, sizes = [], set()
    for spec in specs:
        model = _create(spec).eval()
        load_strict(model, state, ckpt)
        size = (spec.in_chans or 3, *tuple(backend_of(spec).data_defaults(model)["input_size"])[1:])
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


def stem_channels(ckpt: Checkpoint, spec: ArchSpec) -> int | None:
    """The input channels the checkpoint's stem was built for, when they are not 3: read against the
    same stem built for RGB, whose weight need not read 3 channels (TResNet's space-to-depth stem reads
    48 = 3 x 16, a linear patch embedding 3 x 16 x 16), so a stem the file shares with it is RGB and one
    reading ``k`` times fewer channels was built for 3 / k."""
    key = backend_of(spec).first_conv(spec)
    if key is None or key not in ckpt.by_name:
        return None
    shape = ckpt.by_name[key].shape
    if len(shape) < 2 or shape[1] == 3:  # reading 3 is RGB (no build needed)
        return None
    as_rgb = ArchSpec(spec.family, spec.name, -1, None, spec.config)
    try:  # the same stem built for RGB
        rgb = meta_model(as_rgb, config_text(spec.config))[0].get(key)
    except Exception:  # an architecture that does not build this way: the file's stem alone decides
        rgb = None
    if rgb is None or len(rgb) < 2:
        return shape[1]
    if shape[1] == rgb[1]:
        return None
    return shape[1] * 3 // rgb[1] if (shape[1] * 3) % rgb[1] == 0 else shape[1]


def _align_to(ckpt: Checkpoint, spec: ArchSpec, positional: bool) -> tuple[Checkpoint, list[str]]:
    """``ckpt`` under ``spec``'s names and the note: as it is, without a wrapper's prefix, or (when
    ``positional``: the user named the architecture) mapped by position from another naming."""
    names = [t.name for t in ckpt.tensors]
    keys, classifier_set = spec_keys(spec)
    classifier = set(classifier_set)
    body = set(keys) - classifier
    if set(names) - classifier == body:
        return ckpt, []
    for prefix in wrapper_prefixes(names):
        if {n[len(prefix) :] for n in names} - classifier == body:
            return ckpt.strip_prefix(prefix), [_prefix_note(prefix)]
    moved = _by_position(ckpt, spec) if positional else None
    return moved if moved is not None else (ckpt, [])


def _prefix_note(prefix: str) -> str:
    return f"tensor names carry the wrapper prefix {prefix!r}: stripped for the model, kept in outputs"


def named_spec(ckpt: Checkpoint) -> ArchSpec:
    """The architecture the option, config.json or file names, checked against its family."""
    assert ckpt.arch is not None
    family, name = parse_arch(ckpt.arch)
    b = backend(family)
    if not b.available():
        raise ArchitectureError(f"{arch_origin(ckpt)}: {ckpt.arch} needs {family}: {b.install}")
    config = ckpt.hub.config if ckpt.hub is not None and ckpt.hub.family == family else None
    name, config = b.named(name, config, ckpt)
    b.check_name(name, arch_origin(ckpt))
    return ArchSpec(family, name, -1, ckpt.in_chans, config)


def _finish(
    ckpt: Checkpoint, spec: ArchSpec, source: str, candidates: list[str], notes: list[str],
    certainty: str | None = None, evidence: TieEvidence | None = None,
) -> Resolution:  # fmt: skip
    """The class count (from the classifier's rows) and channels, once the names are the family's."""
    chans = spec.in_chans or ckpt.in_chans or stem_channels(ckpt, spec)
    keys = {t.name for t in ckpt.tensors}
    classifier = classifier_keys(spec, keys)
    spec = ArchSpec(spec.family, spec.name, num_classes_of(ckpt, classifier), chans, spec.config)
    return Resolution(
        spec, source, tuple(candidates), tuple(classifier), ckpt, tuple(notes), certainty, evidence
    )


@dataclass(frozen=True)
class _Found:
    """What detection found: the family, its candidates, the checkpoint under their names, the channels."""

    family: str
    detection: Detection
    checkpoint: Checkpoint
    in_chans: int | None
    notes: tuple[str, ...] = ()


def _detect(ckpt: Checkpoint) -> _Found:
    """The first family whose index knows the checkpoint's signature, under its own names or a wrapper's
    prefix stripped, and (timm) with a stem built for other channels; an empty detection when none does."""
    shapes = {t.name: t.shape for t in ckpt.tensors}
    for b in detecting():
        family = b.family
        for prefix in ["", *wrapper_prefixes(list(shapes))]:
            named = {k[len(prefix) :]: v for k, v in shapes.items()}
            notes = (_prefix_note(prefix),) if prefix else ()

            def view(prefix: str = prefix) -> Checkpoint:  # made only for the naming that matched
                return ckpt.strip_prefix(prefix) if prefix else ckpt

            found = b.detect(named)
            if found is not None and found.candidates:
                return _Found(family, found, view(), ckpt.in_chans, notes)
            if not b.retries_stems:
                continue
            # a stem built for 1 (or 4...) channels: try each such conv as the stem
            stems = [k for k, v in named.items() if len(v) == 4 and v[1] != 3 and k.endswith("weight")][:64]
            for key in stems:
                as_rgb = b.detect({**named, key: (named[key][0], 3, *named[key][2:])})
                stem = [b.first_conv(ArchSpec(family, a)) for a in as_rgb.candidates] if as_rgb else []
                if as_rgb and as_rgb.candidates and all(k == key for k in stem):
                    chans = named[key][1]
                    note = f"the stem {key} takes {chans} input channel(s): in_chans={chans}"
                    return _Found(family, as_rgb, view(), chans, (*notes, note))
    return _Found("", Detection([], ()), ckpt, ckpt.in_chans)


def _not_recognised(
    ckpt: Checkpoint, images: Callable[[nn.Module], torch.Tensor | None] | None = None
) -> ArchitectureError:
    """What was tried, the nearest architecture and the share of tensors it shares, what settles it;
    for a file in another implementation's names, the architectures it lines up with instead (look-alikes
    ranked by the calibration ``images`` when given, and said whether they decide)."""
    lined_up = lined_up_in_order(ckpt)
    if lined_up:
        some = " or ".join(lined_up[:3]) + (f" ({len(lined_up) - 3} more)" if len(lined_up) > 3 else "")
        evidence = _order_evidence(ckpt, lined_up, images) if len(lined_up) > 1 and images else None
        if evidence is not None:
            lean = min(evidence.scores, key=lambda a: evidence.scores[a])
            how = "favour it" if evidence.pick is not None else "lean to it but do not decide"
            advice = f"{lean} to read it by position (the calibration images {how}; {evidence.describe()})"
        else:
            advice = (
                lined_up[0]
                + (" (or another of them)" if len(lined_up) > 1 else "")
                + " to read it by position"
            )
        return ArchitectureError(
            f"{ckpt.path}: its tensor names are not a known library's, but every tensor lines up in order "
            f"(role and shape) with {'one of ' if len(lined_up) > 1 else ''}{some}: pass --arch {advice}"
        )
    shapes = {t.name: t.shape for t in ckpt.tensors}
    near = [n for b in detecting() if (n := b.nearest(shapes)) is not None]
    # a match by name and shape is stronger evidence than one by name pattern: it wins from half up
    best = max(near, key=lambda n: (n.by == "name and shape" and n.share >= 0.5, n.share), default=None)
    closest = (
        f"; the nearest is {ArchSpec(best.family, best.name).label} ({best.share:.0%} of the checkpoint's "
        f"tensors match it by {best.by})"
        if best is not None and best.share > 0
        else ""
    )
    return ArchitectureError(
        f"{ckpt.path}: could not recognise the architecture from its tensor names and shapes (tried "
        f"the {' and '.join(b.family for b in detecting())} indexes; a transformers model is read from its "
        "save_pretrained "
        f"folder){closest}; "
        "pass --arch NAME (a timm name, torchvision:NAME or transformers:CLASS)"
    )


def _order_evidence(
    ckpt: Checkpoint, labels: list[str], images: Callable[[nn.Module], torch.Tensor | None]
) -> TieEvidence | None:
    """The look-alikes a file lines up with, each read by position and run on the calibration images
    (as :func:`resolve_arch` weighs look-alikes): which one the weights were trained in."""
    from plastic.model.ties import weigh_candidates

    views: dict[str, tuple[Checkpoint, ArchSpec]] = {}
    for label in labels[:4]:
        family, name = parse_arch(label)
        spec = ArchSpec(family, name, -1, ckpt.in_chans)
        moved = _by_position(ckpt, spec)
        if moved is None:
            return None
        view = moved[0]
        views[label] = (
            view,
            spec.with_classes(num_classes_of(view, classifier_keys(spec, set(view.by_name)))),
        )

    def build(label: str) -> nn.Module:
        view, spec = views[label]
        model = _create(spec)
        load_strict(model, {i.name: t for i, t in view.iter_tensors()}, view)
        return model

    try:
        return weigh_candidates(list(views), build, images)
    except (PlasticError, RuntimeError, ValueError) as e:  # advice only: without it the message lists all
        if is_allocation_failure(e):
            raise
        return None


def lined_up_in_order(ckpt: Checkpoint) -> list[str]:
    """The architectures (labels) a PyTorch file in another implementation's names lines up with, in
    order, role and shape, from the shipped indexes (no model built): what ``--arch`` reads by position."""
    if ckpt.format != "torch":
        return []
    tensors = [(t.name, t.shape) for t in ckpt.tensors]
    for b in detecting():
        names = b.in_order(tensors)
        if names:
            # the index lines the body up with the classifier aside; --arch reads the whole file by
            # position, head included: checked on the first (look-alikes share the layout), so that the
            # advice runs when pasted (a segmentation model's head on a ResNet-50 body does not)
            try:
                reads = _by_position(ckpt, ArchSpec(b.family, names[0])) is not None
            except (PlasticError, RuntimeError, ValueError, TypeError):
                reads = False
            return [ArchSpec(b.family, n).label for n in names] if reads else []
    return []


def resolve_arch(
    ckpt: Checkpoint, images: Callable[[nn.Module], torch.Tensor | None] | None = None
) -> Resolution:
    """The file's or the user's architecture, else the one its (name, shape) signature matches.

    A wrapper's prefix on every name (``model.`` in a Lightning checkpoint) is found here, for a named
    architecture and for detection alike: the result's ``checkpoint`` is a view of ``ckpt`` under the
    model's names (``ckpt`` itself never changes). Look-alikes (same tensors, another function) are
    told apart by the calibration ``images`` when given; when they cannot be, the family's canonical
    model is assumed (said in a note and in ``certainty``); only peers stop with an error.
    """
    hint: list[str] = []
    if ckpt.arch:
        try:
            spec = named_spec(ckpt)
        except ArchitectureError:
            if ckpt.arch_source != "checkpoint":
                raise
            # a training checkpoint's own record is a hint, not the user's word: timm's train.py records
            # the model's class name ('resnet', 'visiontransformer'), which names no model
            hint.append(
                f"the file records arch {ckpt.arch!r}, which names no model: recognised from its tensors"
            )
            ckpt = dataclasses.replace(ckpt, arch=None, arch_source=None)
        else:
            own = backend_of(spec).view(ckpt, spec)  # the family's own file naming, or aligned here
            positional = ckpt.arch_source == "option"
            view, notes = own if own is not None else _align_to(ckpt, spec, positional=positional)
            return _finish(view, spec, ckpt.arch_source or "option", [spec.label], notes)
    hit = _detect(ckpt)
    family, found, ckpt, notes = hit.family, hit.detection, hit.checkpoint, [*hint, *hit.notes]
    if not found.candidates:
        raise _not_recognised(ckpt, images)
    specs = [ArchSpec(family, name, -1, hit.in_chans) for name in found.candidates]
    labels = [s.label for s in specs]
    if len(specs) == 1:
        return _finish(ckpt, specs[0], "detected", labels, notes)
    num_classes = num_classes_of(ckpt, list(found.classifier))
    sized = [s.with_classes(num_classes) for s in specs]
    if _same_function(sized, ckpt):
        note = (
            f"architectures {', '.join(labels)} share this checkpoint's signature and compute "
            f"the same; using {labels[0]} (its data config); pass --arch to choose"
        )
        return _finish(ckpt, specs[0], "detected", labels, [*notes, note])
    evidence = None
    if images is not None:
        from plastic.model.ties import weigh_candidates

        state = {i.name: t for i, t in ckpt.iter_tensors()}
        by_label = {s.label: s for s in sized}

        def build(label: str) -> nn.Module:
            model = _create(by_label[label])
            load_strict(model, state, ckpt)
            return model

        evidence = weigh_candidates(labels, build, images)
        if evidence is not None and evidence.pick is not None:
            note = (
                f"architectures {', '.join(labels)} share this checkpoint's signature; the "
                f"calibration images decide for {evidence.pick}: {evidence.describe()}"
            )
            pick = next(s for s in specs if s.label == evidence.pick)
            return _finish(ckpt, pick, "detected", labels, [*notes, note], evidence=evidence)
    why = f"the calibration images do not decide ({evidence.describe()})" if evidence is not None else ""
    canonical = backend(family).canonical(found.candidates)
    if canonical is not None:
        pick = next(s for s in specs if s.name == canonical)
        note = (
            f"architectures {', '.join(labels)} share this checkpoint's signature and "
            f"{why or 'no calibration images were given to tell them apart'}; assumed {pick.label}, the "
            f"canonical model the others are variants of; pass --arch to choose another"
        )
        return _finish(ckpt, pick, "detected", labels, [*notes, note], "assumed", evidence)
    why = f"; {why}" if why else ""
    raise ArchitectureError(
        f"{ckpt.path}: ambiguous architecture: {', '.join(labels)} all match its tensors but "
        f"compute differently{why}; pass --arch with one of them"
    )


def build_model(
    ckpt: Checkpoint,
    *,
    images: Callable[[nn.Module], torch.Tensor | None] | None = None,
) -> BuiltModel:
    """The model for ``ckpt`` on the CPU, in eval mode, with the checkpoint loaded strictly.

    The result's ``checkpoint`` is ``ckpt`` under the model's names (:func:`resolve_arch`: a wrapper's
    prefix stripped, transformers' file names, or another library's names mapped by position when the
    user named the architecture); ``images`` tell look-alike architectures apart.
    """
    res = resolve_arch(ckpt, images)
    spec, notes, ckpt = res.spec, list(res.notes), res.checkpoint
    model = _create(spec)
    missing, unexpected, shaped = compare_names(model, ckpt)
    if missing or unexpected or shaped:
        raise ArchitectureError(
            mismatch_message(spec.label, missing, unexpected, shaped) + _naming_hint(spec, ckpt)
        )
    load_strict(model, {i.name: t for i, t in ckpt.iter_tensors()}, ckpt)
    model.eval()
    return BuiltModel(model, spec.label, res.source, list(res.candidates), spec.num_classes,
                      list(res.classifier), notes, spec, res.certainty, ckpt, res.evidence)  # fmt: skip


def _naming_hint(spec: ArchSpec, ckpt: Checkpoint) -> str:
    """Why names may not match: another family's naming, or another transformers version's."""
    own = backend_of(spec).naming_hint(spec, ckpt)
    if own:
        return own
    shapes = {t.name: t.shape for t in ckpt.tensors}
    for b in detecting():  # the file is another family's model, under that family's names
        found = b.detect(shapes) if b.family != spec.family else None
        if found is not None and found.candidates:
            label = ArchSpec(b.family, found.candidates[0]).label
            return f"; its names are {b.family}'s: pass --arch {label} (or no --arch)"
    return ""
