"""Where a model's attention probabilities can be read, in each family's own way.

Attention entropy (docs/methods.md) needs the softmax probabilities, which the fast kernels never
form: timm's fused attention, transformers' ``sdpa`` implementation and torch's
``nn.MultiheadAttention`` fast path all go straight to the output. Each family has its own switch to
the slow path that forms them, and its own place where they can be read:

- timm: an attention module with ``fused_attn`` and an ``attn_drop`` module; with ``fused_attn`` off,
  ``attn_drop`` receives the (B, heads, queries, keys) probabilities.
- transformers: an attention module on the ``AttentionInterface`` (it has ``is_causal`` and a
  ``config`` with ``_attn_implementation``: ViT, DeiT, BEiT, DINOv2, Swin, CLIP, SigLIP...); with its
  config set to ``eager`` it returns ``(output, probabilities)``. Modules that compute attention their own
  way (LeViT, PVT, MobileViT, CvT, Data2Vec-vision) have no such switch and are not read.
- torch: ``nn.MultiheadAttention`` (torchvision's ViT), whose callers pass ``need_weights=False``;
  asked for per-head weights it returns them second.

:func:`attention_sites` finds them; each :class:`AttentionSite` switches its module to the slow path
(:meth:`AttentionSite.unfused`) and calls back with the probabilities (:meth:`AttentionSite.hook`).
The entropy is reported on the module's query projection (timm's ``qkv``, transformers' ``query`` or
``q_proj``), else its first linear layer (``nn.MultiheadAttention`` holds its q, k, v projection as a
bare parameter, so its ``out_proj``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

Probs = Callable[[torch.Tensor], None]  # called with (B, heads, queries, keys) probabilities


@dataclass
class AttentionSite:
    """One attention module whose probabilities can be read."""

    module: nn.Module
    layer: str  # the linear layer its entropy is reported on
    kind: str  # "timm" | "transformers" | "torch"

    @contextmanager
    def unfused(self) -> Iterator[None]:
        """The slow path that forms the probabilities, for the ``with`` block; restored after."""
        m = self.module
        if self.kind == "timm":
            flag = bool(m.fused_attn)
            try:
                m.fused_attn = False  # type: ignore[assignment]
                yield
            finally:
                m.fused_attn = flag  # type: ignore[assignment]
        elif self.kind == "transformers":
            config: Any = m.config
            # the setter also sets every sub-config: each one's own value is put back, top first
            before = [(c, c._attn_implementation) for c in _configs(config)]
            try:
                config._attn_implementation = "eager"
                yield
            finally:
                for c, value in before:
                    c._attn_implementation = value
        else:  # torch: the weights are asked for per call (see hook)
            yield

    def hook(self, callback: Probs, active: Callable[[], bool]) -> list[RemovableHandle]:
        """Hooks that pass the probabilities to ``callback`` during forwards where ``active()`` is true
        (on the slow path, or the call forms none). Removing the handles restores the module."""
        m = self.module
        if self.kind == "timm":

            def before_drop(_m: nn.Module, inputs: tuple[Any, ...]) -> None:
                if active() and inputs and _probs(inputs[0]):
                    callback(inputs[0])

            return [m.attn_drop.register_forward_pre_hook(before_drop)]  # type: ignore[union-attr]

        def after(_m: nn.Module, _inputs: Any, out: Any) -> None:
            if active() and isinstance(out, tuple) and len(out) > 1 and _probs(out[1]):
                callback(out[1])

        handles = [m.register_forward_hook(after)]
        if self.kind == "torch":

            def ask(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
                if not active():
                    return None
                return args, {**kwargs, "need_weights": True, "average_attn_weights": False}

            handles.append(m.register_forward_pre_hook(ask, with_kwargs=True))
        return handles


def _configs(config: Any) -> list[Any]:
    """A transformers config and its sub-configs, recursively, parents before children."""
    found = [config]
    for key in getattr(config, "sub_configs", None) or {}:
        sub = getattr(config, key, None)
        if sub is not None and hasattr(sub, "_attn_implementation"):
            found += _configs(sub)
    return found


def _probs(t: object) -> bool:
    return isinstance(t, torch.Tensor) and t.dim() == 4


QUERY_NAMES = ("qkv", "q_proj", "query", "q")  # preferred over declaration order (CLIP declares k first)


def _first_linear(name: str, m: nn.Module) -> str | None:
    prefix = f"{name}." if name else ""
    linears = [c for c, sub in m.named_children() if isinstance(sub, nn.Linear)]
    pick = next((c for c in QUERY_NAMES if c in linears), linears[0] if linears else None)
    return None if pick is None else f"{prefix}{pick}"


def attention_sites(model: nn.Module) -> list[AttentionSite]:
    """Every attention module of ``model`` whose probabilities plastic can read, in module order."""
    sites = []
    for name, m in model.named_modules():
        kind = None
        if isinstance(m, nn.MultiheadAttention):
            kind = "torch"
        elif hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module):
            kind = "timm"
        elif hasattr(m, "is_causal") and hasattr(getattr(m, "config", None), "_attn_implementation"):
            kind = "transformers"
        layer = _first_linear(name, m) if kind else None
        if kind and layer:
            sites.append(AttentionSite(m, layer, kind))
    return sites
