"""Blocks and stages from the module tree, for families without timm's ``group_matcher``.

A model's *trunk* is the container whose children are its stages (torchvision's ``features``,
``layerN`` under the model itself, ``encoder.layers``; transformers' ``encoder.layer`` /
``encoder.stages``). Coarse groups are the stem (everything before the first stage), each stage, and
the head (everything after the last); fine groups split a stage that is a plain sequence of blocks into
those blocks. Members are the modules that hold tensors themselves, in model order.
"""

from __future__ import annotations

import re

from torch import nn

STEM, HEAD = "<stem>", "<head>"


def _owns_tensors(m: nn.Module) -> bool:
    return any(True for _ in m.parameters(recurse=False)) or any(True for _ in m.buffers(recurse=False))


def _has_tensors(m: nn.Module) -> bool:
    return any(True for _ in m.parameters()) or any(True for _ in m.buffers())


def _is_block_sequence(m: nn.Module) -> bool:
    """A sequence whose children are blocks (modules with submodules), not a conv-norm-act triple."""
    if not isinstance(m, nn.Sequential | nn.ModuleList):
        return False
    kids = [c for c in m.children() if _has_tensors(c)]
    return len(kids) >= 2 and all(any(True for _ in c.children()) for c in kids)


def tree_groups(model: nn.Module, trunk: str, coarse: bool) -> dict[int, list[str]]:
    """{group id: member module names}, ids in model order; empty when ``trunk`` is not a module."""
    modules = dict(model.named_modules())
    root = modules.get(trunk)
    if root is None:
        return {}
    prefix = f"{trunk}." if trunk else ""
    # under the model itself, its bare layers (a ResNet's conv1, bn1, fc) are the stem and the head
    stages = [
        f"{prefix}{c}"
        for c, m in root.named_children()
        if _has_tensors(m) and (trunk or any(True for _ in m.children()))
    ]
    if not stages:
        return {}
    keys: dict[str, str] = {}  # module -> group key
    seen_stage = False
    for name, m in modules.items():
        if not name:
            continue
        stage = next((s for s in stages if name == s or name.startswith(s + ".")), None)
        if stage is None:
            key = HEAD if seen_stage else STEM
        else:
            seen_stage = True
            key = stage
            if not coarse and _is_block_sequence(modules[stage]) and name != stage:
                key = ".".join(name.split(".")[: stage.count(".") + 2])  # stage.N: one block
        if _owns_tensors(m):
            keys[name] = key
    order: dict[str, int] = {}
    for key in keys.values():
        order.setdefault(key, len(order))
    if HEAD in order:  # the head is always last, even when a module after it was registered early
        order[HEAD] = len(order)
    groups: dict[int, list[str]] = {}
    for name, key in keys.items():
        groups.setdefault(order[key], []).append(name)
    return {i: groups[i] for i in sorted(groups)} if groups else {}


TRUNK_NAME = re.compile(r"(^|\.)(layer|layers|stages|blocks|block)$")


def trunk_groups(model: nn.Module, coarse: bool) -> dict[int, list[str]]:
    """Groups for a model whose family gives no stage map: its trunk is the first list (ModuleList or
    Sequential of 2 or more) named like one (``stages``, ``blocks``, ``layers``, ``layer``), else the
    list holding the most weights (SwiftFormer's ``encoder.network``); empty without either."""
    lists = [
        (name, m) for name, m in model.named_modules()
        if isinstance(m, nn.ModuleList | nn.Sequential) and len(m) >= 2
    ]  # fmt: skip
    for name, _m in lists:
        if TRUNK_NAME.search(name):
            return tree_groups(model, name, coarse)
    sizes = [(sum(p.numel() for p in m.parameters()), -i, name) for i, (name, m) in enumerate(lists)]
    if sizes and max(sizes)[0] > 0:
        return tree_groups(model, max(sizes)[2], coarse)
    return {}


def last_layer(model: nn.Module) -> list[nn.Module]:
    """The classifier of a model without an accessor: its last registered linear layer (or, in a
    model with none, its last convolution: SqueezeNet's 1x1 classifier conv)."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if linears:
        return [linears[-1]]
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    return [convs[-1]] if convs else []
