"""The architecture's own init for a few tensors, without initializing the whole model.

``timm.create_model`` draws every parameter (4.5 s and 1.2 GB for a ViT-L) when reinit needs two head
tensors. Here the model is built once on the ``meta`` device while every tensor operation is recorded;
a tensor's value is then *replayed* on the CPU from the operations that wrote it (and, transitively,
those it read), so only the requested tensors are ever materialised.

- Replaying every operation with the global RNG seeded as ``create_model`` was reproduces its state
  dict bit for bit (tested across architectures): the recording is the architecture's init, not an
  imitation of it.
- For reinit, each tensor is replayed with its own seed (``tensor_seed(seed, name)``), so its value
  depends only on the seed and its name, not on which other tensors a strategy picked.
- Anything the recording cannot account for (an operation on a tensor whose origin was not seen)
  raises ``ReplayError``; callers fall back to building the full fresh model.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache, cached_property
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten, tree_map

META = torch.device("meta")
CPU = torch.device("cpu")
SNAPSHOT_LIMIT = 1 << 20  # elements: a real (non-meta) tensor read while building is copied up to this size


class ReplayError(RuntimeError):
    """The recording cannot reproduce a tensor (its origin was not seen): build the full model instead."""


def tensor_seed(seed: int, name: str) -> int:
    """One 63-bit seed per (seed, tensor name)."""
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def _key(t: torch.Tensor) -> int:
    return int(t.untyped_storage()._cdata)


def _metas(tree: Any) -> list[torch.Tensor]:
    """The meta tensors in an operation's arguments or results (nested tuples, lists, dicts): a plain
    walk, cheaper than torch's general ``tree_flatten`` on this hot path (ViT-L meta build 0.17 -> 0.15 s)."""
    found, todo = [], [tree]
    while todo:
        x = todo.pop()
        if isinstance(x, torch.Tensor):
            if x.is_meta:
                found.append(x)
        elif isinstance(x, list | tuple):
            todo.extend(x)
        elif isinstance(x, dict):
            todo.extend(x.values())
    return found


def _alias(base: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A CPU tensor over ``base``'s storage with ``like``'s dtype, shape, strides and offset (views,
    dtype views included)."""
    t = torch.empty(0, dtype=like.dtype)
    return t.set_(base.untyped_storage(), like.storage_offset(), like.size(), like.stride())


@dataclass
class _Op:
    fn: Callable[..., Any]
    args: Any
    kwargs: dict[str, Any]
    out: Any
    python: bool = False  # a Python-level factory (torch.tensor(...)) recorded by its call
    reads: frozenset[int] = frozenset()  # meta storages read
    writes: frozenset[int] = frozenset()  # meta storages created or mutated


def _written_args(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
    """The arguments an aten operation mutates (in-place ``self``, ``out=``), from its schema."""
    written = []
    schema = getattr(func, "_schema", None)
    for i, arg in enumerate(schema.arguments if schema is not None else []):
        if arg.alias_info is not None and arg.alias_info.is_write:
            value = args[i] if i < len(args) else kwargs.get(arg.name)
            written += [t for t in tree_flatten(value)[0] if isinstance(t, torch.Tensor)]
    return written


def _snapshot(tree: Any) -> Any:
    """Real tensors read while building are copied now: replay must see their values at that moment."""

    def copy(x: Any) -> Any:
        if isinstance(x, torch.Tensor) and x.device != META:
            if x.numel() > SNAPSHOT_LIMIT:
                raise ReplayError(f"a {tuple(x.shape)} real tensor feeds the init")
            return x.detach().clone()
        return x

    return tree_map(copy, tree)


_RESHAPING = frozenset({"aten::resize_", "aten::resize_as_", "aten::set_", "aten::as_strided_"})


@cache
def value_only_inplace(func: Any) -> bool:
    """An in-place aten operation that changes ``self``'s values only (``normal_``, ``clamp_``, ``copy_``,
    ``fill_``...), not its shape: on meta tensors its result is ``self`` unchanged, so the kernel (for
    some, a slow Python decomposition: ``clamp_`` is most of a ViT-L meta build) need not run."""
    schema = getattr(func, "_schema", None)
    first = schema.arguments[0] if schema is not None and schema.arguments else None
    return (
        schema is not None
        and schema.name.endswith("_")
        and first is not None
        and first.alias_info is not None
        and first.alias_info.is_write
        and len(schema.returns) == 1
        and schema.returns[0].alias_info is not None
        and torch.Tag.inplace_view not in getattr(func, "tags", ())
        and schema.name not in _RESHAPING
    )


def _skips(func: Any, args: tuple[Any, ...]) -> bool:
    return (
        bool(args)
        and isinstance(args[0], torch.Tensor)
        and args[0].device == META
        and value_only_inplace(func)
    )


class MetaShapesOnly(TorchDispatchMode):
    """Build a model on ``meta`` for its names and shapes only: value-only in-place operations (the
    init) are skipped. Use inside ``torch.device("meta")``."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        if _skips(func, args):
            return args[0]
        return func(*args, **(kwargs or {}))


class _Recorder(TorchDispatchMode):
    """Records every aten operation on meta tensors, in order, with what it reads and writes."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[_Op] = []
        self.known: set[int] = set()  # meta storages whose origin is recorded
        self.pending: list[tuple[Any, Any, Any, Any]] = []  # ops on storages of unseen origin (yet)
        self.alive: list[Any] = []  # recorded tensors stay referenced: storage addresses stay unique
        self.opaque: set[int] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = args[0] if _skips(func, args) else func(*args, **kwargs)  # recorded, replayed on the CPU
        reads = {_key(t) for t in _metas((args, kwargs))}
        writes = {_key(t) for t in [*_metas(out), *_metas(_written_args(func, args, kwargs))]}
        if reads - self.known:
            self.pending.append((func, args, kwargs, out))  # inside a Python factory, seen next
            return out
        try:
            args_, kwargs_ = _snapshot((args, kwargs))
        except ReplayError:  # a large real tensor feeds it: what it writes cannot be replayed
            self.opaque |= writes
            self.known |= writes
            return out
        self.add(_Op(func, args_, kwargs_, out, reads=frozenset(reads), writes=frozenset(writes)))
        return out

    def add(self, op: _Op) -> None:
        self.ops.append(op)
        self.alive.append((op.args, op.kwargs, op.out))
        self.known |= op.writes


class _Factories(TorchFunctionMode):
    """Python-level constructors (``torch.tensor(data)``) whose data never reaches aten: record the call."""

    def __init__(self, recorder: _Recorder) -> None:
        super().__init__()
        self.recorder = recorder

    def __torch_function__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rec = self.recorder
        new = {_key(t) for t in _metas(out)} - rec.known
        if new:
            reads = {_key(t) for t in _metas((args, kwargs))}
            rec.pending = [p for p in rec.pending if not new & {_key(t) for t in _metas(p[:3])}]
            try:
                args_, kwargs_ = _snapshot((args, kwargs))
            except ReplayError:
                rec.opaque |= new
                rec.known |= new
                return out
            rec.add(
                _Op(func, args_, kwargs_, out, python=True, reads=frozenset(reads), writes=frozenset(new))
            )
        return out


@dataclass
class InitRecording:
    """A model built on ``meta`` and the operations that initialised it."""

    model: nn.Module  # on the meta device: names, shapes and module types, no values
    ops: list[_Op]
    opaque: set[int] = field(default_factory=set)  # storages with operations of unseen origin
    writers: dict[int, list[int]] | None = None  # storage -> indices of the operations that write it

    def _writers(self) -> dict[int, list[int]]:
        if self.writers is None:
            self.writers = {}
            for i, op in enumerate(self.ops):
                for k in op.writes:
                    self.writers.setdefault(k, []).append(i)
        return self.writers

    def _slice(self, keys: Iterable[int], writers: dict[int, list[int]]) -> list[int]:
        """The operations that the final value of storages ``keys`` depends on, in recorded order."""
        todo, seen, picked = list(keys), set(), set()
        while todo:
            k = todo.pop()
            if k in seen:
                continue
            seen.add(k)
            if k in self.opaque:
                raise ReplayError("an operation on a tensor of unseen origin")
            for i in writers.get(k, []):
                if i not in picked:
                    picked.add(i)
                    todo.extend(self.ops[i].reads)
        return sorted(picked)

    def _run(self, order: Iterable[int]) -> dict[int, torch.Tensor]:
        world: dict[int, torch.Tensor] = {}  # meta storage -> a CPU tensor over the same storage layout

        def real(x: Any) -> Any:
            if isinstance(x, torch.Tensor) and x.device == META:
                base = world.get(_key(x))
                if base is None:
                    raise ReplayError("a tensor read before it was written")
                return _alias(base, x)
            if isinstance(x, torch.device) and x == META:
                return CPU
            return x

        for i in order:
            op = self.ops[i]
            args, kwargs = tree_map(real, op.args), tree_map(real, op.kwargs)
            if op.python:
                kwargs = {**kwargs, "device": CPU}
            with torch.no_grad():
                out = op.fn(*args, **kwargs)
            for m, r in zip(tree_flatten(op.out)[0], tree_flatten(out)[0], strict=False):
                if isinstance(m, torch.Tensor) and m.device == META and isinstance(r, torch.Tensor):
                    world.setdefault(_key(m), r)
        return world

    def _value(self, t: torch.Tensor, world: dict[int, torch.Tensor]) -> torch.Tensor:
        base = world.get(_key(t))
        if base is None:
            raise ReplayError("no recorded operation wrote it")
        return _alias(base, t).clone()

    def replay_all(self, seed: int) -> dict[str, torch.Tensor]:
        """Every tensor, the global RNG seeded once: what ``create_model`` gives after ``manual_seed``."""
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            world = self._run(range(len(self.ops)))
        return {n: self._value(t, world) for n, t in self.state.items()}

    def values(self, names: Iterable[str], seed: int) -> dict[str, torch.Tensor]:
        """The named tensors, each from its own seeded replay (one tensor in memory at a time each)."""
        state = self.state
        writers = self._writers()
        out = {}
        for name in names:
            t = state[name]
            order = self._slice([_key(t)], writers)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(tensor_seed(seed, name))
                out[name] = self._value(t, self._run(order))
        return out

    @cached_property
    def state(self) -> dict[str, torch.Tensor]:
        """The meta model's tensors by name (built once: every per-tensor replay looks one up)."""
        return dict(self.model.state_dict(keep_vars=True))

    @property
    def names(self) -> set[str]:
        return set(self.state)

    def check(self, names: Iterable[str]) -> None:
        """Raise ``ReplayError`` now, before anything is written, if a tensor cannot be replayed."""
        state = self.state
        writers = self._writers()
        for name in names:
            if name in state:
                key = _key(state[name])
                if not writers.get(key):
                    raise ReplayError(f"{name}: no recorded operation wrote it")
                self._slice([key], writers)

    def value(self, name: str, seed: int) -> torch.Tensor:
        return self.values([name], seed)[name]


def record_init(build: Callable[[], nn.Module]) -> InitRecording:
    """Run ``build`` (a ``timm.create_model`` call) on the meta device, recording its operations."""
    recorder = _Recorder()
    with torch.device(META), _Factories(recorder), recorder:
        model = build()
    # operations on storages whose origin never showed: whatever they read or wrote cannot be replayed
    opaque = {_key(t) for p in recorder.pending for t in [*_metas(p[:3]), *_metas(p[3])]}
    return InitRecording(model, recorder.ops, opaque | recorder.opaque)
