"""``plastic diagnose``: per-layer (and per-block) loss-of-plasticity statistics on calibration images."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plastic.decide.recommend import Recommendation, recommend
from plastic.decide.score import components, saturation_score
from plastic.documents.validation import pick_device
from plastic.errors import DataError
from plastic.files.checkpoint import Checkpoint, open_checkpoint
from plastic.measure.calib import (
    CalibSet,
    DataConfig,
    calib_batches,
    resolve_data_config,
    scan_folder,
)
from plastic.measure.data_metrics import attn_entropy, dormant_units, rank_ceiling, site_metrics
from plastic.measure.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE,
    DEFAULT_MAX_IMAGES,
    DEFAULT_TAU,
    DiagnoseOptions,
)
from plastic.measure.finetune import load_labelled
from plastic.measure.onepass import (
    Batches,
    Measured,
    PassResult,
    PassSettings,
    Progress,
    full_float32,
    one_pass,
    probe_targets,
    reference_subset,
)
from plastic.measure.refcache import CachedReference, reference_key
from plastic.measure.refcache import load as load_reference
from plastic.measure.refcache import store as store_reference
from plastic.measure.spread import grad_median, layer_spread, spread_images, spread_seeds
from plastic.model.backends import model_groups
from plastic.model.build import BuiltModel, build_model, common_components
from plastic.model.heads import check_heads
from plastic.model.init_values import fresh_model
from plastic.model.modules import layers_of
from plastic.model.structure import input_channels
from plastic.pipelines.commands import reinit_commands
from plastic.pipelines.repair import nonfinite_layers, nonfinite_note, repair_first
from plastic.pipelines.report import (
    BlockDiagnosis,
    Calibration,
    DiagnoseReport,
    LayerDiagnosis,
    StageDiagnosis,
)
from plastic.pipelines.trial import trial_folder, trial_step


def diagnose(
    path: str | Path,
    data: str | Path,
    *,
    key: str | None = None,
    arch: str | None = None,
    device: str = DEFAULT_DEVICE,
    amp: bool = False,
    max_images: int = DEFAULT_MAX_IMAGES,
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: int = 0,
    tau: float = DEFAULT_TAU,
    seed: int = 0,
    input_size: tuple[int, int, int] | None = None,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
    progress: Progress | None = None,
    in_chans: int | None = None,
    reference: bool = True,
    trial: bool = False,
    trial_data: str | Path | None = None,
    trial_budget: int | None = None,
    reference_images: int | None = None,
    cache: bool = True,
) -> DiagnoseReport:
    """Run calibration images through a checkpoint's model and score every layer's loss of plasticity
    against the same architecture freshly initialised, with a recommendation.

    Args:
        path: The checkpoint (any layout ``inspect_checkpoint`` reads).
        data: A folder of calibration images from the target dataset; class subfolders give labels.
        key: The entry of a training checkpoint that holds the weights.
        arch: The architecture (a timm name, ``torchvision:NAME``, ``transformers:CLASS``); otherwise
            the file's, else recognised from its tensors.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
        amp: bf16 autocast on CUDA.
        max_images: At most this many images (a seeded sample spread over the classes).
        batch_size: Images decoded per batch.
        workers: Decoder processes (0..64; at most one per core and per batch start).
        tau: The ReDo dormant threshold.
        seed: Seeds the image sample, random labels, the probe head and the fresh reference.
        input_size: ``(channels, height, width)``; default: the file's config, else timm's.
        mean: Normalisation mean per channel; default as ``input_size``.
        std: Normalisation std per channel; default as ``input_size``.
        progress: Called with (phase, images done, images total) during the pass.
        in_chans: Input channels (1: grayscale); default: the config's, else the stem's.
        reference: Score each layer by its excess over a fresh model, beyond that layer's own
            seed-to-seed spread over three fresh draws on 16 of the images (``False``: absolute scores).
        reference_images: Measure the fresh reference on this many of the images (a seeded sample
            spread over the classes; default: all of them), which saves most of its cost.
        cache: Read the fresh reference's metrics from the user's cache when an earlier run measured
            the same architecture on the same images with the same settings, and store them after a
            run that measured them (``measure/refcache.py`` says where and how they are keyed).
        trial: After the statistics, race the candidate starts and rates in short fine-tuning runs on
            the labelled images and follow the winner when it is clearly better (docs/commands.md,
            "The trial").
        trial_data: A class-subfolder folder for the trial (default: ``data``); implies ``trial``.
        trial_budget: The trial's full budget per candidate in optimizer steps (default: 4 passes over
            its training part, 40 to 400).

    Returns:
        A ``DiagnoseReport`` (layers, blocks, stages, ``recommendation``); ``report.to_dict()`` is the
        ``plastic diagnose --json`` document, which ``reinit_checkpoint`` also takes.

    Raises:
        CheckpointError, ArchitectureError: the checkpoint cannot be read or its model built.
        DataError: no calibration image could be read.
        DeviceError: the device asked for is not there.
        ResourceError: out of memory (lower ``batch_size`` or ``max_images``).
        UsageError: an option is out of range.

    Example:
        >>> import plastic
        >>> report = plastic.diagnose_checkpoint(
        ...     "sample_checkpoints/test_resnet.mnist.safetensors", "sample_checkpoints/calib",
        ...     device="cpu", max_images=16)
        >>> report.recommendation.action in ("reinit", "finetune")
        True
        >>> report.to_dict()["command"]
        'diagnose'
    """
    opts = DiagnoseOptions(
        key=key, arch=arch, in_chans=in_chans, device=device, amp=amp, max_images=max_images,
        batch_size=batch_size, workers=workers, tau=tau, seed=seed, input_size=input_size, mean=mean, std=std,
        reference=reference, reference_images=reference_images, cache=cache, trial=trial,
        trial_data=trial_data, trial_budget=trial_budget,
    )  # fmt: skip
    return run_diagnosis(path, data, opts, progress)


def run_diagnosis(
    path: str | Path, data: str | Path, opts: DiagnoseOptions, progress: Progress | None = None
) -> DiagnoseReport:
    """``diagnose_checkpoint`` with its options in one object (what ``reinit`` runs for a report)."""
    with full_float32():
        return _diagnose(path, data, opts, progress)


def _diagnose(
    path: str | Path, data: str | Path, opts: DiagnoseOptions, progress: Progress | None
) -> DiagnoseReport:
    """The steps: check, build (checkpoint, architecture, model, preprocessing), the one data pass,
    the layer and block tables, the recommendation."""
    opts.check(progress)
    t0 = time.perf_counter()
    seed, tau, batch_size, reference_images = opts.seed, opts.tau, opts.batch_size, opts.reference_images
    dev = pick_device(opts.device)
    calib = scan_folder(data, max_images=opts.max_images, seed=seed)
    # the trial's folder is refused (no labels, one class, too few a class) before the pass
    race = trial_folder(calib, opts.trial_data, opts.trial_budget, seed) if opts.wants_trial else None
    ckpt, built, cfg = _build(path, opts, calib)
    notes = [*ckpt.notes, *built.notes]
    use_amp = opts.amp and dev.type == "cuda"
    if opts.amp and not use_amp:
        notes.append("--amp applies to CUDA only; running in float32 on the CPU")
    model = built.model.to(dev)
    if race is not None:
        check_heads(model)  # a backbone is refused before the pass, not after it
    # the reference: the same architecture freshly initialised with its own timm init (seeded), measured
    # in the same pass on the same batches: what a healthy layer shows on these images. Each component
    # of the score is the excess over it (docs/commands.md, "The saturation score")
    assert built.spec is not None
    cache_key: dict[str, Any] | None = None
    cached: CachedReference | None = None
    if opts.reference and opts.cache:  # an earlier run may have measured this very reference
        cache_key = reference_key(
            built.spec, cfg, calib, seed=seed, tau=tau, batch_size=batch_size, device=dev.type, amp=use_amp,
            reference_images=reference_images,
        )  # fmt: skip
        cached = load_reference(cache_key, set(layers_of(model)))
    reference = fresh_model(built.spec, seed=seed).to(dev) if opts.reference and cached is None else None
    t_build = time.perf_counter() - t0

    t1 = time.perf_counter()
    models = [model] if reference is None else [model, reference]
    labels, n_classes = probe_targets(calib.labels, calib.class_names, len(calib.files), seed)
    subset = reference_subset(calib.labels, len(calib.files), reference_images, seed)
    subsets = None if subset is None or reference is None else (None, subset)
    settings = PassSettings(labels, n_classes, len(calib.files), batch_size, seed, dev, use_amp, subsets)
    done, batch_size = one_pass(
        models, lambda bs: calib_batches(calib, cfg, bs, opts.workers), settings, progress, notes
    )
    t_pass = time.perf_counter() - t1
    calib.skipped = [*calib.skipped, *((calib.files[i], why) for i, why in done.skipped)]
    if not done.used:
        raise DataError(f"{calib.root}: none of the {len(calib.files)} images could be read")
    spread, t_spread = None, 0.0
    if reference is not None:  # the reference's seed-to-seed spread, on a few of the images
        t2 = time.perf_counter()
        idx = spread_images(calib.labels, len(calib.files), seed)
        few = dataclasses.replace(
            calib, files=[calib.files[i] for i in idx], skipped=[],
            labels=None if calib.labels is None else [calib.labels[i] for i in idx],
        )  # fmt: skip
        spread = measure_spread(
            model, reference, lambda s: fresh_model(built.spec, seed=s).to(dev),  # type: ignore[arg-type]
            lambda bs: calib_batches(few, cfg, bs, opts.workers), settings, idx, batch_size,
            built.classifier_keys, tau, progress, notes,
        )  # fmt: skip
        t_spread = time.perf_counter() - t2
    elif cached is not None:
        spread = cached.spread
    labelled = "subfolders" if calib.labels is not None else "random"
    calibration = Calibration(
        calib.root, calib.found, len(done.used), calib.skipped, labelled, calib.class_names
    )
    options = opts.recorded(batch_size)
    report = assemble(
        ckpt, built, reference, done, calibration=calibration, cfg=cfg, device=str(dev), amp=use_amp,
        tau=tau, options=options, notes=notes, cached=cached, spread=spread,
        timing={"build_s": t_build, "pass_s": t_pass, "spread_s": t_spread},
    )  # fmt: skip
    report.timing["reference_cached"] = int(cached is not None)
    if cache_key is not None and cached is None and calibration.reference_images is not None:
        table = {la.name: la.reference for la in report.layers}
        store_reference(cache_key, CachedReference(table, calibration.reference_images, spread))
    if not opts.reference:
        notes.append("--no-reference: absolute scores (a fresh model's layers can score above 0)")
    if race is not None:
        images = load_labelled(race, cfg)  # decoded once, with the model's preprocessing
        trial_step(report, model, images, source=race.root, seed=seed, budget=opts.trial_budget, device=dev,
                   progress=progress, commands=_commands_for(built, ckpt))  # fmt: skip
    report.timing["total_s"] = time.perf_counter() - t0
    return report


def assemble(
    ckpt: Checkpoint, built: BuiltModel, reference: nn.Module | None, done: PassResult, *,
    calibration: Calibration, cfg: DataConfig, device: str, amp: bool, tau: float, options: dict[str, Any],
    notes: list[str], timing: dict[str, float], cached: CachedReference | None = None,
    spread: dict[str, dict[str, float | None]] | None = None,
) -> DiagnoseReport:  # fmt: skip
    """The report from a finished pass: the layer and block tables, the timing, the recommendation.
    ``spread``: the reference's seed-to-seed spread per layer (:func:`measure_spread`), when measured."""
    t3 = time.perf_counter()
    measured = done.measured[0]
    ref_table, ref_images = None, None
    if cached is not None:  # the same reference, measured by an earlier run (measure/refcache.py)
        ref_table, ref_images = cached.layers, cached.images
    elif reference is not None:
        ref = done.measured[1]
        ref_table, ref_images = reference_table(built.model, reference, ref, tau, measured.images), ref.images
    calibration.reference_images = ref_images
    if ref_images is not None and ref_images < measured.images:
        notes.append(
            f"the fresh reference measured {ref_images} of the {measured.images} images "
            "(--reference-images): its feature ranks are left out (a rank on fewer images is lower)"
        )
    keys, used = built.classifier_keys, len(done.used)
    layers = _layer_table(built.model, measured, ref_table, keys, tau, used, spread)
    blocks = _block_table(built.model, layers)
    stages = _stage_table(built.model, layers)
    broken = nonfinite_note(built.model, layers)
    t_pass, t_spread = timing["pass_s"], timing.get("spread_s", 0.0)
    timing = {
        "build_s": timing["build_s"],  # checkpoint read, architecture decided, model (and reference) built
        "pass_s": t_pass,  # decode + each model's forward and backward
        "spread_s": t_spread,  # the reference's three draws on a few images (0 from the cache)
        "stats_s": t_pass,  # schema 1 name: statistics and gradients are now measured in one pass
        "gradients_s": 0.0,  # schema 1 name: no separate gradient pass any more
        "metrics_s": time.perf_counter() - t3,  # reductions, ranks, saturation derivatives, scores, blocks
        "total_s": timing["build_s"] + t_pass + t_spread,
        "images_per_s": len(done.used) / t_pass if t_pass > 0 else 0.0,
        "threads": torch.get_num_threads(),  # torch's intra-op threads: CPU figures depend on them
    }
    rec = _recommendation(layers, stages, calibration, built, ckpt, notes)
    if broken:  # NaN or inf weights: repairing them comes before any verdict from the statistics
        notes.append(broken)
        rec = repair_first(rec, nonfinite_layers(built.model), _commands_for(built, ckpt))
    return DiagnoseReport(
        ckpt, built.arch, built.arch_source, built.candidates, device, amp, cfg, calibration,
        layers, blocks, timing, options, notes, rec, stages, built.certainty, built.evidence,
    )  # fmt: skip


def _build(
    path: str | Path, opts: DiagnoseOptions, calib: CalibSet
) -> tuple[Checkpoint, BuiltModel, DataConfig]:
    """The checkpoint (fingerprinted), the timm model with its weights, and its preprocessing. Look-alike
    architectures are told apart on a few calibration images."""
    with open_checkpoint(path, key=opts.key, arch=opts.arch, in_chans=opts.in_chans) as ckpt:

        def config(model: nn.Module) -> DataConfig:
            chans = input_channels(model)  # the channels the model was built for: given, or the stem's
            return resolve_data_config(
                model, ckpt.metadata, input_size=opts.input_size, mean=opts.mean, std=opts.std, hub=ckpt.hub,
                in_chans=chans if chans != 3 else None,
            )  # fmt: skip

        def tie_images(model: nn.Module) -> torch.Tensor | None:
            """Up to 32 calibration images, preprocessed for ``model``: evidence between look-alikes."""
            few = dataclasses.replace(calib, files=calib.files[:32], skipped=[])
            for _idx, x, _bad in calib_batches(few, config(model), 32):
                if x is not None:
                    return x
            return None

        ckpt.hash_in_background()  # the report's identity: reinit refuses it for a file with other contents
        built = build_model(ckpt, images=tie_images)
        ckpt.compute_sha256()
    assert built.checkpoint is not None
    return built.checkpoint, built, config(built.model)


MIN_IMAGES = 32  # fewer usable calibration images than this: scores too noisy to act on with confidence


def _recommendation(
    layers: list[LayerDiagnosis], stages: list[StageDiagnosis], cal: Calibration, built: Any,
    ckpt: Checkpoint, notes: list[str],
) -> Recommendation:  # fmt: skip
    """The rule's verdict, how sure it is given the calibration set, and commands that carry it out."""
    rec = recommend([vars(la) for la in layers], [vars(st) for st in stages])
    small = cal.images_used < MIN_IMAGES
    few_per_class = cal.labels in ("subfolders", "given") and cal.images_used < 2 * max(len(cal.classes), 1)
    if small or few_per_class:
        rec.confidence = "low"
        notes.append(
            f"only {cal.images_used} usable calibration image(s)"
            + (f" for {len(cal.classes)} classes" if few_per_class else "")
            + f" (fewer than {MIN_IMAGES}, or 2 per class): the scores are noisy; treat the "
            "recommendation as tentative and add images"
        )
    rec.commands = _commands_for(built, ckpt)(rec)
    return rec


def _commands_for(built: Any, ckpt: Checkpoint) -> Callable[[Recommendation], list[str]]:
    """The shell lines that carry out a recommendation on this checkpoint, as they run when pasted."""

    def commands(rec: Recommendation) -> list[str]:
        return reinit_commands(
            rec,
            str(ckpt.path),
            # --arch where reinit could not find it again by itself: the user named it, or the images did
            arch=built.arch if built.arch_source == "option" or len(built.candidates) > 1 else None,
            key=ckpt.container_key,
            in_chans=built.spec.in_chans if built.spec is not None else None,
        )

    return commands


RANK_METRICS = ("feature_erank", "feature_erank_per_unit", "feature_srank99")


def measure_spread(
    model: nn.Module, reference: nn.Module, draw: Callable[[int], nn.Module],
    batches: Callable[[int], Batches], settings: PassSettings, idx: list[int], batch_size: int,
    classifier_keys: list[str], tau: float, progress: Progress | None = None, notes: list[str] | None = None,
) -> dict[str, dict[str, float | None]]:  # fmt: skip
    """Each of ``model``'s layers' seed-to-seed spread (measure/spread.py): ``reference`` and the draws
    ``draw(seed)`` makes, one model at a time (memory: one more model, not two), each in its own pass
    over ``batches``: the images ``idx`` of the main pass's ``settings`` (their labels), in batches of
    ``batch_size``, the size that pass ended with (halved there on CUDA out of memory: not again)."""
    settings = dataclasses.replace(
        settings, labels=settings.labels[idx], total=len(idx), subsets=None, batch_size=batch_size
    )
    head = {k.rpartition(".")[0] for k in classifier_keys}
    body = [name for name in layers_of(model) if name not in head]
    seeds = spread_seeds(settings.seed)
    total = settings.total * (len(seeds) + 1)
    tables = []
    for k, seed in enumerate([None, *seeds]):
        fresh = reference if seed is None else draw(seed)

        def counted(_phase: str, done: int, _total: int, k: int = k) -> None:
            if progress is not None:
                progress("reference spread", k * settings.total + done, total)

        done, _ = one_pass([fresh], batches, settings, counted, notes)
        if not done.measured:  # not one of the images could be read
            return {}
        ref = done.measured[0]
        tables.append(reference_table(model, fresh, ref, tau, ref.images))
        del fresh
    return layer_spread(tables, body)


def reference_table(
    model: nn.Module, reference: nn.Module, ref: Measured, tau: float, images: int
) -> dict[str, dict[str, float | None]]:
    """The fresh model's metrics for each of ``model``'s layers (``{}`` where it has no such layer),
    measured at the same site on the same images; its ranks left out when it saw fewer images than
    the checkpoint (a rank on fewer images is lower by construction: not a reference)."""
    ref_modules = dict(reference.named_modules())
    table: dict[str, dict[str, float | None]] = {}
    for name in layers_of(model):
        metrics = _metrics(name, ref, ref_modules, tau) if name in ref_modules else {}
        if metrics and ref.images < images:
            metrics.update(dict.fromkeys(RANK_METRICS))
        table[name] = metrics
    return table


def _layer_table(
    model: nn.Module,
    measured: Measured,
    ref_table: dict[str, dict[str, float | None]] | None,
    classifier_keys: list[str],
    tau: float,
    n_images: int,
    spread: dict[str, dict[str, float | None]] | None = None,
) -> list[LayerDiagnosis]:
    mods = layers_of(model)
    all_modules = dict(model.named_modules())
    head_layers = {k.rpartition(".")[0] for k in classifier_keys}
    rows: list[LayerDiagnosis] = []
    for name, m in mods.items():
        metrics = _metrics(name, measured, all_modules, tau)
        ref_metrics = dict(ref_table.get(name, {})) if ref_table is not None else {}
        site = measured.capture.sites.get(name)
        units = site.units if site is not None else 0
        params = sum(p.numel() for p in m.parameters(recurse=False))
        site_name = measured.act_sites.get(name, name)
        row = LayerDiagnosis(
            name, type(m).__name__, units, params, site_name, None, name in head_layers, metrics
        )
        row.reference = ref_metrics
        row.reference_spread = dict((spread or {}).get(name, {}))
        row.dormant_units = dormant_units(site, tau) if site is not None else []
        rows.append(row)
    score_rows(rows, n_images)
    ranked = sorted((r for r in rows if not r.classifier and r.score is not None), key=lambda r: -r.score)  # type: ignore[operator]
    for i, r in enumerate(ranked, 1):
        r.rank = i
    return rows


def score_rows(rows: list[LayerDiagnosis], n_images: int) -> None:
    """Each row's components and score from its metrics and its reference's, the gradients taken
    relative to each model's median body layer (``scripts/noise_null.py`` rescores stored reports
    through this same function)."""
    body = [r for r in rows if not r.classifier]
    median = grad_median(g for r in body if (g := r.metrics.get("grad_ratio")) is not None)
    ref_median = grad_median(g for r in body if (g := r.reference.get("grad_ratio")) is not None)
    for r in rows:
        ceiling = rank_ceiling(n_images, r.units)
        r.components = components(
            r.metrics, rank_ceiling=ceiling, grad_median=median, reference=r.reference or None,
            ref_grad_median=ref_median, units=r.units, spread=r.reference_spread or None,
        )  # fmt: skip
        r.score = saturation_score(r.components)


def _metrics(
    name: str, measured: Measured, modules: dict[str, nn.Module], tau: float
) -> dict[str, float | None]:
    """One layer's data metrics from one model's pass."""
    site = measured.capture.sites.get(name)
    act = modules.get(measured.act_sites[name]) if name in measured.act_sites else None
    metrics = site_metrics(site, act, tau) if site is not None else {}
    metrics["grad_ratio"] = measured.grad_ratios.get(name)
    attn = measured.capture.attention.get(name)
    metrics["attn_entropy"] = attn_entropy(attn) if attn is not None else None
    # inf or NaN (non-finite weights upstream, an overflow): not a measurement; null, and the layer
    # is scored on what is left, or not at all
    return {k: v if v is None or math.isfinite(v) else None for k, v in metrics.items()}


def _common_prefix(members: list[str]) -> str:
    return ".".join(common_components(members))


def block_name(members: list[str]) -> str:
    """A timm group named after its layers: their common prefix (``blocks.6.0``), or, for a group that
    spans top-level modules, each one's own common prefix joined (``blocks.6.0+conv_head``)."""
    whole = _common_prefix(members)
    if whole:
        return whole
    by_top: dict[str, list[str]] = {}
    for m in members:
        by_top.setdefault(m.split(".")[0], []).append(m)
    return "+".join(_common_prefix(group) or top for top, group in by_top.items())  # model order


def _grouped(model: nn.Module, layers: Collection[str], coarse: bool) -> Iterator[tuple[int, list[str]]]:
    """(group id, its measured layers in model order) for each of the model's groups (its family
    backend's; timm's ``group_matcher``) that holds any."""
    for gid, members in sorted(model_groups(model, coarse=coarse).items()):
        names = [m for m in members if m in layers]
        if names:
            yield gid, names


def _block_table(model: nn.Module, layers: list[LayerDiagnosis]) -> list[BlockDiagnosis]:
    """The model's grouping (stem / stages / blocks / head, from its family backend; timm's own
    ``group_matcher``) with mean layer scores."""
    by_name = {r.name: r for r in layers}
    blocks = []
    for gid, names in _grouped(model, by_name, coarse=False):
        block = BlockDiagnosis(block_name(names), int(gid), names)  # named after its conv/linear layers
        scores = [
            by_name[n].score for n in names if by_name[n].score is not None and not by_name[n].classifier
        ]
        block.score = sum(scores) / len(scores) if scores else None  # type: ignore[arg-type]
        for n in names:
            by_name[n].block = block.name
        blocks.append(block)
    ranked = sorted((b for b in blocks if b.score is not None), key=lambda b: -b.score)  # type: ignore[operator]
    for i, b in enumerate(ranked, 1):
        b.rank = i
    return blocks


def _stage_table(model: nn.Module, layers: list[LayerDiagnosis]) -> list[StageDiagnosis]:
    """timm's coarse groups (``group_matcher(coarse=True)``: stem, each stage, head) in model order, with
    the highest layer score of each and the ``--from`` name that starts ``from-block`` there."""
    by_name = {r.name: r for r in layers}
    stages = []
    for _gid, names in _grouped(model, by_name, coarse=True):
        first_top = names[0].split(".")[0]
        start = _common_prefix([n for n in names if n.split(".")[0] == first_top]) or names[0]
        scores = [s for n in names if (s := by_name[n].score) is not None and not by_name[n].classifier]
        stages.append(StageDiagnosis(block_name(names), start, names, max(scores) if scores else None))
    return stages


diagnose_checkpoint = diagnose  # the public name (``plastic.diagnose_checkpoint``)
