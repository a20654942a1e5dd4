"""New values for re-initialized tensors (docs/methods.md, "New values").

- ``resample``: the architecture's own initialization: the same timm model built fresh with the seed
  (trunc-normal ViT init, zero-init of the last BN in ResNet blocks, ...). Without an architecture:
  PyTorch's default for the tensor's role (Kaiming-uniform weights, U(+-1/sqrt(fan_in)) biases,
  norm gain 1 and bias 0, running mean 0 and variance 1).
- ``mean``: the init distribution's mean: 0 for weights and biases, 1 for norm gains and running
  variances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from plastic.errors import PlasticError, UsageError
from plastic.files.checkpoint import TensorInfo
from plastic.model.backends import ArchSpec
from plastic.model.init_replay import InitRecording, record_init, tensor_seed

# Bumped when the same (checkpoint, strategy, options, seed) starts giving other values.
# 2: resampled tensors are replayed one by one, each seeded by (seed, name); 1 drew a full fresh model.
INIT_SCHEME = "init scheme 2"

GAIN_LEAVES = ("weight", "gamma")
ONE_BUFFERS = ("running_var",)
ZERO_BUFFERS = ("running_mean", "num_batches_tracked")


def is_norm_tensor(name: str, shapes: dict[str, tuple[int, ...]]) -> bool:
    """A norm layer's tensor: its module has a 1-D weight (gain) and no >= 2-D weight."""
    prefix = name.rpartition(".")[0]
    w = shapes.get(f"{prefix}.weight")
    return (w is not None and len(w) == 1) or f"{prefix}.running_mean" in shapes


def mean_value(info: TensorInfo, shapes: dict[str, tuple[int, ...]]) -> torch.Tensor:
    """The init distribution's mean for this tensor, in float32."""
    leaf = info.name.rpartition(".")[2]
    one = leaf in ONE_BUFFERS or (
        leaf in GAIN_LEAVES and len(info.shape) == 1 and is_norm_tensor(info.name, shapes)
    )
    return torch.full(info.shape, 1.0 if one else 0.0)


def tensor_generator(seed: int, name: str) -> torch.Generator:
    """One generator per (seed, tensor): values do not depend on which other tensors are drawn."""
    return torch.Generator().manual_seed(tensor_seed(seed, name))


def default_value(info: TensorInfo, shapes: dict[str, tuple[int, ...]], seed: int) -> torch.Tensor | None:
    """PyTorch's default init for the tensor's role; None when the role has no default (tokens...)."""
    leaf = info.name.rpartition(".")[2]
    prefix = info.name.rpartition(".")[0]
    if leaf in ONE_BUFFERS or leaf in ZERO_BUFFERS or is_norm_tensor(info.name, shapes):
        return mean_value(info, shapes)
    gen = tensor_generator(seed, info.name)
    if leaf == "weight" and len(info.shape) >= 2:
        fan_in = math.prod(info.shape[1:])
        bound = 1.0 / math.sqrt(fan_in)  # kaiming_uniform_(a=sqrt(5)), as nn.Linear / nn.ConvNd do
        return torch.empty(info.shape).uniform_(-bound, bound, generator=gen)
    if leaf == "bias" and len(info.shape) == 1:
        w = shapes.get(f"{prefix}.weight")
        if w is not None and len(w) >= 2:
            bound = 1.0 / math.sqrt(math.prod(w[1:]))
            return torch.empty(info.shape).uniform_(-bound, bound, generator=gen)
    return None


@dataclass
class InitSource:
    """Where resampled values come from, best first:

    - ``recording``: the architecture's own init replayed for each needed tensor alone, seeded per
      (seed, tensor name) (``init_replay``): nothing else of the model is ever initialised;
    - ``init``: the needed tensors of a full fresh seeded model (when a tensor cannot be replayed);
    - neither (architecture unknown): PyTorch's default for the tensor's role.
    """

    arch: str | None
    seed: int
    shapes: dict[str, tuple[int, ...]]
    recording: InitRecording | None = None
    init: dict[str, torch.Tensor] | None = None  # tensor name -> its value at init

    @classmethod
    def from_model(
        cls, arch: str, seed: int, model: nn.Module, needed: set[str], shapes: dict[str, tuple[int, ...]]
    ) -> InitSource:
        state = model.state_dict()
        return cls(arch, seed, shapes, init={k: v.detach().clone() for k, v in state.items() if k in needed})

    @property
    def description(self) -> str:
        if self.recording is not None:
            return f"{_family_words(self.arch)} init, replayed per tensor (seed {self.seed}, {INIT_SCHEME})"
        if self.init is not None:
            return f"{_family_words(self.arch)} init (fresh model, seed {self.seed})"
        return "PyTorch default init for each tensor's role (no architecture known)"

    def resample(self, info: TensorInfo) -> torch.Tensor | None:
        if self.recording is not None:
            if info.name not in self.recording.state:
                return None
            return self.recording.value(info.name, self.seed).float()
        if self.init is not None:
            t = self.init.get(info.name)
            return None if t is None else t.float()
        return default_value(info, self.shapes, self.seed)


def _family_words(label: str | None) -> str:
    """``timm resnet50``, ``torchvision resnet50``: the init's owner, as the manifest says it."""
    family, _, name = (label or "").rpartition(":")
    return f"{family or 'timm'} {name}"


def as_spec(arch: ArchSpec | str, num_classes: int = -1, in_chans: int | None = None) -> ArchSpec:
    """An :class:`ArchSpec` from a spec or a label (``resnet50``, ``torchvision:resnet50``)."""
    if isinstance(arch, ArchSpec):
        return arch
    from plastic.model.backends import parse_arch

    family, name = parse_arch(arch)
    return ArchSpec(family, name, num_classes, in_chans)


def recorded_model(
    arch: ArchSpec | str, num_classes: int = -1, in_chans: int | None = None
) -> InitRecording | None:
    """The family's constructor on the meta device with its init recorded: names, shapes, module
    types, and any tensor's init on demand, at the cost of building the model without its values.
    None when the constructor cannot run on meta (it reads values: torchvision's RegNet widths)."""
    from plastic.model.backends import backend_of

    spec = as_spec(arch, num_classes, in_chans)
    try:
        return record_init(lambda: backend_of(spec).create(spec))
    except Exception:
        return None


def fresh_model(
    arch: ArchSpec | str, num_classes: int = -1, seed: int = 0, in_chans: int | None = None
) -> nn.Module:
    """The family's constructor with the global RNG seeded (its own init), the RNG restored after."""
    from plastic.model.backends import backend_of

    spec = as_spec(arch, num_classes, in_chans)
    state = torch.random.get_rng_state()
    try:
        torch.manual_seed(seed)
        return backend_of(spec).create(spec).eval()
    except PlasticError:
        raise
    except Exception as e:
        raise UsageError(f"cannot build {spec.label}: {e}") from None
    finally:
        torch.random.set_rng_state(state)
