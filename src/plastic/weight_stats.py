"""Data-free weight metrics (METHODS.md, "Data-free metrics"), one tensor at a time.

Every function takes one tensor and returns plain floats, so a caller can stream over a checkpoint
without holding more than one tensor (plus the mmap). Reductions run in float32 (float64 for float64
tensors); only scalars leave this module.
"""

from __future__ import annotations

import torch

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
_SKETCH_COLS = 8  # block size of the randomized power iteration for ||W||_2
_POWER_ITERS = 4
# Below this many elements per chunk the elementwise passes stay in cache.
_CHUNK = 1 << 18


def is_gain(name: str, shape: tuple[int, ...]) -> bool:
    """A 1-D multiplicative gain: a norm layer's weight or a layer-scale gamma."""
    leaf = name.rpartition(".")[2]
    return len(shape) == 1 and leaf in ("weight", "gamma")


def tensor_metrics(t: torch.Tensor, *, gain: bool = False) -> dict[str, float | None]:
    """All data-free metrics of one floating-point tensor (see METHODS.md for definitions)."""
    out: dict[str, float | None] = dict.fromkeys(METRIC_NAMES)
    n = t.numel()
    if n == 0 or not t.is_floating_point():
        return out
    x = t.detach().reshape(-1)
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    if x.dtype != acc:
        x = x.to(acc)
    # One elementwise sweep in cache-sized chunks: sum, sum of squares, sum of |x|, max |x|.
    s = sq = a = torch.zeros((), dtype=torch.float64)
    amax = 0.0
    for c in x.split(_CHUNK):
        s = s + c.sum(dtype=torch.float64)
        sq = sq + torch.dot(c, c).to(torch.float64)
        ab = c.abs()
        a = a + ab.sum(dtype=torch.float64)
        amax = max(amax, float(ab.max()))
    s_f, sq_f, a_f = float(s), float(sq), float(a)
    mean = s_f / n
    rms = (sq_f / n) ** 0.5
    out["abs_mean"] = a_f / n
    out["std"] = max(sq_f / n - mean * mean, 0.0) ** 0.5
    out["l2"] = sq_f**0.5
    out["abs_max"] = amax
    if rms == 0.0:
        out["near_zero"] = 1.0
    else:
        thr = NEAR_ZERO_REL * rms
        near = sum(int(torch.count_nonzero(c.abs() < thr)) for c in x.split(_CHUNK))
        out["near_zero"] = near / n
    if t.dim() >= 2:
        out["weight_stable_rank"] = stable_rank(t.detach().reshape(t.shape[0], -1).to(acc), sq_f)
    if gain:
        out["dead_norm_channels"] = float(torch.count_nonzero(x.abs() < DEAD_GAIN)) / n
    return out


def stable_rank(w: torch.Tensor, fro_sq: float | None = None) -> float:
    """||W||_F^2 / ||W||_2^2 for a 2-D ``w`` of shape (out, in).

    ||W||_2 comes from a seeded block power iteration (8 columns, 4 rounds) followed by Rayleigh-Ritz:
    a few matrix products instead of a full SVD, accurate whether or not the top singular value is
    well separated (if it is not, every Ritz value near the top is close to it).
    """
    if fro_sq is None:
        fro_sq = float(torch.dot(w.reshape(-1), w.reshape(-1)))
    if fro_sq == 0.0:
        return 0.0
    m, n = w.shape
    if min(m, n) == 1:
        return 1.0
    if w.shape[0] > w.shape[1]:
        w = w.T  # iterate on the short side: (k, n) with k <= n
    k = w.shape[0]
    if k <= 2 * _SKETCH_COLS:
        top = float(torch.linalg.matrix_norm(w, ord=2))
        return fro_sq / (top * top)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(k, _SKETCH_COLS, generator=gen, dtype=w.dtype)
    for _ in range(_POWER_ITERS):
        q, _r = torch.linalg.qr(w @ (w.T @ q))  # (k, p): power step on W W^T
    top = float(torch.linalg.matrix_norm(w.T @ q, ord=2))  # Ritz value on the converged subspace
    return fro_sq / (top * top)
