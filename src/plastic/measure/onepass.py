"""One data pass: every calibration batch is decoded once and, for each model measured, run through one
forward with the statistics hooks on and one backward of the probe loss from that same forward.

diagnose measures the checkpoint's model in this pass and, with ``--reference``, the same architecture
freshly initialised beside it (docs/commands.md, "The saturation score"); all models see the same
images in the same batches. reinit's ``--utility gradient`` runs it too. Per model the pass keeps,
on the device:

- the :class:`~plastic.measure.capture.Capture` sums (dormant/dead/saturation/pooled features/attention);
- dL/dW in each layer weight's ``.grad``, where L is the summed cross-entropy of a fresh seeded linear
  probe head on the classifier's input (the pre-logits features) for the calibration labels (class
  subfolders, else fixed random labels over 10 classes). ``grad_ratio`` = ||mean dL/dW|| / ||W||: how
  much each layer's weights would move, relative to their size, under a fresh task.

The backward runs in chunks of at most ``chunk`` images, so its memory is bounded by the chunk, not the
batch. Only at the end do scalars come back to the host (one transfer per model for all grad ratios).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from plastic.errors import (
    MEMORY_HINT,
    ArchitectureError,
    DataError,
    DeviceError,
    ResourceError,
    is_allocation_failure,
)
from plastic.measure.calib import spread_sample
from plastic.measure.capture import Capture, attention_apart, attention_bytes, capture
from plastic.model.backends import backend_of_model
from plastic.model.modules import find_act_sites, layers_of

Progress = Callable[[str, int, int], None]  # (phase, done, total) in images
Batches = Iterable[tuple[list[int], torch.Tensor | None, list[tuple[int, str]]]]

CPU_CHUNK = 4  # images per forward+backward on the CPU: bounds the autograd graph's memory
RANDOM_LABEL_CLASSES = 10  # a flat folder's images get fixed random labels over this many classes


@dataclass
class Measured:
    """What one model's pass left: the capture sums, where each layer was measured, the grad ratios."""

    capture: Capture
    act_sites: dict[str, str]
    grad_ratios: dict[str, float | None]  # layer -> ||mean dL/dW|| / ||W||
    grads: dict[str, torch.Tensor] | None = None  # parameter -> mean dL/dW (on the CPU), when kept
    images: int = 0  # images this model saw (fewer than the pass's when it measured a subset)


@dataclass
class PassResult:
    measured: list[Measured]  # in the order of the models given
    used: list[int]  # indices of the decoded images
    skipped: list[tuple[int, str]]  # (index, why) of the images that could not be read


def random_labels(n: int, seed: int) -> torch.Tensor:
    """(n,) int64 seeded labels for a folder without class subfolders: fitting random labels is the
    standard plasticity probe."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, RANDOM_LABEL_CLASSES, (n,), generator=gen)


def probe_targets(
    labels: list[int] | None, class_names: list[str], n: int, seed: int
) -> tuple[torch.Tensor, int]:
    """(labels per image index, class count) for the probe: the folder's classes, else seeded random ones."""
    if labels is not None:
        return torch.tensor(labels), max(len(class_names), 2)
    return random_labels(n, seed), RANDOM_LABEL_CLASSES


def classifier_of(model: nn.Module) -> nn.Module | None:
    """The module whose input is the pre-logits feature vector (its family's classifier; of a distilled
    model's (head, head_dist), the class head)."""
    heads = backend_of_model(model).classifier(model)
    return heads[0] if heads else None


def features_of(out: Any) -> Any:
    """A model's output as the probe's features when no classifier hook caught them: the tensor itself,
    else a transformers output's pooled (or last hidden) state."""
    if isinstance(out, torch.Tensor):
        return out
    for name in ("pooler_output", "last_hidden_state", "logits"):
        value = getattr(out, name, None)
        if isinstance(value, torch.Tensor):
            return value
    if isinstance(out, tuple | list) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    return out


class _Probe:
    """One model's part of the pass: its hooks, its pre-logits stash and its seeded probe head."""

    def __init__(self, model: nn.Module, seed: int, n_classes: int, weights: dict[str, str]) -> None:
        self.model = model
        self.seed = seed
        self.n_classes = n_classes
        self.weights = weights  # layer -> weight parameter name
        self.head: nn.Linear | None = None
        self.stash: list[torch.Tensor] = []
        self.classifier = classifier_of(model)
        self.capture: Capture | None = None
        self.act_sites: dict[str, str] = {}

    def start(self, stack: contextlib.ExitStack, x: torch.Tensor, images: int, chunk: int) -> None:
        """Find the activation sites on two images, then hook the model for the rest of the pass;
        attention entropy is measured apart when a ``chunk``'s probabilities would crowd the graph."""
        self.act_sites = find_act_sites(self.model, x[:2])
        per_image = attention_bytes(self.model, x)
        apart = per_image > 0 and attention_apart(per_image, min(chunk, len(x)), x.device)
        self.capture = stack.enter_context(capture(self.model, self.act_sites, images=images, apart=apart))
        if self.classifier is not None:
            handle = self.classifier.register_forward_pre_hook(self._keep)
            stack.callback(handle.remove)

    def _keep(self, _m: nn.Module, inputs: tuple[Any, ...]) -> None:
        if inputs and isinstance(inputs[0], torch.Tensor):
            self.stash.append(inputs[0])

    def step(self, x: torch.Tensor, y: torch.Tensor, autocast: Callable[[], Any]) -> None:
        """Forward (hooks fill the sums), then backward of the summed probe loss from that forward."""
        if self.capture is not None and self.capture.attention_pass is not None:
            self.capture.attention_pass(x)  # the entropy, without a graph (the capture's docstring)
        self.stash.clear()
        with autocast():
            out = self.model(x)
        feats = self.stash[0] if self.stash else features_of(out)  # no classifier: the output is it
        self.stash.clear()
        if not isinstance(feats, torch.Tensor) or not feats.requires_grad:
            return  # nothing upstream needs a gradient (a model with no layer weights)
        feats = feats.flatten(1).float()  # (B, D)
        if self.head is None:
            state = torch.random.get_rng_state()
            torch.manual_seed(self.seed)  # the same probe head for the same seed, on every device
            self.head = nn.Linear(feats.shape[1], self.n_classes).to(feats.device)
            torch.random.set_rng_state(state)
        F.cross_entropy(self.head(feats), y, reduction="sum").backward()

    def finish(self, n_images: int, keep_grads: bool) -> Measured:
        params = dict(self.model.named_parameters())
        names = [layer for layer, w in self.weights.items() if params[w].grad is not None]
        ratios: dict[str, float | None] = dict.fromkeys(self.weights)
        if names and n_images:
            g = torch.stack([params[self.weights[n]].grad.float().norm() for n in names])  # type: ignore[union-attr]
            w = torch.stack([params[self.weights[n]].detach().float().norm() for n in names])
            r = torch.where(w > 0, g / n_images / w.clamp_min(1e-30), torch.full_like(w, float("nan")))
            for n, v in zip(names, r.tolist(), strict=True):  # one transfer for every layer
                ratios[n] = None if v != v else v  # NaN: an all-zero weight has no ratio
        grads = None
        if keep_grads and n_images:  # every parameter a gradient reached
            grads = {n: (p.grad.detach() / n_images).cpu() for n, p in params.items() if p.grad is not None}
        return Measured(self.capture or Capture({}, {}, {}), self.act_sites, ratios, grads, n_images)


def layer_weights(model: nn.Module) -> dict[str, str]:
    """{layer: its weight parameter's name} for every conv/linear layer with a weight."""
    return {n: f"{n}.weight" for n, m in layers_of(model).items() if getattr(m, "weight", None) is not None}


def data_pass(
    models: Sequence[nn.Module],
    batches: Batches,
    labels: torch.Tensor,
    *,
    n_classes: int,
    seed: int,
    device: torch.device,
    total: int,
    autocast: Callable[[], Any] = contextlib.nullcontext,
    chunk: int | None = None,
    progress: Progress | None = None,
    keep_grads: bool = False,
    subsets: Sequence[Collection[int] | None] | None = None,
) -> PassResult:
    """Run every batch once through each of ``models`` (eval mode; running statistics untouched).

    ``labels`` holds one class per image index; ``chunk`` caps the images per forward+backward
    (default: the whole batch on CUDA, ``CPU_CHUNK`` on the CPU). ``keep_grads``: also return the mean
    dL/dW of every parameter (reinit's ``--utility gradient``). ``subsets``: per model, the image
    indices it measures (None: all; diagnose's fresh reference can make do with fewer). Hooks,
    requires_grad flags, grads and train/eval modes are restored however the pass ends.
    """
    if chunk is None:
        chunk = 1 << 30 if device.type == "cuda" else CPU_CHUNK
    probes = [_Probe(m, seed, n_classes, layer_weights(m)) for m in models]
    wants = [None if s is None else frozenset(s) for s in (subsets or [None] * len(models))]
    seen = [0] * len(models)  # images each model measured
    used: list[int] = []
    skipped: list[tuple[int, str]] = []
    saved = [(p, p.requires_grad) for m in models for p in m.parameters()]
    modes = [m.training for m in models]
    try:
        for pr in probes:
            pr.model.eval()
            pr.model.zero_grad(set_to_none=True)
            wanted = set(pr.weights.values())
            for name, p in pr.model.named_parameters():
                # grads only where they are read (ratios: layer weights): less backward work
                p.requires_grad_(p.is_floating_point() and (keep_grads or name in wanted))
        with contextlib.ExitStack() as stack:
            started = False
            for idx, x, bad in batches:
                skipped += bad
                if x is None:
                    continue
                x = x.to(device, non_blocking=True)
                y = labels[idx].to(device, non_blocking=True)
                if not started:
                    with autocast():
                        for pr in probes:
                            pr.start(stack, x, total, chunk)
                    started = True
                for k, (pr, want) in enumerate(zip(probes, wants, strict=True)):
                    xm, ym = x, y
                    if want is not None:  # this model measures only some of the images
                        rows = [j for j, i in enumerate(idx) if i in want]
                        if len(rows) < len(idx):
                            pick = torch.tensor(rows, dtype=torch.long, device=device)
                            xm, ym = x.index_select(0, pick), y.index_select(0, pick)
                    for xs, ys in zip(xm.split(chunk), ym.split(chunk), strict=True):
                        if len(ys):
                            pr.step(xs, ys, autocast)
                    seen[k] += len(ym)
                used += idx
                if progress is not None:
                    progress("measuring", len(used) + len(skipped), total)
            if not started:
                return PassResult([], used, skipped)
            measured = [pr.finish(n, keep_grads) for pr, n in zip(probes, seen, strict=True)]
        return PassResult(measured, used, skipped)
    finally:
        for m, mode in zip(models, modes, strict=True):
            m.zero_grad(set_to_none=True)
            m.train(mode)
        for p, flag in saved:
            p.requires_grad_(flag)


@dataclass(frozen=True)
class PassSettings:
    """How the one data pass runs, for the file and the live pipelines alike."""

    labels: torch.Tensor  # (N,) int64: the probe's class for each image index
    n_classes: int  # the probe head's outputs
    total: int  # images to pass (for progress)
    batch_size: int  # to start from: CUDA out of memory halves it
    seed: int  # the probe head's
    device: torch.device
    amp: bool = False  # bf16 autocast (CUDA only)
    subsets: tuple[frozenset[int] | None, ...] | None = None  # per model, the image indices it measures
    keep_grads: bool = False  # keep each weight's dL/dW (reinit's gradient utility), not only the ratios


def reference_subset(
    labels: list[int] | None, n: int, reference_images: int | None, seed: int
) -> frozenset[int] | None:
    """The image indices the fresh reference measures: ``reference_images`` of the ``n``, seeded and spread
    over the classes (round robin), or None for all of them."""
    if reference_images is None or reference_images >= n:
        return None
    return frozenset(spread_sample(labels if labels is not None else [0] * n, reference_images, seed))


def one_pass(
    models: list[nn.Module],
    batches: Callable[[int], Batches],
    settings: PassSettings,
    progress: Progress | None = None,
    notes: list[str] | None = None,
) -> tuple[PassResult, int]:
    """Decode each batch once; per model one forward with the hooks and one backward of the probe loss.
    ``batches(size)`` makes the batches; CUDA out of memory halves the size and restarts the pass (said
    in ``notes``). The batch size used comes back."""
    notes = notes if notes is not None else []
    labels, n_classes, total, seed = settings.labels, settings.n_classes, settings.total, settings.seed
    batch_size, dev, use_amp = settings.batch_size, settings.device, settings.amp
    problem = backend_of_model(models[0]).feed_problem(models[0])
    if problem is not None:  # a model that does not take images: say so before decoding any
        raise ArchitectureError(problem)

    def autocast() -> Any:
        return torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    while True:
        try:
            done = data_pass(
                models, batches(batch_size), labels, n_classes=n_classes, seed=seed, device=dev, total=total,
                autocast=autocast, progress=progress, subsets=settings.subsets,
                keep_grads=settings.keep_grads,
            )  # fmt: skip
            return done, batch_size
        except torch.cuda.OutOfMemoryError:
            if batch_size == 1:
                raise DeviceError("CUDA out of memory even with --batch-size 1; use --device cpu") from None
            batch_size //= 2
            torch.cuda.empty_cache()
            notes.append(f"CUDA out of memory: retried with --batch-size {batch_size}")
        except MemoryError:
            raise ResourceError(
                f"out of memory during the data pass (--batch-size {batch_size}); {MEMORY_HINT}"
            ) from None
        except (RuntimeError, AssertionError, ValueError) as e:  # the model refuses these inputs
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if is_allocation_failure(e):
                raise ResourceError(
                    f"out of memory during the data pass (--batch-size {batch_size}): {first[:200]}; "
                    + MEMORY_HINT
                ) from None
            raise DataError(
                f"the model cannot run on the calibration images as preprocessed ({first}); "
                "check --input-size, --in-chans, --mean and --std (PLASTIC_DEBUG=1 shows where it failed)"
            ) from e


@contextlib.contextmanager
def full_float32() -> Iterator[None]:
    """TF32 off and deterministic cuDNN algorithms for convolutions and matrix products, restored after.

    PyTorch lets cuDNN use TF32 (10-bit mantissa) for float32 convolutions by default; on an H100 that
    moved a MobileNetV2 stem's grad_ratio by 23% against the CPU. Off, CUDA and CPU agree to ~0.2%, so
    a seed means the same report on every machine. ``--amp`` (bf16) is the opt-in fast path.
    """
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    saved = (cudnn.allow_tf32, matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark)
    cudnn.allow_tf32 = matmul.allow_tf32 = False
    cudnn.deterministic, cudnn.benchmark = True, False  # same report for the same inputs on CUDA too
    try:
        yield
    finally:
        cudnn.allow_tf32, matmul.allow_tf32, cudnn.deterministic, cudnn.benchmark = saved
