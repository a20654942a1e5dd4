"""Ties resolved from data: which of several same-signature architectures made this checkpoint?

``resnet18`` and ``resnetblur18`` (or ``efficientnet_b0`` and ``tf_efficientnet_b0``) hold the same
tensors under the same names but compute differently. The checkpoint remembers how its own
architecture behaved: every BatchNorm's running mean and variance are the statistics that layer's input
had in training. Each candidate runs the calibration images with the checkpoint's weights; the one whose
batch statistics sit closest to the stored running statistics is the checkpoint's architecture. Without
BatchNorm, the candidate whose predictions are the most confident (lowest mean entropy) wins. A pick is
made only when the evidence is decisive; otherwise the user is asked for ``--arch``, with the evidence.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from plastic.model.modules import probe_forward

DECISIVE = 2.0  # the runner-up's discrepancy must be at least this many times the winner's


@dataclass(frozen=True)
class TieEvidence:
    measure: str  # "batchnorm statistics" | "prediction entropy"
    scores: dict[str, float]  # candidate -> discrepancy (lower = fits the checkpoint better)
    pick: str | None  # the winner when decisive
    margin: float  # runner-up / winner (inf when the winner fits exactly)

    def describe(self) -> str:
        ranked = sorted(self.scores.items(), key=lambda kv: kv[1])
        listed = ", ".join(f"{a} {s:.3g}" for a, s in ranked)
        return f"{self.measure} discrepancy: {listed} (margin {self.margin:.3g}x, decisive at {DECISIVE:g}x)"


def _bn_discrepancy(model: nn.Module, x: torch.Tensor) -> float | None:
    """Mean over BatchNorm layers of a symmetric gap between batch and running statistics, per channel:
    (mean difference)^2 / running variance + (log variance ratio)^2. None without BatchNorm."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    norms = [m for m in norms if m.running_mean is not None and m.running_var is not None]
    if not norms:
        return None
    gaps: list[torch.Tensor] = []

    def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        h = inputs[0].detach().float()  # (B, C, ...)
        dims = [d for d in range(h.dim()) if d != 1]
        mean, var = h.mean(dims), h.var(dims, unbiased=False)  # (C,)
        rm = torch.as_tensor(m.running_mean).float()  # (C,)
        rv = torch.as_tensor(m.running_var).float()  # (C,)
        eps = float(getattr(m, "eps", 1e-5))
        gap = (mean - rm) ** 2 / (rv + eps) + (torch.log(var + eps) - torch.log(rv + eps)) ** 2
        gaps.append(gap.mean())

    probe_forward(model, x, dict.fromkeys(norms, hook))
    return float(torch.stack(gaps).mean()) if gaps else None


def _entropy(model: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        logits = model(x).float()
    p = logits.softmax(-1)
    return float(-(p * p.clamp_min(1e-12).log()).sum(-1).mean() / math.log(max(p.shape[-1], 2)))


def weigh_candidates(
    candidates: list[str],
    build: Callable[[str], nn.Module],
    images: Callable[[nn.Module], torch.Tensor | None],
) -> TieEvidence | None:
    """Run every candidate (``build`` loads the checkpoint into it) on ``images``; None without images."""
    scores: dict[str, float] = {}
    measure = "batchnorm statistics"
    entropies: dict[str, float] = {}
    for arch in candidates:
        model = build(arch).eval()
        x = images(model)
        if x is None:
            return None
        gap = _bn_discrepancy(model, x)
        if gap is None:
            measure = "prediction entropy"
            entropies[arch] = _entropy(model, x)
        else:
            scores[arch] = gap
        del model
    if measure == "prediction entropy":
        scores = entropies
    ranked = sorted(scores.items(), key=lambda kv: kv[1])
    best, second = ranked[0][1], ranked[1][1]
    if not math.isfinite(best) or not math.isfinite(second):
        return TieEvidence(measure, scores, None, 1.0)
    margin = math.inf if best <= 0 else second / best
    return TieEvidence(measure, scores, ranked[0][0] if margin >= DECISIVE else None, margin)
