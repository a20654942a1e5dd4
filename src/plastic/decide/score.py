"""The saturation score: one number in [0, 1] per layer that ranks layers for re-initialization.

The formula lives here and only here (docs/commands.md, "The saturation score", explains it). Each signal is
turned into a "loss of plasticity" component in [0, 1], higher = worse, 0 = as plastic as a freshly
initialised layer. diagnose measures the same architecture freshly initialised (seeded, its own timm
init) in the same pass on the same images, and each component is the checkpoint's *excess over that
fresh layer*, so a fresh model scores ~0 by construction:

- ``dormant``: ReDo dormant fraction above the fresh layer's, net of seed-to-seed noise (:func:`_excess`).
- ``saturated``: flat-derivative fraction above the fresh layer's, net of the same noise.
- ``starved``: ``(log10(fresh relative gradient / relative gradient) - 0.25) / 2``, each relative to its
  own model's median layer: how many decades (2 = fully starved) less this layer's weights move,
  relative to their size, than the same layer of a fresh model (Coetzer et al.: "insignificant
  gradients"), beyond the 0.25 decade two fresh seeds differ by (``STARVED_SLACK``), or by the
  layer's own seed-to-seed spread over three fresh draws where that is larger (``SPREAD_Z``).
  Where the fresh layer gets no gradient by design (a zero-initialised residual branch), against the
  checkpoint's median layer instead; where both get only float rounding (``NEGLIGIBLE``), 0.
- ``collapsed_attention``: the relative drop of attention entropy below the fresh layer's.
- ``collapse``: the relative drop of feature effective rank below the fresh layer's; reported, weighted
  0 (in the transfer benchmark it ranked the wrong layers: BENCHMARKS.md, "calibration").

Without a reference (``--no-reference``) the components take their absolute form: saturation above the
non-linearity's level on standard-normal inputs (``saturated_ref``), starvation against the model's
median layer, ``1 - attn_entropy``, ``1 - erank / min(N, C)``.

The score is the weighted mean of the components a layer has.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

WEIGHTS = {"dormant": 1.0, "saturated": 1.0, "starved": 1.0, "collapsed_attention": 1.0, "collapse": 0.0}
NOISE_Z = 2.0  # standard errors of seed-to-seed noise a fraction must exceed the fresh layer's by
STARVED_DECADES = 2.0  # a layer 100x below its healthy relative gradient is (about) fully starved
# Decades of relative gradient two fresh seeds of the same layer differ by on their own: over 233 layers
# of six fresh timm models (EfficientNet-B0, MobileNetV3, ResNet-50, RegNetY, ConvNeXt, ViT) on 32
# calibration images, the 95th percentile was 0.24 (BENCHMARKS.md, "noise"). Only what goes beyond it counts.
STARVED_SLACK = 0.25
# How many of its own seed-to-seed standard deviations a layer may differ from the reference by before
# it counts: each layer's spread over three fresh draws (measure/spread.py) widens that layer's
# allowance beyond ``STARVED_SLACK`` and the fractions' binomial noise where it is larger. sqrt(2): the
# difference of two draws. 0 turns the spread off (the formula before it).
SPREAD_Z = 2.0
# A relative gradient below this share of its model's median layer is float rounding, not a gradient.
# Where the fresh layer's and the checkpoint's both are, no gradient reaches the layer by design and
# ``starved`` compared two roundings: LeViT's subsampling queries get exactly 0 in one stage and 5e-18
# (the median: 6e-10) in another; saturated squeeze-excite gates of fresh torchvision EfficientNets and
# MobileNetV3s, 1e-25. Such a layer is not starved, as a zero-initialised branch is not. Anything else
# is scored as before (0 turns this off). BENCHMARKS.md, "a gradient of float rounding", design 2.
NEGLIGIBLE = 1e-6


def components(
    metrics: Mapping[str, float | None],
    *,
    rank_ceiling: int,
    grad_median: float | None,
    reference: Mapping[str, float | None] | None = None,
    ref_grad_median: float | None = None,
    units: int = 0,
    spread: Mapping[str, float | None] | None = None,
) -> dict[str, float]:
    """The loss-of-plasticity components a layer has, each clipped to [0, 1].

    With ``reference`` (the same layer of a freshly initialised model, measured on the same images),
    each component is the excess over that fresh layer: a fresh model scores ~0 by construction, and a
    layer that is dormant or quiet by design (timm's zero-initialised residual branches, SE gates) is not
    flagged for it. The fractions' excess is net of the seed-to-seed noise of a layer of ``units``
    units (:func:`_excess`), or of the layer's own ``spread`` over fresh draws where that is larger.
    Without a reference, the absolute form (against ``saturated_ref`` and the model's median).
    """
    m = {k: float(v) for k, v in metrics.items() if v is not None}
    r = {k: float(v) for k, v in (reference or {}).items() if v is not None}
    # the allowance each seed-to-seed spread buys: z standard deviations of a two-draw difference
    wide = {k: SPREAD_Z * math.sqrt(2) * float(v) for k, v in (spread or {}).items() if v is not None}
    out: dict[str, float] = {}
    if "dormant_frac" in m:
        if "dormant_frac" in r:
            out["dormant"] = _excess(m["dormant_frac"], r["dormant_frac"], units, wide.get("dormant_frac", 0))
        else:
            out["dormant"] = m["dormant_frac"]
    if "saturated_frac" in m:
        if "saturated_frac" in r:
            sat_wide = wide.get("saturated_frac", 0)
            out["saturated"] = _excess(m["saturated_frac"], r["saturated_frac"], units, sat_wide)
        else:
            out["saturated"] = _excess(m["saturated_frac"], m.get("saturated_ref", 0.0), 0)
    if "feature_erank" in m:
        ceiling = r.get("feature_erank", float(rank_ceiling))
        out["collapse"] = 1.0 - m["feature_erank"] / ceiling if ceiling > 0 else 0.0
    if "grad_ratio" in m and grad_median is not None and grad_median > 0:
        ratio = m["grad_ratio"] / grad_median  # relative to the model's typical layer
        fresh = r.get("grad_ratio")
        rounding = fresh is not None and ref_grad_median is not None and fresh < NEGLIGIBLE * ref_grad_median
        if reference is not None and rounding and ratio < NEGLIGIBLE:
            out["starved"] = 0.0  # float rounding in both: no gradient here by design (see NEGLIGIBLE)
        elif reference is not None and fresh is not None and fresh > 0 and ref_grad_median:
            # vs the layer's place in a fresh model, beyond the layer's own seed-to-seed spread
            out["starved"] = _decades(fresh / ref_grad_median, ratio, wide.get("grad_decades", 0))
        elif reference is not None and fresh is not None and m["grad_ratio"] == 0:
            out["starved"] = 0.0  # no gradient here, as in the fresh model (a zero-initialised branch)
        else:  # no reference, or none that speaks: a fresh zero-initialised branch gets no gradient
            out["starved"] = _decades(1.0, ratio)
    if "attn_entropy" in m:
        fresh_h = r.get("attn_entropy", 1.0)
        out["collapsed_attention"] = (fresh_h - m["attn_entropy"]) / fresh_h if fresh_h > 0 else 0.0
    return {k: min(1.0, max(0.0, v)) for k, v in out.items()}


def _excess(value: float, healthy: float, units: int, spread: float = 0.0) -> float:
    """How far ``value`` (a fraction of a layer's units) goes beyond its healthy level, as a share of the
    room left above it, less ``NOISE_Z`` standard errors of the difference of two such fractions, or
    less ``spread`` (the layer's own seed-to-seed allowance) where that is larger.

    Whether a unit of a fresh layer is dormant (or off) is a coin its random weights toss, so two fresh
    seeds of an 8-unit SE layer differ by ~0.25 on their own; a 512-unit layer by ~0.03. Only a
    difference larger than that says the checkpoint lost something (a two-proportion z-test, pooled).
    Units of one layer do not always toss independent coins (a small MobileViTV2 conv was 27%, 66% and
    95% dormant in three draws), so the measured spread can be the larger allowance.
    """
    if healthy >= 1.0:
        return 0.0
    noise = 0.0
    if units > 0:
        pooled = (value + healthy) / 2
        noise = NOISE_Z * math.sqrt(2 * pooled * (1 - pooled) / units)
    noise = max(noise, spread)
    return max(0.0, value - healthy - noise) / (1.0 - healthy)


def _decades(healthy: float, ratio: float, spread: float = 0.0) -> float:
    """(log10(healthy / ratio) - slack) / STARVED_DECADES: 0 within seed-to-seed noise, ~1 at a hundred
    times less gradient than healthy. The slack is ``STARVED_SLACK``, or the layer's own ``spread``
    allowance (decades) where that is larger."""
    slack = max(STARVED_SLACK, spread)
    return (math.log10(healthy / ratio) - slack) / STARVED_DECADES if ratio > 0 else 1.0


def saturation_score(parts: Mapping[str, float]) -> float | None:
    """Weighted mean of the components; None when a layer has none (it never ran)."""
    if not parts:
        return None
    total = sum(WEIGHTS[k] for k in parts)
    if total == 0:
        return 0.0
    return sum(WEIGHTS[k] * v for k, v in parts.items()) / total
