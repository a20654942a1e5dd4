"""The saturation score: one number in [0, 1] per layer that ranks layers for re-initialization.

The formula lives here and only here (README, "The saturation score", explains it). Each signal is
turned into a "loss of plasticity" component in [0, 1], higher = worse, 0 = as plastic as a freshly
initialised layer:

- ``dormant``: ``dormant_frac`` - units that barely fire cannot adapt (ReDo).
- ``saturated``: saturation *above the non-linearity's own healthy level*,
  ``(saturated_frac - saturated_ref) / (1 - saturated_ref)``; ``saturated_ref`` is the flat fraction on
  standard-normal inputs (ReLU 0.5, GELU ~0.001), so a ReLU net is not flagged for being a ReLU net.
- ``starved``: ``log10(median grad_ratio / grad_ratio) / 2`` - how many decades (2 = fully starved)
  less a layer's weights move, relative to their size, than the model's median layer under a fresh task
  (Coetzer et al.: "insignificant gradients"). Relative to the median, not a rank: a model whose
  layers all receive similar gradients has no starved layer.
- ``collapsed_attention``: ``1 - attn_entropy`` for attention layers.
- ``collapse``: ``1 - feature_erank / min(N, C)``, reported but weighted 0: low feature rank on a few
  images is what a specialised late layer looks like (and what a fresh ViT already has), and in the
  transfer benchmark it ranked the wrong layers (BENCHMARKS.md, "calibration").

The score is the weighted mean of the components a layer has. Weights and the recommendation threshold
were calibrated on the transfer benchmark's three scenarios (README, "The recommendation").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping

WEIGHTS = {"dormant": 1.0, "saturated": 1.0, "starved": 1.0, "collapsed_attention": 1.0, "collapse": 0.0}
STARVED_DECADES = 2.0  # a layer 100x below the median relative gradient is fully starved


def components(
    metrics: Mapping[str, float | None], *, rank_ceiling: int, grad_median: float | None
) -> dict[str, float]:
    """The loss-of-plasticity components a layer has, each clipped to [0, 1]."""
    m = {k: float(v) for k, v in metrics.items() if v is not None}
    out: dict[str, float] = {}
    if "dormant_frac" in m:
        out["dormant"] = m["dormant_frac"]
    if "saturated_frac" in m:
        ref = m.get("saturated_ref", 0.0)
        out["saturated"] = (m["saturated_frac"] - ref) / (1.0 - ref) if ref < 1.0 else 0.0
    if "feature_erank" in m:
        out["collapse"] = 1.0 - m["feature_erank"] / rank_ceiling
    if "grad_ratio" in m and grad_median is not None and grad_median > 0:
        ratio = m["grad_ratio"]
        out["starved"] = math.log10(grad_median / ratio) / STARVED_DECADES if ratio > 0 else 1.0
    if "attn_entropy" in m:
        out["collapsed_attention"] = 1.0 - m["attn_entropy"]
    return {k: min(1.0, max(0.0, v)) for k, v in out.items()}


def saturation_score(parts: Mapping[str, float]) -> float | None:
    """Weighted mean of the components; None when a layer has none (it never ran)."""
    if not parts:
        return None
    total = sum(WEIGHTS[k] for k in parts)
    if total == 0:
        return 0.0
    return sum(WEIGHTS[k] * v for k, v in parts.items()) / total


def grad_median(values: Iterable[float]) -> float | None:
    """The model's typical relative gradient: the reference the ``starved`` component is measured from."""
    known = [v for v in values if math.isfinite(v)]
    return statistics.median(known) if known else None
