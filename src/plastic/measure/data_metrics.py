"""Data metrics (docs/methods.md, "Data metrics") from the sums :mod:`plastic.measure.capture` accumulated.

Every function here reduces on the device and returns Python floats.
"""

from __future__ import annotations

import torch
from torch import nn

from plastic.measure.capture import MAX_RANK_UNITS, RANK_ROWS, AttnStats, SiteStats, reference_saturation
from plastic.measure.defaults import DEFAULT_TAU

DATA_METRICS = (
    "dormant_frac",
    "dead_frac",
    "saturated_frac",
    "saturated_ref",
    "feature_erank",
    "feature_erank_per_unit",
    "feature_srank99",
    "grad_ratio",
    "attn_entropy",
)


def dormant_mask(abs_sum: torch.Tensor, count: int, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """ReDo: unit score s_i = E|h_i| / mean_k E|h_k|; (C,) bool, True where s_i <= tau."""
    mean_abs = abs_sum.double() / max(count, 1)  # (C,) E|h_i|
    overall = mean_abs.mean()
    if float(overall) == 0.0:
        return torch.ones_like(mean_abs, dtype=torch.bool)  # every unit silent
    return mean_abs / overall <= tau


def dormant_frac(abs_sum: torch.Tensor, count: int, tau: float = DEFAULT_TAU) -> float:
    """Fraction of tau-dormant units (ReDo)."""
    return float(dormant_mask(abs_sum, count, tau).double().mean())


def dormant_units(site: SiteStats, tau: float = DEFAULT_TAU) -> list[int]:
    """Indices of the tau-dormant units: what ``reinit --strategy dormant-units`` resets."""
    if site.abs_sum is None:
        return []
    return [int(i) for i in torch.nonzero(dormant_mask(site.abs_sum, site.count, tau)).flatten().tolist()]


def dead_frac(abs_sum: torch.Tensor) -> float:
    """Fraction of units exactly 0 on every calibration input (their sum of |h| is exactly 0)."""
    return float((abs_sum == 0).double().mean())


def feature_ranks(feats: torch.Tensor) -> tuple[float, int]:
    """(effective rank, 99% rank) of an (N, C) matrix of pooled features; (0, 0) if it is all zero.

    erank = exp(entropy of sigma / sum sigma) (Roy & Vetterli 2007); srank99 = smallest k whose top-k
    singular values hold 99% of their sum (Kumar et al. 2020).
    """
    return _ranks(torch.linalg.svdvals(feats.double()))


def gram_ranks(gram: torch.Tensor) -> tuple[float, int]:
    """:func:`feature_ranks` of ``F`` from its (C, C) Gram matrix ``F^T F``: the singular values are the
    square roots of its eigenvalues (rounding can leave the zero ones slightly negative: clamped)."""
    lam = torch.linalg.eigvalsh(gram.double()).flip(0)  # (C,) descending
    return _ranks(lam.clamp_min(0).sqrt())


def _ranks(sigma: torch.Tensor) -> tuple[float, int]:
    total = sigma.sum()
    if float(total) == 0.0:
        return 0.0, 0
    p = sigma / total
    entropy = -(p * torch.log(p.clamp_min(1e-300))).sum()
    srank = (
        int(torch.searchsorted(torch.cumsum(p, 0), torch.tensor(0.99, dtype=p.dtype, device=p.device))) + 1
    )
    return float(torch.exp(entropy)), min(srank, len(sigma))


def site_metrics(site: SiteStats, act: nn.Module | None, tau: float = DEFAULT_TAU) -> dict[str, float | None]:
    """All per-site metrics; ``act`` is the activation module measured (None: the layer's own output)."""
    out: dict[str, float | None] = dict.fromkeys(DATA_METRICS)
    if site.abs_sum is None:
        return out  # the layer never ran on the calibration images
    if not bool(torch.isfinite(site.abs_sum).all()):
        return out  # inf or NaN activations (from non-finite weights upstream): nothing to measure
    out["dormant_frac"] = dormant_frac(site.abs_sum, site.count, tau)
    out["dead_frac"] = dead_frac(site.abs_sum)
    if act is not None:
        out["saturated_frac"] = site.saturation()
        if out["saturated_frac"] is not None:
            out["saturated_ref"] = reference_saturation(act, site.abs_sum.device)
    rows = site.rows
    if rows is None or not rows.n or not rows.finite():
        return out  # an SVD of inf or NaN does not converge; the ranks stay null
    erank, srank = feature_ranks(rows.matrix()) if rows.gram is None else gram_ranks(rows.gram)
    out["feature_erank"] = erank
    out["feature_erank_per_unit"] = erank / rows.units
    out["feature_srank99"] = float(srank)
    return out


def attn_entropy(stats: AttnStats) -> float | None:
    if stats.total is None or not stats.rows:
        return None
    return float(stats.total) / stats.rows


def rank_ceiling(n_images: int, units: int) -> int:
    """The largest rank the pooled features can have: min(images kept, units measured). A site wider
    than ``RANK_ROWS / 2`` units keeps at most ``RANK_ROWS`` images' rows; a narrower one has at most
    ``units < RANK_ROWS`` anyway, so ``RANK_ROWS`` bounds both."""
    return max(1, min(n_images, RANK_ROWS, units, MAX_RANK_UNITS))
