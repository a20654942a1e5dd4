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

from plastic.documents.schema import RecommendationDoc

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
    commands: list[str] = field(default_factory=list)  # shell lines that carry it out, pasteable as they are
    confidence: str = "normal"  # "low" when the calibration set is too small to trust the scores


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
    if any(la.get("dormant_units") for la in chosen):
        alternatives.append(
            "--strategy dormant-units (ReDo) resets the dormant units of every layer instead of whole "
            "layers, keeping the function; units whose output also feeds a residual sum, a norm or a "
            "depthwise conv cannot be reset that way and are skipped (reinit lists them)"
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


def reinit_commands(
    rec: Recommendation,
    checkpoint: str,
    *,
    arch: str | None,
    key: str | None,
    in_chans: int | None,
    data: str,
) -> list[str]:
    """Shell lines that carry out ``rec`` on ``checkpoint`` as they are: the chosen layers by name
    (no report needed), and the dormant-units alternative (which measures again, so it needs --data)."""
    import shlex

    if rec.action != "reinit":
        return []
    out = _output_name(checkpoint)
    common = []
    if arch:
        common += ["--arch", arch]
    if key:
        common += ["--key", key]
    if in_chans and in_chans != 3:
        common += ["--in-chans", str(in_chans)]
    layers = [a for name in rec.layers for a in ("--layers", f"{name}.*")]
    lines = [["plastic", "reinit", checkpoint, "--strategy", "layers", *layers, *common, "-o", out]]
    if rec.alternatives:
        lines.append(
            [
                "plastic",
                "reinit",
                checkpoint,
                "--strategy",
                "dormant-units",
                "--data",
                data,
                *common,
                "-o",
                out,
            ]
        )
    return [shlex.join(line) for line in lines]


def _output_name(checkpoint: str) -> str:
    """``m.safetensors`` -> ``m.reinit.safetensors`` beside it; a folder or index gives a .safetensors."""
    from pathlib import Path

    p = Path(checkpoint)
    if p.is_dir():
        return str(p / "model.reinit.safetensors")
    name = p.name
    if name.endswith(".safetensors.index.json"):
        return str(p.with_name(name.removesuffix(".safetensors.index.json") + ".reinit.safetensors"))
    for suffix in (".pth.tar", ".safetensors", ".pt", ".pth", ".bin", ".ckpt"):
        if name.endswith(suffix):
            return str(p.with_name(name.removesuffix(suffix) + ".reinit" + suffix))
    return str(p.with_name(name + ".reinit.safetensors"))


def recommendation_dict(rec: Recommendation) -> RecommendationDoc:
    return {
        "action": rec.action,
        "strategy": rec.strategy,
        "options": rec.options,
        "layers": rec.layers,
        "threshold": rec.threshold,
        "reason": rec.reason,
        "alternatives": rec.alternatives,
        "commands": rec.commands,
        "confidence": rec.confidence,
    }
