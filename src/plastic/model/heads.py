"""A new classifier for a new task: the head the trial's candidates fine-tune, as a user's script puts one.

The family's backend names the classifier (timm's ``get_classifier``, torchvision's last linear layer,
a transformers model's ``classifier``); each of its modules is replaced by a new one with the target's
class count, drawn from the seed alone, so every candidate starts from the same head.
"""

from __future__ import annotations

import torch
from torch import nn

from plastic.errors import ArchitectureError
from plastic.model.backends import classifier_names


def check_heads(model: nn.Module) -> list[str]:
    """The classifier modules ``replace_heads`` would replace; raises as it would, before any work."""
    names = [n for n in classifier_names(model) if any(True for _ in model.get_submodule(n).parameters())]
    if not names:  # none, or an Identity where a headless model's classifier would be
        raise ArchitectureError(
            f"{type(model).__name__} has no classifier to replace with a new head (a backbone, or a model "
            "built without one): the trial fine-tunes a classifier; build the model with one"
        )
    for name in names:
        old = model.get_submodule(name)
        conv = isinstance(old, nn.Conv2d) and old.kernel_size == (1, 1) and old.groups == 1
        if not (isinstance(old, nn.Linear) or conv):
            raise ArchitectureError(
                f"the classifier {name} is a {type(old).__name__}; the trial replaces a Linear or 1x1 "
                "convolution head only"
            )
    return names


def replace_heads(model: nn.Module, num_classes: int, seed: int) -> list[str]:
    """Put a new ``num_classes``-way head in place of each classifier module of ``model`` (a Linear, or a
    1x1 convolution as in SqueezeNet), initialised by PyTorch's default from ``seed``. Returns the
    module names replaced.

    Raises:
        ArchitectureError: the model has no classifier (a backbone), or one of another kind.
    """
    names = check_heads(model)
    for name in names:
        old = model.get_submodule(name)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            new: nn.Module
            if isinstance(old, nn.Linear):
                new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
            else:  # a 1x1 convolution (check_heads)
                assert isinstance(old, nn.Conv2d)
                new = nn.Conv2d(old.in_channels, num_classes, 1, bias=old.bias is not None)
        parent_name, _, leaf = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, leaf, new.to(device=old.weight.device, dtype=old.weight.dtype))
    return names
