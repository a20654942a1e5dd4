"""``grad_ratio``: how much each layer's weights would move under a fresh task.

L = cross-entropy of a fresh, seeded linear head on the model's pooled (pre-logits) features, with
labels from class subfolders or, for a flat folder, fixed random labels over 10 classes (fitting
random labels is the standard plasticity probe). One backward pass over the calibration images
accumulates dL/dW; the ratio ||dL/dW|| / ||W|| is taken per layer weight.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

RANDOM_LABEL_CLASSES = 10


def pre_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, D) features the classifier would see, via timm's forward_features/forward_head."""
    m: Any = model
    feats = m.forward_features(x)
    return m.forward_head(feats, pre_logits=True)  # type: ignore[no-any-return]


def random_labels(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, RANDOM_LABEL_CLASSES, (n,), generator=gen)


def accumulate_gradients(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    n_images: int,
    n_classes: int,
    seed: int,
    autocast: Callable[[], Any] = contextlib.nullcontext,
) -> None:
    """Leave dL/dW in every parameter's ``.grad`` (model in eval mode: running statistics untouched).

    ``batches`` yields (images, labels) already on the model's device; the seeded head is built on the
    first batch, once the feature width is known.
    """
    device = next(model.parameters()).device
    head: nn.Linear | None = None
    model.eval()
    for x, y in batches:
        with autocast():
            feats = pre_logits(model, x).float()  # (B, D)
        if head is None:
            gen_state = torch.random.get_rng_state()
            torch.manual_seed(seed)
            head = nn.Linear(feats.shape[1], n_classes).to(device)
            torch.random.set_rng_state(gen_state)
        # sum over batches of (B / N) * mean loss = mean loss over all images
        loss = F.cross_entropy(head(feats), y) * (x.shape[0] / n_images)
        loss.backward()


def grad_ratios(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    n_images: int,
    n_classes: int,
    weights: dict[str, str],
    seed: int,
    autocast: Callable[[], Any],
) -> dict[str, float | None]:
    """{layer: ||grad W|| / ||W||} for ``weights`` ({layer: weight parameter}); grads freed after."""
    params = dict(model.named_parameters())
    was_training = model.training
    try:
        accumulate_gradients(
            model, batches, n_images=n_images, n_classes=n_classes, seed=seed, autocast=autocast
        )
        out: dict[str, float | None] = {}
        for layer, pname in weights.items():
            p = params.get(pname)
            if p is None or p.grad is None:
                out[layer] = None
                continue
            norm = float(p.detach().float().norm())
            out[layer] = float(p.grad.float().norm()) / norm if norm > 0 else None
        return out
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
