"""Data-free weight metrics (docs/methods.md, "Data-free metrics"), one tensor at a time, in numpy.

Every function takes one array and returns plain floats, so a caller can stream over a checkpoint
without holding more than one tensor. numpy only: a full-statistics ``inspect`` of a safetensors file
never imports torch (2+ s of a whole run). Reductions run in float32 (float64 for float64 tensors);
bfloat16 arrives as its raw 16-bit pattern and is widened exactly; only scalars leave this module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from plastic.files.bf16 import Bf16

METRIC_NAMES = (
    "abs_mean",
    "std",
    "l2",
    "abs_max",
    "near_zero",
    "weight_stable_rank",
    "dead_norm_channels",
    "nonfinite",
)
NEAR_ZERO_REL = 0.01  # |w| < 0.01 * RMS(w) counts as near zero
DEAD_GAIN = 1e-3  # |gamma| < 1e-3 silences a channel
# ||W||_2 by randomized block Krylov: 16 start vectors, 4 products with W W^T (see stable_rank).
_BLOCK = 16
_KRYLOV_STEPS = 4
# Tensors up to this size (biases, norm gains, running stats, small convs) are measured together in a
# few vectorized numpy passes: per-op overhead, not bandwidth, is what costs on them.
SMALL = 1 << 14


def as_float_array(x: Any) -> np.ndarray | None:
    """A float32/float64 numpy view or copy of ``x`` (a numpy array or a torch tensor); None when it
    is not floating point. bfloat16 comes in as a ``Bf16`` wrapper or a torch tensor."""
    if isinstance(x, Bf16):
        return (x.bits.astype(np.uint32) << 16).view(np.float32)
    if type(x).__module__.startswith("torch"):  # a torch tensor: the caller has torch imported already
        import torch

        if not x.is_floating_point():
            return None
        acc = torch.float64 if x.dtype == torch.float64 else torch.float32
        return np.asarray(x.detach().to(acc).numpy())
    arr = np.asarray(x)
    if arr.dtype == np.float64:
        return arr
    if arr.dtype.kind == "f":
        return arr.astype(np.float32, copy=False)
    return None


def is_gain(name: str, shape: tuple[int, ...]) -> bool:
    """A 1-D multiplicative gain: a norm layer's weight or a layer-scale gamma."""
    leaf = name.rpartition(".")[2]
    return len(shape) == 1 and leaf in ("weight", "gamma")


def tensor_metrics(
    t: Any, *, gain: bool = False, srank: bool = True, work: dict[str, np.ndarray] | None = None
) -> dict[str, float | None]:
    """All data-free metrics of one tensor (definitions: docs/methods.md).

    ``work``: a dict the caller keeps per thread; its buffers are reused from tensor to tensor.

    Integer and empty tensors get None everywhere. ``gain`` marks a norm gain, the only kind of tensor
    for which ``dead_norm_channels`` means something. ``srank=False`` skips the one costly metric,
    ``weight_stable_rank`` (several passes over the matrix; everything else is one or two).
    """
    out: dict[str, float | None] = dict.fromkeys(METRIC_NAMES)
    arr = as_float_array(t)
    if arr is None or arr.size == 0:
        return out
    with np.errstate(all="ignore"):  # inf and NaN weights: counted in ``nonfinite``, never a warning
        return _tensor_metrics(arr, out, gain=gain, srank=srank, work=work)


def _tensor_metrics(
    arr: np.ndarray,
    out: dict[str, float | None],
    *,
    gain: bool,
    srank: bool,
    work: dict[str, np.ndarray] | None,
) -> dict[str, float | None]:
    shape = arr.shape
    x = arr.reshape(-1)  # (n,)
    n = x.size
    total = float(x.sum())  # pairwise summation: float32 keeps ~1e-7 relative error
    sq = float(np.dot(x, x))
    a, below = _scratch(x.dtype, n, work)  # (n,) |x| and (n,) bool, reused buffers: no page faults
    np.abs(x, out=a)
    absum, amax = float(a.sum()), float(a.max())
    mean, rms = total / n, (sq / n) ** 0.5 if math.isfinite(sq) else math.inf
    out["abs_mean"] = absum / n
    out["std"] = max(sq / n - mean * mean, 0.0) ** 0.5 if math.isfinite(sq) else math.nan
    out["l2"] = sq**0.5
    out["abs_max"] = amax
    # a finite sum of squares means every value is finite: the count costs a pass only when it is not
    out["nonfinite"] = 0.0 if math.isfinite(sq) else float(n - np.count_nonzero(np.isfinite(x)))
    if not math.isfinite(rms):
        out["near_zero"] = None  # relative to an infinite or NaN RMS: no meaning
    elif rms > 0:
        out["near_zero"] = float(np.count_nonzero(np.less(a, NEAR_ZERO_REL * rms, out=below))) / n
    else:
        out["near_zero"] = 1.0
    if srank and len(shape) >= 2:
        out["weight_stable_rank"] = stable_rank(x.reshape(shape[0], -1), sq)
    if gain:
        out["dead_norm_channels"] = float(np.count_nonzero(np.less(a, DEAD_GAIN, out=below))) / n
    return out


def _scratch(
    dtype: np.dtype[Any], n: int, work: dict[str, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Views of ``n`` elements of a caller's reused buffers (grown as needed); fresh arrays without one."""
    if work is None:
        return np.empty(n, dtype=dtype), np.empty(n, dtype=bool)
    key = np.dtype(dtype).str
    if work.get(key) is None or work[key].size < n:
        work[key] = np.empty(n, dtype=dtype)
    if work.get("bool") is None or work["bool"].size < n:
        work["bool"] = np.empty(n, dtype=bool)
    return work[key][:n], work["bool"][:n]


def batch_metrics(items: Sequence[tuple[Any, bool]], *, srank: bool = True) -> list[dict[str, float | None]]:
    """:func:`tensor_metrics` for many ``(tensor, gain)`` pairs; small tensors share vectorized passes."""
    arrays = [as_float_array(t) for t, _ in items]
    results: list[dict[str, float | None]] = [{} for _ in items]
    small = [i for i, a in enumerate(arrays) if a is not None and 0 < a.size <= SMALL]
    for i, (t, gain) in enumerate(items):
        if i not in set(small):
            results[i] = tensor_metrics(arrays[i] if arrays[i] is not None else t, gain=gain, srank=srank)
    if not small:
        return results
    with np.errstate(all="ignore"):  # inf and NaN weights: counted in ``nonfinite``, never a warning
        _batch_small(arrays, items, small, results, srank)
    return results


def _batch_small(
    arrays: list[np.ndarray | None], items: Sequence[tuple[Any, bool]], small: list[int],
    results: list[dict[str, float | None]], srank: bool,
) -> None:  # fmt: skip
    flats = [arrays[i].reshape(-1).astype(np.float64) for i in small]  # type: ignore[union-attr]
    lens = np.array([f.size for f in flats])
    starts = np.concatenate(([0], np.cumsum(lens)[:-1]))
    x = np.concatenate(flats)  # (sum of sizes,) float64: every small tensor end to end
    ab = np.abs(x)
    total = np.add.reduceat(x, starts)
    sq = np.add.reduceat(x * x, starts)
    absum = np.add.reduceat(ab, starts)
    amax = np.maximum.reduceat(ab, starts)
    rms = np.sqrt(sq / lens)
    near = np.add.reduceat(ab < np.repeat(NEAR_ZERO_REL * rms, lens), starts) / lens
    near[rms == 0] = 1.0
    near[~np.isfinite(rms)] = np.nan  # relative to an infinite or NaN RMS: no meaning (null)
    dead = np.add.reduceat(ab < DEAD_GAIN, starts) / lens
    mean = total / lens
    std = np.sqrt(np.maximum(sq / lens - mean * mean, 0.0))
    nonfinite = lens - np.add.reduceat(np.isfinite(x), starts)  # (tensors,) inf and NaN counts
    for j, i in enumerate(small):
        arr, gain = arrays[i], items[i][1]
        assert arr is not None  # selected above
        out: dict[str, float | None] = dict.fromkeys(METRIC_NAMES)
        out.update(
            abs_mean=float(absum[j] / lens[j]),
            std=float(std[j]),
            l2=float(np.sqrt(sq[j])),
            abs_max=float(amax[j]),
            near_zero=float(near[j]) if np.isfinite(near[j]) else None,
            nonfinite=float(nonfinite[j]),
        )
        if srank and arr.ndim >= 2:
            out["weight_stable_rank"] = stable_rank(arr.reshape(arr.shape[0], -1), float(sq[j]))
        if gain:
            out["dead_norm_channels"] = float(dead[j])
        results[i] = out


def stable_rank(w: Any, fro_sq: float | None = None) -> float:
    """||W||_F^2 / ||W||_2^2 for a 2-D ``w`` of shape (out, in); 0 for an all-zero matrix.

    ||W||_2 comes from a seeded randomized block Krylov method (16 vectors, 4 products with W W^T,
    then Rayleigh-Ritz on the whole Krylov space): a few memory-bound matrix products instead of an
    SVD. On trained weights it matches the SVD to 0.1%; on Gaussian noise, the worst case, to ~3%.
    Small matrices (short side <= 32) are solved exactly.
    """
    arr = as_float_array(w)
    if arr is None:
        return math.nan
    if fro_sq is None:
        flat = arr.reshape(-1)
        fro_sq = float(np.dot(flat, flat))
    if fro_sq == 0.0:
        return 0.0
    if not math.isfinite(fro_sq):
        return math.nan  # inf/NaN weights (or a norm that overflows float32): no meaningful rank
    try:
        return _stable_rank(arr, fro_sq)
    except np.linalg.LinAlgError:
        return math.nan  # eigensolver did not converge on a pathological matrix: reported as null


def _stable_rank(w: np.ndarray, fro_sq: float) -> float:
    if w.shape[0] > w.shape[1]:
        w = w.T  # work on the short side: (k, n), k <= n
    k, n = w.shape
    if k == 1:
        return 1.0
    if k <= 2 * _BLOCK:
        top_sq = float(np.linalg.eigvalsh(w @ w.T)[-1])  # (k, k) Gram: exact and cheap
        return fro_sq / top_sq
    rng = np.random.default_rng(0)
    y = w @ rng.standard_normal((n, _BLOCK)).astype(w.dtype)  # (k, p)
    blocks = [y]
    for _ in range(_KRYLOV_STEPS - 1):
        y = w @ (w.T @ y)  # (k, p): next Krylov block of W W^T
        y = y / np.linalg.norm(y)  # keep the scale sane; the span is what matters
        blocks.append(y)
    q, _ = np.linalg.qr(np.concatenate(blocks, axis=1))  # (k, p * steps) orthonormal basis
    b = q.T @ w  # (p * steps, n)
    top_sq = float(np.linalg.eigvalsh(b @ b.T)[-1])  # largest Ritz value of W W^T
    return fro_sq / top_sq
