"""``diagnose_model``: the diagnosis of a model already in memory, for training scripts that never write a
checkpoint. The same pass, tables, score and recommendation as ``plastic diagnose`` (one implementation):
only where the model and the images come from differs.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plastic.errors import DataError, UsageError
from plastic.measure.calib import DataConfig
from plastic.measure.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MAX_IMAGES, DEFAULT_TAU, DiagnoseOptions
from plastic.measure.onepass import (
    Batches,
    PassSettings,
    Progress,
    full_float32,
    one_pass,
    probe_targets,
    reference_subset,
)
from plastic.measure.spread import spread_images
from plastic.model.build import BuiltModel
from plastic.pipelines.diagnose import assemble, measure_spread
from plastic.pipelines.live_model import checkpoint_view, classifier_keys_of, model_spec, num_classes_of_model
from plastic.pipelines.report import Calibration, DiagnoseReport


def _collect(
    images: torch.Tensor | Iterable[Any], labels: Sequence[int] | torch.Tensor | None, max_images: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(N, C, H, W) images and their labels (or None) from a tensor, a list of batches or a DataLoader
    yielding tensors or (images, labels) pairs; at most ``max_images``."""
    xs: list[torch.Tensor] = []
    ys: list[torch.Tensor] = []
    if isinstance(images, torch.Tensor):
        xs = [images]
    else:
        for item in images:
            x, y = (item[0], item[1]) if isinstance(item, tuple | list) and len(item) >= 2 else (item, None)
            if not isinstance(x, torch.Tensor):
                raise UsageError(
                    f"images: expected tensors or (images, labels) pairs, got {type(x).__name__}"
                )
            xs.append(x)
            if y is not None:
                ys.append(torch.as_tensor(y))
            if sum(len(t) for t in xs) >= max_images:
                break
    if not xs:
        raise DataError("images: no images given")
    x = torch.cat([t.detach() for t in xs])[:max_images]
    if x.dim() != 4:
        raise UsageError(f"images: expected (N, C, H, W) batches, got shape {tuple(x.shape)}")
    y = torch.as_tensor(labels) if labels is not None else (torch.cat(ys) if ys else None)
    if y is not None:
        y = y.reshape(-1)[: len(x)].long()
        if len(y) != len(x):
            raise UsageError(f"labels: {len(y)} labels for {len(x)} images")
    return x, y


def diagnose_model(
    model: nn.Module,
    images: torch.Tensor | Iterable[Any],
    *,
    labels: Sequence[int] | torch.Tensor | None = None,
    num_classes: int | None = None,
    arch: str | None = None,
    tau: float = DEFAULT_TAU,
    seed: int = 0,
    batch_size: int = DEFAULT_BATCH_SIZE,
    max_images: int = DEFAULT_MAX_IMAGES,
    reference: bool | None = None,
    progress: Progress | None = None,
    trial: bool = False,
    trial_budget: int | None = None,
    reference_images: int | None = None,
) -> DiagnoseReport:
    """Diagnose ``model`` where it lives (its device; left in the mode and state it came in): the same
    pass, scores and recommendation as ``plastic diagnose`` on the same weights and images.

    Args:
        model: The model (a timm model records its architecture; others take ``arch``).
        images: Preprocessed ``(N, C, H, W)`` tensors, a list of such batches, or a DataLoader of
            ``(images, labels)``.
        labels: One class per image; given, or from the loader, they name the probe's classes. Without
            them: seeded random labels, as for a flat calibration folder.
        num_classes: The probe's class count (default: from the labels).
        arch: The timm architecture name, for the fresh reference and the init.
        tau: The ReDo dormant threshold.
        seed: Seeds the random labels, the probe head and the fresh reference.
        batch_size: Images per forward pass.
        max_images: At most this many images.
        reference: Score each layer by its excess over the same architecture freshly initialised,
            beyond that layer's own seed-to-seed spread over three fresh draws on 16 of the images
            (default: when the architecture is known); ``True`` without one is an error.
        progress: Called with (phase, done, total) image counts (optimizer steps for the trial).
        trial: Race the candidate starts and rates on these images and their labels (docs/commands.md, "The
            trial"); the model itself is not trained (candidates are copies).
        trial_budget: The trial's optimizer steps per candidate (default: 4 passes, 40 to 400).
        reference_images: Measure the fresh reference on this many of the images (seeded, spread over
            the labels; default: all).

    Returns:
        A ``DiagnoseReport``; ``to_dict()`` is the ``plastic diagnose --json`` document.

    Raises:
        DataError: no image to measure; UsageError: an option out of range.

    Example:
        >>> import timm, torch, plastic
        >>> model = timm.create_model("test_resnet", num_classes=10)
        >>> images = torch.randn(16, 3, 32, 32)  # preprocessed, as the model's data config says
        >>> report = plastic.diagnose_model(model, images, labels=[i % 4 for i in range(16)])
        >>> report.recommendation.action
        'finetune'
    """
    from plastic.documents.validation import check_diagnose_options
    from plastic.measure.calib import resolve_data_config

    check_diagnose_options(
        device="auto", max_images=max_images, batch_size=batch_size, workers=0, tau=tau, seed=seed,
        reference_images=reference_images,
    )  # fmt: skip
    t0 = time.perf_counter()
    x, y = _collect(images, labels, max_images)
    param = next(model.parameters(), None)
    dev = param.device if param is not None else torch.device("cpu")
    ckpt = checkpoint_view(model, arch)
    keys = classifier_keys_of(model)
    classes_out = num_classes_of_model(model)
    name = ckpt.arch or type(model).__name__
    spec = model_spec(model, ckpt)
    built = BuiltModel(model, name, "option" if arch else "model", [], classes_out, keys, [], spec)
    ref_model = None
    if reference is None:
        reference = ckpt.arch is not None
    if reference:
        if spec is None:
            raise UsageError("reference=True needs arch= (the architecture to initialise fresh)")
        from plastic.model.init_values import fresh_model

        chans = int(x.shape[1])
        ref_spec = dataclasses.replace(spec, in_chans=chans if chans != 3 else None)
        ref_model = fresh_model(ref_spec, seed=seed).to(dev)
    if y is None:
        probe_labels, n_classes = probe_targets(None, [], len(x), seed)
        class_names: list[str] = []
    else:
        n_classes = max(num_classes or int(y.max()) + 1, 2)
        probe_labels, class_names = y, [str(i) for i in range(n_classes)]
    notes: list[str] = []
    if not reference:
        notes.append("no fresh reference (unknown architecture, or reference=False): absolute scores")
    t_build = time.perf_counter() - t0

    def batches(size: int) -> Batches:
        for i in range(0, len(x), size):
            yield list(range(i, min(i + size, len(x)))), x[i : i + size], []

    models = [model] if ref_model is None else [model, ref_model]
    t1 = time.perf_counter()
    with full_float32():
        subset = reference_subset(None if y is None else y.tolist(), len(x), reference_images, seed)
        subsets = None if subset is None or ref_model is None else (None, subset)
        settings = PassSettings(probe_labels, n_classes, len(x), batch_size, seed, dev, False, subsets)
        done, batch_size = one_pass(models, batches, settings, progress, notes)
        t_pass = time.perf_counter() - t1
        spread = None
        if ref_model is not None:  # the reference's seed-to-seed spread, on a few of the images
            idx = spread_images(None if y is None else y.tolist(), len(x), seed)
            few = x[idx]  # (k, C, H, W)

            def few_batches(size: int) -> Batches:
                for i in range(0, len(few), size):
                    yield list(range(i, min(i + size, len(few)))), few[i : i + size], []

            spread = measure_spread(
                model, ref_model, lambda s: fresh_model(ref_spec, seed=s).to(dev), few_batches, settings, idx,
                batch_size, keys, tau, progress, notes,
            )  # fmt: skip
    t_spread = time.perf_counter() - t1 - t_pass
    calibration = Calibration(
        Path("<images>"), len(x), len(done.used), [], "given" if y is not None else "random", class_names
    )
    base = resolve_data_config(model, {}) if ckpt.arch is not None else None
    cfg = DataConfig(
        (int(x.shape[1]), int(x.shape[2]), int(x.shape[3])),
        base.mean if base else (), base.std if base else (), base.interpolation if base else "",
        base.crop_pct if base else 1.0, base.crop_mode if base else "", "caller's tensors",
    )  # fmt: skip
    opts = DiagnoseOptions(max_images=max_images, tau=tau, seed=seed, reference=bool(reference),
                           reference_images=reference_images)  # fmt: skip
    options = opts.recorded(batch_size)
    report = assemble(
        ckpt, built, ref_model, done, calibration=calibration, cfg=cfg, device=str(dev), amp=False, tau=tau,
        options=options, notes=notes, timing={"build_s": t_build, "pass_s": t_pass, "spread_s": t_spread},
        spread=spread,
    )  # fmt: skip
    report.timing["total_s"] = time.perf_counter() - t0
    if report.recommendation is not None:
        report.recommendation.commands = []  # no file to name: reinit_model(model, report) carries it out
    if trial:
        if y is None:
            raise UsageError("trial=True needs labels: pass labels= or (images, labels) batches")
        from plastic.measure.finetune import LabelledImages
        from plastic.pipelines.trial import trial_step

        labelled = LabelledImages.from_tensors(x, y, class_names)
        trial_step(report, model, labelled, source=Path("<images>"), seed=seed, budget=trial_budget,
                   device=dev, progress=progress, commands=None)  # fmt: skip
    return report
