"""A model in memory as the file pipelines see a checkpoint: its architecture label and spec (asked of its
family's backend), and a :class:`Checkpoint` view over its own tensors, so ``diagnose_model`` and
``reinit_model`` run the same steps as the commands."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from plastic.files.checkpoint import Checkpoint, from_state_dict
from plastic.model.backends import ArchSpec, backend, backend_of_model, classifier_names, parse_arch

IN_MEMORY = "<in-memory model>"


def model_arch(model: nn.Module, arch: str | None = None) -> str | None:
    """The architecture label of a live model: the caller's, else what its family says of it (timm's
    ``pretrained_cfg``, a transformers model's class, the torchvision model whose signature its state
    dict has)."""
    if arch:
        return arch
    b = backend_of_model(model)
    name = b.name_of(model)
    return ArchSpec(b.family, name).label if name else None


def model_spec(model: nn.Module, ckpt: Checkpoint) -> ArchSpec | None:
    """The :class:`ArchSpec` of a live model (its class count, channels and transformers config)."""
    if ckpt.arch is None:
        return None
    family, name = parse_arch(ckpt.arch)
    config = backend(family).config_of(model)
    return ArchSpec(family, name, num_classes_of_model(model), ckpt.in_chans, config)


def checkpoint_view(model: nn.Module, arch: str | None = None, name: str = IN_MEMORY) -> Checkpoint:
    """A :class:`Checkpoint` over the model's own state dict (no copy: the tensors are the model's), so
    every step written for files reads a live model the same way."""
    from plastic.model.structure import input_channels

    arch = model_arch(model, arch)
    chans = input_channels(model)
    return from_state_dict(
        model.state_dict(),  # name -> tensor sharing storage with the parameter or buffer
        path=Path(name), format="memory", strip=False, metadata={}, arch=arch,
        arch_source="option" if arch else None, in_chans=chans if chans != 3 else None,
    )  # fmt: skip


def num_classes_of_model(model: nn.Module) -> int:
    """The classifier's output count (0 without a classifier matrix)."""
    state = model.state_dict()
    head = [k for k in classifier_keys_of(model) if k.endswith("weight") and state[k].dim() >= 2]
    return int(state[head[0]].shape[0]) if head else 0


def classifier_keys_of(model: nn.Module) -> list[str]:
    """The state-dict keys of the model's classifier (its family's), for the head exclusion."""
    prefixes = classifier_names(model)
    keys = model.state_dict()
    return [k for k in keys if k.rpartition(".")[0] in prefixes]
