"""One interface, one backend per model family: timm, torchvision, Hugging Face transformers.

The pipelines ask the same questions of every checkpoint, and never branch on where it came from:

- which architectures match it (``detect``: a shipped signature index for timm and torchvision; the
  ``config.json`` beside the weights for transformers);
- build it (``create``: the family's own constructor and init, seeded by the global RNG, on whatever
  device is the default: ``meta`` for names and shapes at no cost);
- its blocks and stages in model order (``groups``), its classifier (``classifier``), the
  preprocessing its weights expect (``data_defaults``).

An architecture travels as an :class:`ArchSpec`; its ``label`` is the name reports carry and
``--arch`` takes: timm's names bare (``resnet50``: reports from before the other families are
unchanged), the others with their family (``torchvision:resnet50``,
``transformers:ViTForImageClassification``). A fourth family is one more module here that subclasses
:class:`Backend` and is added to ``_FAMILIES`` (or, from outside the package, one
:func:`register_family` call): every caller asks the registered families, none names one.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, ClassVar

from plastic.errors import ArchitectureError

if TYPE_CHECKING:
    from torch import nn

    from plastic.files.checkpoint import Checkpoint

# family -> the module that defines its backend (imported on first use: each pulls in its library)
_FAMILIES = {
    "timm": "plastic.model.backends.timm_family",
    "torchvision": "plastic.model.backends.torchvision_family",
    "transformers": "plastic.model.backends.transformers_family",
}
DEFAULT_FAMILY = "timm"


@dataclass(frozen=True)
class ArchSpec:
    """One architecture of one family, with what building it needs.

    ``num_classes`` -1 is the family's default head; 0 is a headless model. ``config`` is the
    transformers ``config.json`` (the model is built from it, never downloaded).
    """

    family: str
    name: str
    num_classes: int = -1
    in_chans: int | None = None
    config: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def label(self) -> str:
        """The name reports carry and ``--arch`` takes."""
        return self.name if self.family == DEFAULT_FAMILY else f"{self.family}:{self.name}"

    def with_classes(self, num_classes: int) -> ArchSpec:
        return ArchSpec(self.family, self.name, num_classes, self.in_chans, self.config)


def parse_arch(label: str) -> tuple[str, str]:
    """``"torchvision:resnet50"`` -> ``("torchvision", "resnet50")``; a bare name is timm's."""
    family, sep, name = label.partition(":")
    if not sep:
        return DEFAULT_FAMILY, label
    if family not in families():
        raise ArchitectureError(
            f"--arch {label[:120]!r}: unknown model family {family[:40]!r}; use a timm name, "
            f"torchvision:NAME or transformers:CLASS"
        )
    if not name:
        raise ArchitectureError(f"--arch {label[:120]!r}: no architecture after {family}:")
    return family, name


@dataclass
class Detection:
    """What one family's index says about a checkpoint's (name, shape) signature."""

    candidates: list[str]  # the family's names for every matching architecture, sorted
    classifier: tuple[str, ...]  # the checkpoint keys taken as the classifier
    exact_index: bool = True  # False: the index was built for another version of the library


@dataclass(frozen=True)
class Nearest:
    """The closest architecture of a family when none matches: for the error that says what was tried."""

    family: str
    name: str
    share: float  # the checkpoint's tensors it matches / all of them
    by: str = "name and shape"  # what a match is: "name and shape", or "name pattern" (indices aside)


class Backend:
    """What plastic needs to know about one family of models. Subclasses fill in each method."""

    family: ClassVar[str]
    install: ClassVar[str] = ""  # the pip extra or package that provides the library
    # the per-tensor init replay (model/init_replay) reproduces this family's constructors bit for bit
    # (tested across timm architectures); where not, new values come from a full fresh model
    replay_exact: ClassVar[bool] = False
    # recognised from its tensors alone (a shipped index): detection tries these in registration order
    detects: ClassVar[bool] = False
    # detection also tries each non-RGB conv as the stem (a model built for 1 or 4 input channels)
    retries_stems: ClassVar[bool] = False
    library: ClassVar[str] = ""  # the distribution whose version keys the reference cache

    def available(self) -> bool:
        """Is the family's library installed?"""
        from importlib.util import find_spec

        return find_spec(self.family) is not None

    def owns(self, model: nn.Module) -> bool:
        """Was ``model`` built by this family's library?"""
        raise NotImplementedError

    def name_of(self, model: nn.Module) -> str | None:
        """The architecture name of a live model this family built (what it recorded on the model, or
        what its index says of its state dict); None when the model does not say."""
        return None

    def config_of(self, model: nn.Module) -> Mapping[str, Any] | None:
        """The config a live model is rebuilt from (``ArchSpec.config``); None for families built by name."""
        return None

    def check_name(self, name: str, where: str) -> None:
        """Raise ArchitectureError, naming ``where`` the name came from, unless the family knows it."""
        raise NotImplementedError

    def keys(self, spec: ArchSpec) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """(every state-dict key, the classifier's keys) from the family's index without a build, or None:
        the caller then builds the model on the meta device."""
        return None

    def named(
        self, name: str, config: Mapping[str, Any] | None, ckpt: Checkpoint
    ) -> tuple[str, Mapping[str, Any] | None]:
        """The name and config a checkpoint that names this family's architecture builds with (a family
        built from a config may take the name from it, or refuse a file without one)."""
        return name, config

    def view(self, ckpt: Checkpoint, spec: ArchSpec) -> tuple[Checkpoint, list[str]] | None:
        """``ckpt`` under the model's names when the family's files use their own (a view, with notes);
        None: the caller aligns the names itself (a wrapper's prefix, or by position)."""
        return None

    def naming_hint(self, spec: ArchSpec, ckpt: Checkpoint) -> str:
        """Why a file's names may not match this family's model (appended to the mismatch error)."""
        return ""

    def detect(self, shapes: dict[str, tuple[int, ...]]) -> Detection | None:
        """Candidates for a checkpoint given as {key: shape}; None when the family cannot detect."""
        return None

    def nearest(self, shapes: dict[str, tuple[int, ...]]) -> Nearest | None:
        """The family's closest architecture by shared (name, shape) pairs, for an error message."""
        return None

    def in_order(self, tensors: list[tuple[str, tuple[int, ...]]]) -> list[str]:
        """Architectures whose tensors line up with ``tensors`` (file order) in role and shape under other
        names (another implementation's file of the same model), the classifier aside; for the error
        that suggests ``--arch`` (order alone is not evidence enough to pick one unasked)."""
        return []

    def create(self, spec: ArchSpec) -> nn.Module:
        """A fresh model with the family's own init (global RNG), on the default device, eval mode."""
        raise NotImplementedError

    def groups(self, model: nn.Module, coarse: bool = False) -> dict[int, list[str]]:
        """{group id: module names} in model order: coarse = stem, stages, head; fine = blocks."""
        raise NotImplementedError

    def classifier(self, model: nn.Module) -> list[nn.Module]:
        """The classifier head's modules (the first one's input is the pre-logits feature)."""
        raise NotImplementedError

    def data_defaults(self, model: nn.Module) -> dict[str, Any]:
        """The preprocessing the family's weights use: input_size, mean, std, interpolation, crop_pct,
        crop_mode (timm's data-config keys)."""
        from timm.data.config import resolve_model_data_config

        return dict(resolve_model_data_config(model))

    def first_conv(self, spec: ArchSpec) -> str | None:
        """The stem convolution's weight key, when the family names one."""
        return None

    def feed_problem(self, model: nn.Module) -> str | None:
        """Why a batch of images cannot be the model's input, when the family can tell before running
        it (a model that reads token ids); None when it takes images."""
        return None

    def canonical(self, candidates: list[str]) -> str | None:
        """The family's canonical model among look-alikes (resnet18 among resnet18, resnetblur18), or
        None when they are peers."""
        return None


_REGISTERED: dict[str, Backend] = {}  # families added at run time (register_family), after the built-in ones


def register_family(b: Backend) -> None:
    """Add a model family: from then on every command and API function detects, builds, groups and
    re-initializes its models through ``b`` alone (``--arch FAMILY:NAME`` names them).

    Raises:
        ValueError: a family of that name is registered already.
    """
    if b.family in _FAMILIES or b.family in _REGISTERED:
        raise ValueError(f"model family {b.family!r} is registered already")
    _REGISTERED[b.family] = b


def unregister_family(family: str) -> None:
    """Remove a family added by :func:`register_family` (the built-in ones stay)."""
    _REGISTERED.pop(family, None)


def families() -> list[str]:
    """Every family's name, built-in first, in the order detection tries them."""
    return [*_FAMILIES, *_REGISTERED]


def detecting() -> list[Backend]:
    """The backends that recognise a checkpoint from its tensors (their indexes are shipped: a family
    whose library is missing is still recognised, and its build says what to install), in order."""
    return [b for b in map(backend, families()) if b.detects]


def backend(family: str) -> Backend:
    """The backend of ``family`` (``timm``, ``torchvision``, ``transformers``, or one registered)."""
    if family in _REGISTERED:
        return _REGISTERED[family]
    if family not in _FAMILIES:
        raise ArchitectureError(f"unknown model family {family!r}; known: {', '.join(families())}")
    return _builtin(family)


@cache
def _builtin(family: str) -> Backend:
    module = importlib.import_module(_FAMILIES[family])
    return module.BACKEND  # type: ignore[no-any-return]


def backend_of(spec_or_label: ArchSpec | str) -> Backend:
    family = spec_or_label.family if isinstance(spec_or_label, ArchSpec) else parse_arch(spec_or_label)[0]
    return backend(family)


def backend_of_model(model: nn.Module) -> Backend:
    """The family that built a live model; timm's for any other module (its defaults are generic)."""
    for family in families():
        if family != DEFAULT_FAMILY and backend(family).available() and backend(family).owns(model):
            return backend(family)
    return backend(DEFAULT_FAMILY)


def classifier_names(model: nn.Module) -> list[str]:
    """The module names of a live model's classifier, by its family's rules, in model order."""
    ids = {id(h) for h in backend_of_model(model).classifier(model)}
    return [n for n, m in model.named_modules() if n and id(m) in ids]


def model_groups(model: nn.Module, coarse: bool = False) -> dict[int, list[str]]:
    """{group id: module names} of a live model, by its family's rules."""
    return backend_of_model(model).groups(model, coarse)


def config_text(config: Mapping[str, Any] | None) -> str:
    """A config as canonical JSON (for fingerprints and equality)."""
    return json.dumps(config, sort_keys=True) if config is not None else ""
