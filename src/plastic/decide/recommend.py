"""What to do with a diagnosed checkpoint: re-initialize a top segment of it, or fine-tune it as is.

The rule (docs/commands.md, "The recommendation"):

- A layer has lost plasticity when its saturation score (its excess over the same layer freshly
  initialised) is at least ``RECOMMEND_AT`` (0.10).
- The candidates are contiguous top segments, as in the literature (Zhang et al. 2021 re-initialize the
  top N layers; Alabdulmohsin et al. 2021 layerwise re-initialization). Walking down timm's stages from
  the top (:func:`top_segment`), a stage joins while it holds a flagged layer *and* its highest score is
  at least every score below it, stem included; never more than the upper half of the body
  (``TOP_SHARE``). In the transfer benchmark's six scenarios this picked the best from-stage start
  (or one within 0.1 point) every time and starting deeper did worse; fitted leave-one-scenario-out
  (benchmarks/loso.py), the threshold, share and stand-out condition came out as shipped in every fold.
  What matters: a threshold of 0.10 or lower, and either the stand-out condition or a quarter share.
- A segment: ``from-block`` at its lowest stage (head included). No segment (nothing flagged, or the
  top stage does not stand out): "fine-tune as is", naming the flagged layers.
- A report without timm stages (a model without ``group_matcher``): ``topk-layers`` over the flagged
  layers, at most ``max_k``.

The same function serves ``diagnose`` (which prints it) and ``reinit --strategy auto`` (which follows
the recommendation stored in a piped report, or recomputes it from the report's scores).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from plastic.documents.schema import RecommendationDoc

RECOMMEND_AT = 0.10
TOP_SHARE = 0.5  # the segment covers at most this share of the body's stages (stem and head excluded)
MIN_CAP = 3  # layers: the largest k the benchmark validated (reports without stages)
CAP_FRACTION = 0.1  # ...or a tenth of the ranked layers in a large model


@dataclass
class Recommendation:
    """The verdict: re-initialize (which strategy, options, layers) or fine-tune as is, and why."""

    action: str  # "reinit" | "finetune"
    strategy: str | None  # "from-block", "topk-layers", or None for "fine-tune as is"
    options: dict[str, Any]
    layers: list[str]
    threshold: float
    reason: str
    alternatives: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # shell lines that carry it out, pasteable as they are
    confidence: str = "normal"  # "low" when the calibration set is too small to trust the scores
    evidence: str = ""  # what the transfer benchmark showed for this kind of choice
    lr_scale: float = 1.0  # the fine-tuning rate as a multiple of the trial's recipe (1 without a trial)


# What the transfer benchmark (BENCHMARKS.md) showed for each kind of choice; quoted with the verdict.
_RATE = (
    " The learning rate is not predicted: 3x the rate gained 2.6 and 11 points for a small ResNet, 4.0 for "
    "a ShuffleNetV2 and 13 for EfficientNet-Lite2 on glyphs (3 seeds), and lost 0.1 to 7.7 for the other "
    "models. `diagnose --trial` races 1x and 3x on your labelled images: in the benchmark (14 scenarios, "
    "20 or 40 labelled images per class) its winner's regret was 1.9 points against 3.4 for this rule, "
    "but it did worse than plain fine-tuning in 3 (20 per class) and 4 (40) of them, so the advice "
    "follows it only when clear"
)
EVIDENCE = {
    "from-block": "in the transfer benchmark's 5 scenarios with a flagged top stage (a small ResNet and "
    "an ImageNet MobileNetV2, 3 targets), re-initializing from it gave +0.5 ± 0.6, +0.7 ± 0.3, +0.1 ± 0.4, "
    "+1.2 ± 1.3 and +3.6 ± 0.7 points over plain fine-tuning (mean ± std of the per-seed gain; more than "
    "one std in 2 of the 5), the best start each time, and fitted on the other scenarios (or the other "
    "model families) the rule made the same choices; starting deeper did worse (up to -41 points). Out of "
    "sample, on a second ImageNet model (EfficientNet-Lite2, the rule frozen before the runs), its start "
    "gave +0.2 ± 0.7 (4 seeds) and +6.4 ± 0.4 (3 seeds), but the top stage alone did better both times "
    "(+0.7, +11.4): how deep to start is the least certain part. Small models on small targets: a starting "
    "point, not a guarantee." + _RATE,
    "topk-layers": "in the transfer benchmark the top-ranked layers beat the same number of random layers "
    "(+1.2 to +2.8 points); this model has no timm stages, so the rule could not be checked here." + _RATE,
    "finetune": "in the transfer benchmark's 3 scenarios without a flagged top stage (a timm ViT, a "
    "torchvision ShuffleNetV2, a transformers ViT), every from-stage start lost 0.3 to 24 points against "
    "plain fine-tuning (BENCHMARKS.md)." + _RATE,
    # flagged layers, but the top stage does not stand out above them: the rule keeps the features
    "finetune-below": "in the one transfer-benchmark scenario like this one (EfficientNet-Lite2 on MNIST "
    "digits, out of sample: layers flagged, the top stage not standing out), starting from the top stage "
    "gained +0.6 ± 0.1 points over fine-tuning as is (4 seeds, all positive) and every deeper start lost: "
    "`--strategy from-block` at the top stage is worth a second run." + _RATE,
}


def max_k(ranked: int) -> int:
    return max(MIN_CAP, math.ceil(CAP_FRACTION * ranked))


def _why(layer: Mapping[str, Any]) -> str:
    parts = layer.get("components") or {}
    named = [f"{k} {v:.2f}" for k, v in sorted(parts.items(), key=lambda kv: -kv[1]) if k != "collapse" and v]
    return f"{layer['name']} {layer['score']:.2f}" + (f" ({', '.join(named[:2])})" if named else "")


def recommend(
    layers: Iterable[Mapping[str, Any]],
    stages: Sequence[Mapping[str, Any]] = (),
    threshold: float = RECOMMEND_AT,
) -> Recommendation:
    """The recommendation for one model from its layer rows (``name``, ``score``, ``classifier``, ...)
    and timm stages (``name``, ``start``, ``layers``), bottom to top."""
    rows = list(layers)
    ranked = [la for la in rows if la.get("score") is not None and not la.get("classifier")]
    ranked.sort(key=lambda la: (-la["score"], la["name"]))
    if not ranked:
        return Recommendation(
            "finetune", None, {}, [], threshold, "no layer could be scored on the calibration images"
        )
    flagged = [la for la in ranked if la["score"] >= threshold]
    if not flagged:
        top = ranked[0]
        return Recommendation(
            "finetune", None, {}, [], threshold,
            f"no layer is saturated (highest score {top['score']:.2f}, {top['name']}, is below "
            f"{threshold:.2f}): fine-tune as is",
            evidence=EVIDENCE["finetune"],
        )  # fmt: skip
    heads = {la["name"] for la in rows if la.get("classifier")}
    body = _body(rows, stages)
    if not body:
        return _topk(flagged, ranked, threshold)
    segment, stop = top_segment(rows, stages, threshold)
    listed = ", ".join(_why(la) for la in flagged[:3])
    listed += f" and {len(flagged) - 3} more" if len(flagged) > 3 else ""
    if not segment:
        return Recommendation(
            "finetune", None, {}, [], threshold,
            f"{len(flagged)} of {len(ranked)} layers score >= {threshold:.2f} ({listed}), but not the top "
            f"of the model ({stop}): re-initializing lower layers loses the features that transfer; "
            "fine-tune as is",
            evidence=EVIDENCE["finetune-below"],
        )  # fmt: skip
    start = segment[-1]
    chosen = [n for st in reversed(segment) for n in st["layers"] if n not in heads]
    picked = set(chosen)
    inside = [la for la in flagged if la["name"] in picked]
    below = len(flagged) - len(inside)
    reason = (
        f"{len(flagged)} of {len(ranked)} layers score >= {threshold:.2f} ({listed}); the top "
        f"{'stage holds' if len(segment) == 1 else f'{len(segment)} stages hold'} {len(inside)} of them, "
        f"down to {start['name']} (then {stop})"
        + (f"; {below} lower one(s) kept: lower layers hold the features that transfer" if below else "")
        + f". Re-initialize from {start['start']} up (head included) before fine-tuning"
    )
    return Recommendation(
        "reinit", "from-block", {"from_block": start["start"]}, chosen, threshold, reason,
        evidence=EVIDENCE["from-block"],
    )  # fmt: skip


def _body(rows: Sequence[Mapping[str, Any]], stages: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The stages above the stem that hold a layer other than the classifier, bottom to top."""
    heads = {la["name"] for la in rows if la.get("classifier")}
    return [st for st in stages[1:] if any(n not in heads for n in st["layers"])]


def top_segment(
    rows: Sequence[Mapping[str, Any]],
    stages: Sequence[Mapping[str, Any]],
    threshold: float = RECOMMEND_AT,
    *,
    share: float = TOP_SHARE,
    stand_out: bool = True,
) -> tuple[list[Mapping[str, Any]], str]:
    """The stages to re-initialize, top first, and what stopped the walk down.

    A stage joins while it holds a layer scoring >= ``threshold`` *and* its highest score is at least
    every score below it, stem included: the top of the network lost more plasticity than anything
    under it. A model flagged everywhere, stem included (ImageNet training grows every layer away from
    its init), is not a case for re-initializing its top; and never more than the upper half.
    ``share`` and ``stand_out`` exist for the leave-one-scenario-out fit (benchmarks/loso.py), which
    weighs the rule against its variants.
    """
    scores = {
        la["name"]: la["score"] for la in rows if la.get("score") is not None and not la.get("classifier")
    }

    def top(st: Mapping[str, Any]) -> float:
        return max((scores[n] for n in st["layers"] if n in scores), default=0.0)

    body = _body(rows, stages)
    lower = [top(stages[0])] if stages else []  # the stem
    cap = max(1, int(share * len(body)))
    segment: list[Mapping[str, Any]] = []
    for i in range(len(body) - 1, -1, -1):
        st = body[i]
        below = max([*lower, *(top(b) for b in body[:i])], default=0.0)
        if top(st) < threshold:
            return segment, f"{st['name']} has no layer at the threshold"
        if stand_out and top(st) < below:
            return segment, f"{st['name']} scores below a lower stage ({top(st):.2f} < {below:.2f})"
        if len(segment) == cap:
            return segment, f"{st['name']} is below the upper half of the stages"
        segment.append(st)
    return segment, "the stem"


def _topk(
    flagged: list[Mapping[str, Any]], ranked: list[Mapping[str, Any]], threshold: float
) -> Recommendation:
    """Without timm stages: the flagged layers themselves, at most ``max_k``."""
    k = min(len(flagged), max_k(len(ranked)))
    chosen = flagged[:k]
    more = f"; {len(flagged) - k} more score >= {threshold:.2f}" if len(flagged) > k else ""
    reason = (
        f"{len(flagged)} of {len(ranked)} layers score >= {threshold:.2f}: "
        + ", ".join(_why(la) for la in chosen)
        + f"{more}. Re-initialize {'it' if k == 1 else 'them'} before fine-tuning"
    )
    return Recommendation(
        "reinit", "topk-layers", {"k": k, "unit": "layer"}, [la["name"] for la in chosen], threshold, reason,
        evidence=EVIDENCE["topk-layers"],
    )  # fmt: skip


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
        "evidence": rec.evidence,
        "lr_scale": rec.lr_scale,
    }
