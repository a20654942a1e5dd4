"""Data-free weight metrics (METHODS.md, "Data-free metrics"), one tensor at a time.

Every function takes one tensor and returns plain floats, so a caller can stream over a checkpoint
without holding more than one tensor (plus the mmap). Reductions run in float32 (float64 for float64
tensors); only scalars leave this module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

METRIC_NAMES = (
    "abs_mean",
    "std",
    "l2",
    "abs_max",
    "near_zero",
    "weight_stable_rank",
    "dead_norm_channels",
)
NEAR_ZERO_REL = 0.01  # |w| < 0.01 * RMS(w) counts as near zero
DEAD_GAIN = 1e-3  # |gamma| < 1e-3 silences a channel
# ||W||_2 by randomized block Krylov: 16 start vectors, 4 products with W W^T (see stable_rank).
_BLOCK = 16
_KRYLOV_STEPS = 4
# 64K elements (256 KB in float32): the several reductions over one chunk hit L2, not memory.
_CHUNK = 1 << 16


def is_gain(name: str, shape: tuple[int, ...]) -> bool:
    """A 1-D multiplicative gain: a norm layer's weight or a layer-scale gamma."""
    leaf = name.rpartition(".")[2]
    return len(shape) == 1 and leaf in ("weight", "gamma")


def tensor_metrics(t: torch.Tensor, *, gain: bool = False) -> dict[str, float | None]:
    """All data-free metrics of one floating-point tensor (see METHODS.md for definitions).

    Integer and empty tensors get None everywhere. ``gain`` marks a norm gain, the only kind of tensor
    for which ``dead_norm_channels`` means something.
    """
    out: dict[str, float | None] = dict.fromkeys(METRIC_NAMES)
    n = t.numel()
    if n == 0 or not t.is_floating_point():
        return out
    acc = torch.float64 if t.dtype == torch.float64 else torch.float32
    x = t.detach().reshape(-1).to(acc)  # (n,); a view when t is already contiguous float32
    chunks = torch.split(x, _CHUNK)
    total = sq = absum = 0.0
    amax = 0.0
    for c in chunks:  # one sweep through memory; four reductions per cache-resident chunk
        total += float(c.sum())
        sq += float(torch.dot(c, c))
        absum += float(torch.linalg.vector_norm(c, 1))
        lo, hi = torch.aminmax(c)
        amax = max(amax, -float(lo), float(hi))
    mean, rms = total / n, (sq / n) ** 0.5
    out["abs_mean"] = absum / n
    out["std"] = max(sq / n - mean * mean, 0.0) ** 0.5
    out["l2"] = sq**0.5
    out["abs_max"] = amax
    if rms == 0.0:
        out["near_zero"] = 1.0
    else:
        # hardshrink zeroes |x| <= thr: what is left non-zero is exactly the "not near zero" part.
        thr = NEAR_ZERO_REL * rms
        kept = sum(int(torch.count_nonzero(F.hardshrink(c, thr))) for c in chunks)
        out["near_zero"] = (n - kept) / n
    if t.dim() >= 2:
        out["weight_stable_rank"] = stable_rank(x.view(t.shape[0], -1), sq)
    if gain:
        out["dead_norm_channels"] = float(torch.count_nonzero(x.abs() < DEAD_GAIN)) / n
    return out


def stable_rank(w: torch.Tensor, fro_sq: float | None = None) -> float:
    """||W||_F^2 / ||W||_2^2 for a 2-D ``w`` of shape (out, in); 0 for an all-zero matrix.

    ||W||_2 comes from a seeded randomized block Krylov method (16 vectors, 4 products with W W^T,
    then Rayleigh-Ritz on the whole Krylov space): a few memory-bound matrix products instead of an
    SVD. On trained weights it matches the SVD to 0.1%; on Gaussian noise, the worst case, to ~3%.
    Small matrices (short side <= 32) are solved exactly.
    """
    if fro_sq is None:
        fro_sq = float(torch.dot(w.reshape(-1), w.reshape(-1)))
    if fro_sq == 0.0:
        return 0.0
    if w.shape[0] > w.shape[1]:
        w = w.T  # work on the short side: (k, n), k <= n
    k, n = w.shape
    if k == 1:
        return 1.0
    if k <= 2 * _BLOCK:
        top_sq = float(torch.linalg.eigvalsh(w @ w.T)[-1])  # (k, k) Gram: exact and cheap
        return fro_sq / top_sq
    gen = torch.Generator().manual_seed(0)
    y = w @ torch.randn(n, _BLOCK, generator=gen, dtype=w.dtype)  # (k, p)
    blocks = [y]
    for _ in range(_KRYLOV_STEPS - 1):
        y = w @ (w.T @ y)  # (k, p): next Krylov block of W W^T
        y = y / torch.linalg.vector_norm(y)  # keep the scale sane; the span is what matters
        blocks.append(y)
    q, _ = torch.linalg.qr(torch.cat(blocks, dim=1))  # (k, p * steps) orthonormal basis
    b = q.T @ w  # (p * steps, n)
    top_sq = float(torch.linalg.eigvalsh(b @ b.T)[-1])  # largest Ritz value of W W^T
    return fro_sq / top_sq
