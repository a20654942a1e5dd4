"""The value engine: for each tensor a plan changes, its new values (the architecture's init replayed for
that tensor, its mean, zeros, or shrink-and-perturb), computed one tensor at a time when asked for. The
file pipeline streams them into the writer; ``reinit_model`` copies them into a live model's tensors:
the same values either way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from plastic.errors import UsageError
from plastic.files.checkpoint import Checkpoint, TensorInfo
from plastic.model.backends import ArchSpec
from plastic.model.init_replay import InitRecording, ReplayError
from plastic.model.init_values import InitSource, fresh_model, mean_value
from plastic.reinit.options import Fill, Kind, Options
from plastic.reinit.strategies import Change, Plan

NewValue = Callable[[TensorInfo], torch.Tensor | None]  # a tensor's new values, None when unchanged


RESAMPLED = (Fill.RESAMPLE, Fill.SHRINK_PERTURB)  # changes whose values need the architecture's init


def init_source(
    spec: ArchSpec | None, ckpt: Checkpoint, plan: Plan, recording: InitRecording | None, seed: int,
    notes: list[str],
) -> InitSource:  # fmt: skip
    """Replay the architecture's init for the tensors the plan resamples; a full fresh model when one
    cannot be replayed; PyTorch's role defaults without an architecture."""
    shapes = {t.name: t.shape for t in ckpt.tensors}
    arch = spec.label if spec is not None else None
    if spec is None or not needs_init(plan):
        return InitSource(arch, seed, shapes)
    needed = {c.tensor for c in plan.changes if c.value in RESAMPLED}
    from plastic.model.backends import backend_of

    # torchvision's and transformers' inits write some tensors in ways the recording does not see
    # (convnext_tiny, swin_t, googlenet, ViT's cls_token): their values come from the fresh model
    if recording is not None and backend_of(spec).replay_exact:
        try:
            recording.check(needed)
            return InitSource(arch, seed, shapes, recording=recording)
        except ReplayError as e:
            notes.append(
                f"the init of {arch} could not be replayed per tensor ({e}): drew a full fresh model"
            )
    fresh = fresh_model(spec, seed=seed)
    source = InitSource.from_model(spec.label, seed, fresh, needed, shapes)
    del fresh  # only the needed init tensors stay in memory while writing
    return source


def needs_init(plan: Plan) -> bool:
    return any(c.value in RESAMPLED for c in plan.changes)


def check_dtypes(ckpt: Checkpoint, plan: Plan) -> None:
    """New values exist for real floating tensors (and integer buffers such as ``num_batches_tracked``,
    reset to their initial count), nothing else. An integer weight (a quantized layer) would get a float
    init rounded to integers, almost all zeros: refused, like complex and boolean tensors."""
    for c in plan.changes:
        info = ckpt.by_name[c.tensor]
        dtype = info.dtype
        if dtype.startswith("complex") or dtype in ("bool", "float4_e2m1fn_x2"):
            raise UsageError(
                f"{c.tensor} is {dtype}: plastic has no initial value for it; exclude it (e.g. --layers)"
            )
        integer = dtype.startswith(("int", "uint"))
        if integer and (c.tensor.rpartition(".")[2] in ("weight", "bias") or c.kind not in _INT_KINDS):
            raise UsageError(
                f"{c.tensor} is {dtype} (a quantized layer?): plastic gives float initial values, which "
                "would round to integers (mostly 0); dequantize the checkpoint to float first, or exclude "
                "this tensor (e.g. --layers)"
            )


_INT_KINDS = (Kind.TENSOR, Kind.NORM_RESET)  # integer buffers are reset whole, to the init's value


def new_values(ckpt: Checkpoint, plan: Plan, source: InitSource, options: Options) -> NewValue:
    """The plan's new values, one tensor at a time, on demand: ``new_value(info)`` is ``None`` for a
    tensor the plan leaves alone. Never a new inf or NaN (refused: nothing is written)."""
    by_tensor: dict[str, list[Change]] = {}
    for c in plan.changes:
        by_tensor.setdefault(c.tensor, []).append(c)
    shapes = {t.name: t.shape for t in ckpt.tensors}

    def new_value(info: TensorInfo) -> torch.Tensor | None:
        changes = by_tensor.get(info.name)
        if not changes:
            return None
        old = ckpt.tensor(info.name).detach()
        t = old.float().clone()
        for c in changes:
            t = _apply_one(t, c, info, source, shapes, options)
        t = t.to(old.dtype)
        back = t.float()  # isfinite has no float8 kernels; the round trip keeps inf and NaN
        if t.is_floating_point() and not bool(torch.isfinite(back).all()):
            bad = ~torch.isfinite(back) & torch.isfinite(old.float())
            if bool(bad.any()):
                raise UsageError(
                    f"{info.name}: the new values would hold {int(bad.sum())} non-finite number(s) "
                    f"(inf or NaN, e.g. from overflowing {info.dtype}); nothing was written"
                )
        return t

    return new_value


def _replacement(
    c: Change, info: TensorInfo, source: InitSource, shapes: dict[str, tuple[int, ...]]
) -> torch.Tensor:
    if c.value == Fill.MEAN or c.kind == Kind.NORM_RESET:
        return mean_value(info, shapes)
    if c.value == Fill.ZERO:
        return torch.zeros(info.shape)
    new = source.resample(info)
    if new is None:
        raise UsageError(
            f"no initial value for {info.name}: PyTorch has no default for its role; pass --arch"
        )
    return new


def _apply_one(
    t: torch.Tensor,
    c: Change,
    info: TensorInfo,
    source: InitSource,
    shapes: dict[str, tuple[int, ...]],
    options: Options,
) -> torch.Tensor:
    if c.kind == Kind.SHRINK_PERTURB:
        init = source.resample(info)
        if init is None:
            raise UsageError(f"no initial value for {info.name} to perturb with; pass --arch")
        return options.shrink * t + options.perturb * init
    new = _replacement(c, info, source, shapes)
    if c.kind in (Kind.TENSOR, Kind.NORM_RESET):
        return new
    if c.kind in (Kind.UNITS, Kind.ZERO_OUTGOING):
        assert c.index is not None
        return t.index_copy(c.dim, c.index, new.index_select(c.dim, c.index))
    if c.kind == Kind.WEIGHTS:
        assert c.mask is not None
        return torch.where(c.mask, new, t)
    raise AssertionError(c.kind)
