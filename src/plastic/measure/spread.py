"""How much two fresh draws of the same layer differ on their own: the reference's seed-to-seed spread.

The score compares each layer with the same layer freshly initialised. Two fresh draws of a layer differ
too, and by how much depends on the layer: a plain convolution's relative gradient varies by ~0.17
decade from seed to seed, a squeeze-excite reduction's by ~0.6, and one draw cannot show which (the
noise is layer-wide, set by the scale the other layers' draws pass on, not unit-to-unit: BENCHMARKS.md,
"Pre-registered: the seed-to-seed spread"). So the reference is drawn ``SPREAD_DRAWS`` times (its own
seed and ``SPREAD_DRAWS - 1`` more), each measured on the same few images (``SPREAD_IMAGES``, spread
over the classes), and each layer's spread is the standard deviation of its statistics over the draws.
:func:`plastic.decide.score.components` widens a layer's noise allowance to it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Collection, Iterable, Mapping, Sequence

from plastic.measure.calib import spread_sample

SPREAD_DRAWS = 3  # the reference and two more draws: with the reference among them (it can be the outlier)
SPREAD_IMAGES = 16  # the seed-to-seed spread hardly moves with more images (BENCHMARKS.md, "noise floor")
# Seeds of the extra draws: the reference's plus multiples of a large prime, far from the small seeds
# a fresh checkpoint is likely drawn with (a draw equal to the checkpoint would hide its difference).
SPREAD_SEED_STEP = 104729
SPREAD_KEYS = ("grad_decades", "dormant_frac", "saturated_frac")  # what is spread: L and two fractions

Table = Mapping[str, Mapping[str, float | None]]  # layer -> its metrics in one draw


def spread_seeds(seed: int) -> list[int]:
    """The seeds of the draws beyond the reference's own (``seed``)."""
    return [seed + SPREAD_SEED_STEP * k for k in range(1, SPREAD_DRAWS)]


def spread_images(labels: Sequence[int] | None, n: int, seed: int) -> list[int]:
    """The indices of the (at most ``SPREAD_IMAGES``) images every draw measures: seeded, round robin
    over the classes, sorted."""
    return spread_sample(list(labels) if labels is not None else [0] * n, min(n, SPREAD_IMAGES), seed)


def layer_spread(draws: Sequence[Table], body: Collection[str]) -> dict[str, dict[str, float | None]]:
    """Per layer, the sample standard deviation over ``draws`` of:

    - ``grad_decades``: log10 of its relative gradient over the draw's median ``body`` layer (``starved``
      compares exactly this between the checkpoint and the reference);
    - ``dormant_frac`` and ``saturated_frac``.

    None where fewer than two draws have the value (a layer no gradient reaches, as in a zero-initialised
    residual branch; a layer without the statistic).
    """
    medians = [grad_median(g for name in body if (g := d.get(name, {}).get("grad_ratio")) is not None)
               for d in draws]  # fmt: skip
    out: dict[str, dict[str, float | None]] = {}
    for name in draws[0] if draws else {}:
        values: dict[str, list[float]] = {k: [] for k in SPREAD_KEYS}
        for d, med in zip(draws, medians, strict=True):
            m = d.get(name, {})
            g = m.get("grad_ratio")
            if g is not None and g > 0 and med is not None:
                values["grad_decades"].append(math.log10(g / med))
            for k in ("dormant_frac", "saturated_frac"):
                v = m.get(k)
                if v is not None:
                    values[k].append(v)
        out[name] = {k: statistics.stdev(v) if len(v) >= 2 else None for k, v in values.items()}
    return out


def grad_median(values: Iterable[float]) -> float | None:
    """The model's typical relative gradient: what ``starved`` (decide/score.py) and the spread's
    ``grad_decades`` measure each layer's from. Layers with no gradient at all (timm's zero-initialised
    residual branches in a fresh model) say nothing about what is typical and are left out."""
    known = [v for v in values if math.isfinite(v) and v > 0]
    return statistics.median(known) if known else None
