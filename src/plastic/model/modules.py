"""Module-tree knowledge: which modules are layers with units, which are elementwise activations, and
which activation follows which layer (found by one probe forward). Shared by the structure analysis
(model/) and the statistics hooks (measure/), so it lives at the lower of the two layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

_NOT_ELEMENTWISE = (nn.Softmax, nn.Softmin, nn.LogSoftmax, nn.Softmax2d, nn.MultiheadAttention, nn.GLU)


def is_activation(m: nn.Module) -> bool:
    """An elementwise non-linearity module from torch or timm (ReLU, GELU, SiLU, Sigmoid, Hardswish...)."""
    if isinstance(m, _NOT_ELEMENTWISE):
        return False
    mod = type(m).__module__
    return mod.startswith("torch.nn.modules.activation") or mod.startswith("timm.layers.activations")


def is_layer(m: nn.Module) -> bool:
    """A layer with units: convolutions (units = output channels) and linear layers (output features)."""
    return isinstance(m, nn.modules.conv._ConvNd | nn.Linear)


def units_of(m: nn.Module) -> int:
    if isinstance(m, nn.modules.conv._ConvNd):
        return int(m.out_channels)
    return int(m.out_features)  # type: ignore[arg-type]


def layers_of(model: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in model.named_modules() if name and is_layer(m)}


def output_tensor(out: Any) -> torch.Tensor:
    """A model's output as one tensor: the tensor itself, a transformers output's ``logits``, or the
    first tensor of a tuple (torchvision's GoogLeNet with its auxiliary heads)."""
    if isinstance(out, torch.Tensor):
        return out
    logits = getattr(out, "logits", None)
    if isinstance(logits, torch.Tensor):
        return logits
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise TypeError(f"a model output of type {type(out).__name__} holds no tensor to compare")


def probe_forward(model: nn.Module, x: torch.Tensor, hooks: dict[nn.Module, Callable[..., Any]]) -> None:
    """One ``no_grad`` forward of ``x`` with forward hooks that are removed however it ends."""
    handles = [m.register_forward_hook(fn) for m, fn in hooks.items()]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()


def _closeness(layer: str, act: str) -> tuple[int, int]:
    """(shared leading path components, -(layer components past them)): bigger is closer."""
    lp, ap = layer.split("."), act.split(".")
    common = 0
    for x, y in zip(lp, ap, strict=False):
        if x != y:
            break
        common += 1
    return common, -(len(lp) - common)


class ActSites(dict[str, str]):
    """{layer: activation module} and, in ``calls``, which call of that module within one forward is
    the layer's: torchvision's ResNet blocks call one ``relu`` after ``bn1`` and again after the add."""

    def __init__(self, sites: dict[str, str], calls: dict[str, int]) -> None:
        super().__init__(sites)
        self.calls = calls


def find_act_sites(model: nn.Module, x: torch.Tensor) -> ActSites:
    """One probe forward: {layer name: activation module name} for layers followed by an activation.

    An activation is attributed to one of the layers called since the previous activation whose unit
    count matches: the closest in the module tree (a sibling ``conv2`` beats a residual branch's
    ``downsample.0`` for ``act2``), the most recent on ties.
    """
    layers = layers_of(model)
    acts = {name: m for name, m in model.named_modules() if name and is_activation(m)}
    pending: list[str] = []  # layers called since the last activation, in call order
    found: dict[str, str] = {}
    calls: dict[str, int] = {}  # layer -> the index of its activation module's call
    seen: dict[str, int] = {}  # activation module -> calls so far

    def on_layer(name: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _i: object, _o: object) -> None:
            pending.append(name)

        return hook

    def on_act(name: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, inputs: tuple[torch.Tensor, ...], _o: object) -> None:
            index = seen.get(name, 0)
            seen[name] = index + 1
            if not inputs or not isinstance(inputs[0], torch.Tensor) or inputs[0].dim() < 2:
                return
            shape = inputs[0].shape
            fits = [
                (i, layer)
                for i, layer in enumerate(pending)
                if layer not in found
                and shape[-1 if isinstance(layers[layer], nn.Linear) else 1] == units_of(layers[layer])
            ]
            if fits:
                _, layer = max(fits, key=lambda f: (_closeness(f[1], name), f[0]))
                found[layer] = name
                calls[layer] = index
            pending.clear()

        return hook

    hooks = {m: on_layer(name) for name, m in layers.items()}
    hooks.update({m: on_act(name) for name, m in acts.items()})
    probe_forward(model, x, hooks)
    shared = {a for a, n in seen.items() if n > 1}  # only a module called several times needs its index
    return ActSites(found, {la: i for la, i in calls.items() if found[la] in shared})
