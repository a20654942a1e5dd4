"""Activation capture: forward hooks that accumulate per-unit statistics on the device.

Hooks live in :func:`capture`, a context manager that removes them (and restores attention flags and
train/eval mode) in ``finally``. What a site keeps does not grow with the number of images: running sums
per unit, a running count of flat derivatives, and the pooled feature rows in one buffer: a narrow
site's is folded into its (C', C') Gram matrix when it fills (the same singular values), a wide site's
keeps at most ``RANK_ROWS`` rows (beyond that many images, a uniform sample of them). Full activation
tensors are never stored.

Attention entropy needs the softmax probabilities, which fast attention kernels never form, so the
capture puts each attention on its family's slow path (timm's ``fused_attn`` off, transformers'
``eager``, ``nn.MultiheadAttention`` asked for weights: :mod:`plastic.model.attention`). In a
forward that keeps its autograd graph those (B, heads, queries, keys) tensors stay alive until the
backward, for every block: 3 GB per image for a ViT at 768 px with 2,304 tokens. When one chunk's
share would pass ``1 / ATTENTION_SHARE`` of the device's memory (:func:`attention_apart`), the pass
keeps the fast path and measures the entropy in an extra forward without a graph, one image at a
time (:attr:`Capture.attention_pass`): the same probabilities, so the same entropy, with one block's
worth alive at a time.

Which tensor is measured for a layer (docs/methods.md, "Terms": activation site): the output of the
elementwise non-linearity that follows it, found at run time as the first activation module called after the
layer whose channel count matches (so fused ``BatchNormAct2d.act``, ``mlp.act`` and SE gates all
work); a layer followed by no such module is measured at its own output.
"""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from plastic.model.attention import AttentionSite, attention_sites
from plastic.model.modules import layers_of, units_of

MAX_RANK_UNITS = 1024  # feature rank is computed on at most this many (seeded) units
SATURATION_SLOPE = 0.01  # |f'(x)| below this counts as saturated
SATURATION_SAMPLE = 1 << 15  # values per activation call on which the derivative is evaluated
RANK_ROWS = 256  # pooled rows a site wider than RANK_ROWS / 2 units keeps for its ranks (then a sample)
RESERVOIR_SEED = 0  # the sample's draws: fixed, so the checkpoint and its reference keep the same images
ATTENTION_SHARE = 8  # a chunk's attention probabilities may hold 1 / this of the device's memory in a graph
UNKNOWN_MEMORY = 8 << 30  # bytes assumed where the host's memory cannot be read


@dataclass
class SiteStats:
    """Running statistics for one layer's activation site, all on the layer's device; their size is
    fixed by the layer, not by the number of images."""

    layer: str
    units: int
    channels_last: bool  # linear layers: units on the last dim; convs: dim 1
    abs_sum: torch.Tensor | None = None  # (C,) float32: sum of |h| over images and positions
    count: int = 0  # values per unit seen
    flat: torch.Tensor | None = None  # () int64: sampled activation inputs with |f'| < SATURATION_SLOPE
    sampled: int = 0  # activation inputs sampled for the saturation
    rows: FeatureRows | None = None  # the pooled (N, C') feature rows, their Gram matrix, or a sample
    rank_units: torch.Tensor | None = None  # (C',) indices of units kept for the rank
    site: str = ""  # the module measured: the activation's name, or the layer's own
    expect: int = 0  # images the pass will show (0: unknown): sizes the row buffer

    def add(self, h: torch.Tensor) -> None:
        h = h.detach()  # (B, C, *spatial) for convs, (B, [tokens,] C) for linear layers
        if h.dtype != torch.float32:
            h = h.float()
        unit_dim = h.dim() - 1 if self.channels_last else 1
        others = tuple(d for d in range(h.dim()) if d != unit_dim)
        abs_sum = _abs_sums(h, unit_dim, others)  # (C,); exactly zero only when the unit never fired
        self.abs_sum = abs_sum if self.abs_sum is None else self.abs_sum.add_(abs_sum)
        self.count += h.numel() // self.units
        if self.channels_last:
            pooled = h.mean(tuple(range(1, h.dim() - 1))) if h.dim() > 2 else h  # (B, C): over tokens
        else:
            pooled = h.mean(tuple(range(2, h.dim()))) if h.dim() > 2 else h  # (B, C): over positions
        if self.units > MAX_RANK_UNITS:
            if self.rank_units is None:
                self.rank_units = _rank_units(self.units, h.device)
            pooled = pooled.index_select(1, self.rank_units)
        if self.rows is None:
            self.rows = FeatureRows(pooled.shape[1], self.expect, pooled.device)
        self.rows.add(pooled)

    def add_saturation_sample(self, module: nn.Module, x: torch.Tensor) -> None:
        """Count the flat derivatives on an evenly strided sample of the activation's input, now: the
        input itself is not kept (an in-place activation overwrites it right after this call)."""
        flat = x.detach().reshape(-1)[:: sample_step(tuple(x.shape))]  # (<= SATURATION_SAMPLE,)
        n = flat_count(module, flat)
        self.flat = n if self.flat is None else self.flat.add_(n)
        self.sampled += flat.numel()

    def saturation(self) -> float | None:
        """Fraction of sampled inputs where the module's own derivative is flat (|f'| < 0.01).

        Autograd through ``module.forward`` (exact for elementwise functions, whatever they are); a
        fraction estimated from 32,768 values per forward call has a standard error below 0.003.
        """
        if self.flat is None or not self.sampled:
            return None
        return int(self.flat) / self.sampled

    @property
    def device(self) -> torch.device | None:
        return None if self.abs_sum is None else self.abs_sum.device


class FeatureRows:
    """The pooled feature rows of one site, in memory that does not grow with the number of images.

    Rows go into one buffer allocated once (so the pass does not scatter small lasting allocations
    between its large short-lived ones, which fragments the CPU heap). What happens when it fills
    depends on the site's width C':

    - narrow sites (``2 * C' <= RANK_ROWS``): past ``2 * C'`` rows the buffer is folded into the
      uncentred Gram matrix ``G = F^T F`` (float64, the buffer's own size in bytes) and later rows are
      added to it: ``G``'s eigenvalues are the squared singular values of ``F``, so the ranks read from it
      equal the rows' to float64 rounding (exact over every image).
    - wide sites: a Gram matrix would be larger than the rows the ranks need, so the buffer keeps
      ``RANK_ROWS`` rows: every row up to ``RANK_ROWS`` images, then a uniform sample of the images seen
      (reservoir sampling, Algorithm R, from a fixed seed: the checkpoint and its fresh reference see the
      same images in the same order, so they keep the same images). Up to ``RANK_ROWS`` images nothing
      is sampled; beyond, the ranks are those of a ``RANK_ROWS``-image sample and the report says so.
    """

    def __init__(self, units: int, expect: int, device: torch.device) -> None:
        self.units = units
        self.folds = 2 * units <= RANK_ROWS  # narrow: exact Gram past the limit; wide: a reservoir
        self.limit = 2 * units if self.folds else RANK_ROWS  # rows held at most
        self.capacity = self.limit if expect <= 0 else max(1, min(expect, self.limit))
        self.buffer: torch.Tensor | None = None  # (capacity, C') float32
        self.n = 0  # rows seen
        self.gram: torch.Tensor | None = None  # (C', C') float64, once folded (narrow sites)
        self.device = device
        self._draws: torch.Generator | None = None  # the reservoir's, once it is full (wide sites)

    def add(self, pooled: torch.Tensor) -> None:
        pooled = pooled.float()  # (B, C')
        b = pooled.shape[0]
        if self.gram is None and self.n + b > self.capacity:
            if self.folds and self.n + b > self.limit:  # narrow, past 2 C' rows: the exact fold
                self.gram = _gram(self.matrix())
                self.buffer = None
            elif self.capacity < self.limit:  # more images than announced: a larger buffer
                self.capacity = self.limit
                self.buffer = _grown(self.buffer, self.n, self.capacity, self.units, pooled.device)
        if self.gram is not None:
            self.gram.add_(_gram(pooled))
            self.n += b
            return
        if self.buffer is None:
            self.buffer = torch.empty(self.capacity, self.units, device=pooled.device)
        free = max(0, min(b, self.capacity - self.n))
        self.buffer[self.n : self.n + free] = pooled[:free]
        if free < b:
            self._sample(pooled[free:], self.n + free)
        self.n += b

    def _sample(self, rows: torch.Tensor, first: int) -> None:
        """Algorithm R: the row of the i-th image (0-based, i >= capacity) replaces a uniformly drawn
        slot j in [0, i] when j < capacity, so every image seen is kept with the same probability."""
        assert self.buffer is not None
        if self._draws is None:
            self._draws = torch.Generator().manual_seed(RESERVOIR_SEED)
        seen = torch.arange(first, first + rows.shape[0], dtype=torch.float64) + 1  # (R,) i + 1
        slots = (torch.rand(rows.shape[0], generator=self._draws, dtype=torch.float64) * seen).long()
        # slot -> the last row drawn for it (a later image replaces an earlier one): one copy on the device
        last = {j: k for k, j in enumerate(slots.tolist()) if j < self.capacity}
        if last:
            index = torch.tensor(list(last), device=rows.device)  # (K,) slots
            self.buffer.index_copy_(
                0, index, rows.index_select(0, torch.tensor(list(last.values()), device=rows.device))
            )

    @property
    def kept(self) -> int:
        """Images the ranks are read over: all of them, or the reservoir's sample."""
        return self.n if self.folds or self.n <= self.capacity else self.capacity

    def matrix(self) -> torch.Tensor:
        """(N, C') float32: the rows themselves (before the fold; at most ``capacity``)."""
        if self.buffer is None:
            return torch.zeros(0, self.units, device=self.device)
        return self.buffer[: min(self.n, self.capacity)]

    def finite(self) -> bool:
        held = self.gram if self.gram is not None else self.matrix()
        return bool(torch.isfinite(held).all())


def _gram(rows: torch.Tensor) -> torch.Tensor:
    r = rows.double()  # (B, C'): float32 products are exact in float64
    return r.T @ r  # (C', C')


def _grown(
    buffer: torch.Tensor | None, n: int, capacity: int, units: int, device: torch.device
) -> torch.Tensor:
    out = torch.empty(capacity, units, device=device)
    if buffer is not None:
        out[:n] = buffer[:n]
    return out


def _abs_sums(h: torch.Tensor, unit_dim: int, others: tuple[int, ...]) -> torch.Tensor:
    """(C,) sums of |h| over every dim but ``unit_dim``, by the faster kernel for the memory layout
    (CPU, batch 32): units strided (NCHW convs): an L1 norm, which never writes |h| out (31 against 51 ms
    on a (32, 96, 112, 112) activation); units innermost (linear layers' (B, T, C), channels_last
    convs): rows of |h| summed (2.2 ms on (32, 197, 768), where the L1 norm takes 20 ms)."""
    if not others:
        return h.abs()
    if h.stride(unit_dim) == 1:
        return h.movedim(unit_dim, -1).reshape(-1, h.shape[unit_dim]).abs().sum(0)
    norm: torch.Tensor = torch.linalg.vector_norm(h, 1, dim=others)
    return norm


def sample_step(shape: tuple[int, ...]) -> int:
    """A stride that takes about ``SATURATION_SAMPLE`` values of a tensor of ``shape``, coprime with the
    size of every trailing block of dims, so that the sample does not alias onto a few channels or
    positions (a stride of 56 over 14x14 maps would visit 7 of the 196 positions)."""
    n = math.prod(shape)
    step = max(1, -(-n // SATURATION_SAMPLE))
    blocks = {math.prod(shape[i:]) for i in range(1, len(shape))} - {0, 1}
    while any(math.gcd(step, b) != 1 for b in blocks):
        step += 1
    return step


def flat_count(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """() int64 on ``x``'s device: how many of the 1-D inputs ``x`` meet a derivative of ``module``
    below ``SATURATION_SLOPE``; in float32 whatever the pass's autocast (so CPU and AMP agree)."""
    with torch.enable_grad(), torch.autocast(x.device.type, enabled=False):
        xg = x.detach().float().requires_grad_(True)
        y = module.forward(xg * 1.0)  # .forward: no hooks; "* 1.0": in-place activations spare the leaf
        (grad,) = torch.autograd.grad(y.sum(), xg)
    return (grad.abs() < SATURATION_SLOPE).sum()


def flat_fraction(module: nn.Module, x: torch.Tensor) -> float:
    """Fraction of the 1-D inputs ``x`` where ``module``'s derivative is below ``SATURATION_SLOPE``."""
    return int(flat_count(module, x)) / max(x.numel(), 1)


def reference_saturation(module: nn.Module, device: torch.device | str = "cpu") -> float:
    """The flat fraction on standard-normal inputs: what a healthy layer feeds this non-linearity.

    Init schemes aim at unit-variance pre-activations, so N(0, 1) is the freshly initialised regime:
    ReLU gives 0.5 there (half its inputs are always flat), GELU about 0.001, sigmoid and tanh 0. Only
    saturation above this level is a loss of plasticity. Seeded, so reports are reproducible.
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(SATURATION_SAMPLE, generator=gen)  # (32768,)
    return flat_fraction(module, x.to(device))


def _rank_units(units: int, device: torch.device) -> torch.Tensor:
    if units <= MAX_RANK_UNITS:
        return torch.arange(units, device=device)
    gen = torch.Generator().manual_seed(0)
    return torch.randperm(units, generator=gen)[:MAX_RANK_UNITS].sort().values.to(device)


@dataclass
class AttnStats:
    layer: str  # the attention module's qkv (or first linear) layer, which the entropy is reported on
    total: torch.Tensor | None = None  # () float64: sum of normalized row entropies
    rows: int = 0

    def add(self, probs: torch.Tensor) -> None:
        p = probs.detach().float()  # (B, heads, queries, keys)
        keys = p.shape[-1]
        if keys < 2:
            return
        # -p log p in one kernel (0 where p = 0), summed over keys: (B, heads, queries) row entropies
        ent = torch.special.entr(p).sum(-1)
        s = ent.sum(dtype=torch.float64) / math.log(keys)  # normalised: 1 = uniform over the keys
        self.total = s if self.total is None else self.total + s
        self.rows += ent.numel()


@dataclass
class Capture:
    sites: dict[str, SiteStats]  # layer name -> stats
    attention: dict[str, AttnStats]
    layer_types: dict[str, str]
    # set when the entropy is measured apart: call it with each chunk's images, before its forward
    attention_pass: Callable[[torch.Tensor], None] | None = None


@contextmanager
def _unfused(found: list[AttentionSite]) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for site in found:
            stack.enter_context(site.unfused())
        yield


def attention_bytes(model: nn.Module, x: torch.Tensor) -> int:
    """Bytes of softmax probabilities one image's forward forms with its attention on the slow path
    (what a graph would keep of them per image); 0, without a forward, for a model with no attention
    plastic reads (:func:`~plastic.model.attention.attention_sites`).

    Args:
        model: the model, in the mode the pass runs it.
        x: (B, C, H, W) images; the first one goes forward, without a graph.
    """
    found = attention_sites(model)
    if not found:
        return 0
    total = 0

    def count(probs: torch.Tensor) -> None:
        nonlocal total
        total += probs.numel() * probs.element_size()

    handles = [h for site in found for h in site.hook(count, lambda: True)]
    try:
        with _unfused(found), torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return total


def device_memory(device: torch.device) -> int:
    """The device's memory in bytes: a GPU's total, or the host's RAM (within a cgroup's limit)."""
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
        return UNKNOWN_MEMORY
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                limit = f.read().strip()
        except OSError:
            continue
        if limit.isdigit():
            total = min(total, int(limit))
    return int(total)


def attention_apart(per_image: int, images: int, device: torch.device) -> bool:
    """Whether a forward of ``images`` images would keep more attention probabilities in its graph
    (``per_image`` bytes each, from :func:`attention_bytes`) than ``1 / ATTENTION_SHARE`` of the
    device's memory: then the entropy is measured apart. Fixed per machine, so a run repeats."""
    return per_image * images > device_memory(device) // ATTENTION_SHARE


@contextmanager
def capture(
    model: nn.Module,
    act_sites: dict[str, str],
    *,
    saturation: bool = True,
    images: int = 0,
    apart: bool = False,
) -> Iterator[Capture]:
    """Hooks that fill a :class:`Capture` during forwards inside the ``with`` block; ``images``: how many
    the forwards will show, if known (it sizes the feature-row buffers; more are handled too).
    ``apart``: leave attention fused in those forwards and measure its entropy in the capture's
    ``attention_pass`` instead (see the module's docstring)."""
    layers = layers_of(model)
    modules = dict(model.named_modules())
    sites = {
        name: SiteStats(
            name, units_of(m), isinstance(m, nn.Linear), site=act_sites.get(name, name), expect=images
        )
        for name, m in layers.items()
    }
    attention: dict[str, AttnStats] = {}
    found = attention_sites(model)
    handles = []
    was_training = model.training
    muted = [False]  # True during the apart attention forwards: only the attention hooks record

    def on_output(stats: SiteStats):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            if not muted[0] and isinstance(out, torch.Tensor):
                stats.add(out)

        return hook

    def fits(stats: SiteStats, t: object) -> bool:
        dim = -1 if stats.channels_last else 1
        return isinstance(t, torch.Tensor) and t.dim() >= 2 and t.shape[dim] == stats.units

    # an activation module called several times per forward (torchvision's shared ``relu``): each
    # layer reads only its own call, counted from the model's forward
    calls: dict[str, int] = dict(getattr(act_sites, "calls", {}))
    count: dict[str, int] = {}

    def mine(stats: SiteStats) -> bool:
        want = calls.get(stats.layer)
        return want is None or count.get(stats.site, 0) == want

    def on_act(stats: SiteStats):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _i: object, out: torch.Tensor) -> None:
            if not muted[0] and mine(stats) and fits(stats, out):
                stats.add(out)

        return hook

    def on_act_input(stats: SiteStats):  # type: ignore[no-untyped-def]
        # before the call: an in-place activation (ReLU(inplace=True), SiLU(inplace=True)) overwrites
        # its input, so a hook after it would see f(x) where the derivative needs x
        def hook(m: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            if not muted[0] and inputs and mine(stats) and fits(stats, inputs[0]):
                stats.add_saturation_sample(m, inputs[0])

        return hook

    def counter(site: str):  # type: ignore[no-untyped-def]
        def hook(_m: nn.Module, _i: object, _o: object) -> None:
            count[site] = count.get(site, 0) + 1

        return hook

    def reading() -> bool:  # measured apart: only the attention pass's forwards count
        return muted[0] or not apart

    def attention_pass(x: torch.Tensor) -> None:
        # one image at a time, no graph: one block's probabilities alive at once
        muted[0] = True
        try:
            with _unfused(found), torch.no_grad():
                for xi in x.split(1):
                    model(xi)
        finally:
            muted[0] = False

    stack = contextlib.ExitStack()
    try:
        model.eval()
        for name, stats in sites.items():
            target = modules[stats.site]
            hook = on_act(stats) if stats.site != name else on_output(stats)
            handles.append(target.register_forward_hook(hook))
            if saturation and stats.site != name:
                handles.append(target.register_forward_pre_hook(on_act_input(stats)))
        shared = {sites[la].site for la in calls if la in sites}
        for site in sorted(shared):  # after the statistics hooks: they see the call's own index
            handles.append(modules[site].register_forward_hook(counter(site)))
        if shared:
            handles.append(model.register_forward_pre_hook(lambda _m, _i: count.clear()))
        for at in found:
            attention[at.layer] = AttnStats(at.layer)
            handles += at.hook(attention[at.layer].add, reading)
        if not apart:
            stack.enter_context(_unfused(found))
        yield Capture(
            sites,
            attention,
            {n: type(m).__name__ for n, m in layers.items()},
            attention_pass if apart and found else None,
        )
    finally:
        stack.close()  # fused attention restored
        for h in handles:
            h.remove()
        model.train(was_training)
