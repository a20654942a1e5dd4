"""What to do with a diagnosed checkpoint: re-initialize which layers, or fine-tune it as is.

The rule (README, "The recommendation"), calibrated on the transfer benchmark's three scenarios:

- A layer has lost plasticity when its saturation score is at least ``RECOMMEND_AT`` (0.10). In
  scenario 1 (where re-initializing helped) exactly the three layers whose re-initialization beat plain
  fine-tuning and random layers score above it; in scenario 3 (a ViT, where every re-initialization hurt)
  no layer reaches it.
- If some layers do, re-initialize them (``topk-layers`` with k = their number, at most ``max_k``: 3, or
  a tenth of the ranked layers in a large model). Otherwise: "no layer is saturated; fine-tune as is".

The same function serves ``diagnose`` (which prints it) and ``reinit --strategy auto`` (which follows
the recommendation stored in a piped report, or recomputes it from the report's scores).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

RECOMMEND_AT = 0.10
MIN_CAP = 3  # layers: the largest k the benchmark validated
CAP_FRACTION = 0.1  # ...or a tenth of the ranked layers in a large model


@dataclass
class Recommendation:
    action: str  # "reinit" | "finetune"
    strategy: str | None  # "topk-layers", or None for "fine-tune as is"
    options: dict[str, Any]
    layers: list[str]
    threshold: float
    reason: str
    alternatives: list[str] = field(default_factory=list)


def max_k(ranked: int) -> int:
    return max(MIN_CAP, math.ceil(CAP_FRACTION * ranked))


def _why(layer: Mapping[str, Any]) -> str:
    parts = layer.get("components") or {}
    named = [f"{k} {v:.2f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if k != "collapse" and v]
    return f"{layer['name']} {layer['score']:.2f}" + (f" ({', '.join(named[:2])})" if named else "")


def recommend(layers: Iterable[Mapping[str, Any]], threshold: float = RECOMMEND_AT) -> Recommendation:
    """The recommendation for one model from its layer rows (``name``, ``score``, ``classifier``, ...)."""
    ranked = [la for la in layers if la.get("score") is not None and not la.get("classifier")]
    ranked.sort(key=lambda la: (-la["score"], la["name"]))
    if not ranked:
        return Recommendation(
            "finetune", None, {}, [], threshold, "no layer could be scored on the calibration images"
        )
    flagged = [la for la in ranked if la["score"] >= threshold]
    if not flagged:
        top = ranked[0]
        return Recommendation(
            "finetune",
            None,
            {},
            [],
            threshold,
            f"no layer is saturated (highest score {top['score']:.2f}, {top['name']}, is below "
            f"{threshold:.2f}): fine-tune as is",
        )
    k = min(len(flagged), max_k(len(ranked)))
    chosen = flagged[:k]
    more = f"; {len(flagged) - k} more score >= {threshold:.2f}" if len(flagged) > k else ""
    reason = (
        f"{len(flagged)} of {len(ranked)} layers score >= {threshold:.2f}: "
        + ", ".join(_why(la) for la in chosen)
        + f"{more}. Re-initialize {'it' if k == 1 else 'them'} before fine-tuning"
    )
    alternatives = []
    dormant = sum(len(la.get("dormant_units") or []) for la in chosen)
    if dormant:
        alternatives.append(
            f"--strategy dormant-units resets only the {dormant} dormant units of these layers "
            "(function-preserving; residual-path units are skipped)"
        )
    return Recommendation(
        "reinit",
        "topk-layers",
        {"k": k, "unit": "layer"},
        [la["name"] for la in chosen],
        threshold,
        reason,
        alternatives,
    )


def recommendation_dict(rec: Recommendation) -> dict[str, Any]:
    return {
        "action": rec.action,
        "strategy": rec.strategy,
        "options": rec.options,
        "layers": rec.layers,
        "threshold": rec.threshold,
        "reason": rec.reason,
        "alternatives": rec.alternatives,
    }
