"""The saturation score: one number in [0, 1] per layer that ranks layers for re-initialization.

The formula lives here and only here (README, "The saturation score", explains it). Each signal is
turned into a "loss of plasticity" component in [0, 1], higher = worse:

- ``dormant``: ``dormant_frac`` - units that barely fire cannot adapt (ReDo).
- ``saturated``: ``saturated_frac`` - values where the non-linearity is flat pass no gradient.
- ``collapse``: ``1 - feature_erank / min(N, C)`` - features squeezed into few directions
  (normalised by the largest rank N images and C units allow).
- ``starved``: ``1 - percentile of grad_ratio`` among the model's layers - the layers whose weights
  move least, relative to their size, under a fresh task (Coetzer et al.: "insignificant gradients").
- ``collapsed_attention``: ``1 - attn_entropy`` for attention layers.

The score is the mean of the components a layer has (a layer without an activation module has no
``saturated``; only attention layers have ``collapsed_attention``). Equal weights: no signal is
known to dominate, and the transfer benchmark is what validates or re-weights them.
"""

from __future__ import annotations

from collections.abc import Mapping

WEIGHTS = {"dormant": 1.0, "saturated": 1.0, "collapse": 1.0, "starved": 1.0, "collapsed_attention": 1.0}


def components(
    metrics: Mapping[str, float | None], *, rank_ceiling: int, grad_percentile: float | None
) -> dict[str, float]:
    """The loss-of-plasticity components a layer has, each clipped to [0, 1]."""
    out: dict[str, float] = {}
    if metrics.get("dormant_frac") is not None:
        out["dormant"] = float(metrics["dormant_frac"])  # type: ignore[arg-type]
    if metrics.get("saturated_frac") is not None:
        out["saturated"] = float(metrics["saturated_frac"])  # type: ignore[arg-type]
    if metrics.get("feature_erank") is not None:
        out["collapse"] = 1.0 - float(metrics["feature_erank"]) / rank_ceiling  # type: ignore[arg-type]
    if grad_percentile is not None:
        out["starved"] = 1.0 - grad_percentile
    if metrics.get("attn_entropy") is not None:
        out["collapsed_attention"] = 1.0 - float(metrics["attn_entropy"])  # type: ignore[arg-type]
    return {k: min(1.0, max(0.0, v)) for k, v in out.items()}


def saturation_score(parts: Mapping[str, float]) -> float | None:
    """Weighted mean of the components; None when a layer has none (it never ran)."""
    if not parts:
        return None
    total = sum(WEIGHTS[k] for k in parts)
    return sum(WEIGHTS[k] * v for k, v in parts.items()) / total


def percentiles(values: Mapping[str, float]) -> dict[str, float]:
    """Rank of each value among all, scaled to [0, 1] (lowest 0, highest 1; ties share a rank)."""
    if not values:
        return {}
    ordered = sorted(set(values.values()))
    if len(ordered) == 1:
        return dict.fromkeys(values, 0.5)
    pos = {v: i / (len(ordered) - 1) for i, v in enumerate(ordered)}
    return {k: pos[v] for k, v in values.items()}
