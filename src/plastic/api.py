"""The public API: what ``import plastic`` offers, flat, like safetensors' ``load_file``/``save_file``.

Three file-level functions mirror the three commands and return the same results, as dataclasses whose
``to_dict()`` is exactly the command's ``--json`` document; two live-model functions do the same for a
model in memory. Each is a thin door into the one implementation the command line uses too. Everything
here is imported lazily by ``plastic/__init__.py``, so ``import plastic`` stays cheap (no torch).
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plastic.measure.defaults import DEFAULT_BATCH_SIZE, DEFAULT_DEVICE, DEFAULT_MAX_IMAGES, DEFAULT_TAU
from plastic.reinit.options import Options

if TYPE_CHECKING:
    from plastic.pipelines.diagnose import DiagnoseReport
    from plastic.pipelines.inspect import InspectReport
    from plastic.pipelines.manifest import ReinitResult

__all__ = ["diagnose_checkpoint", "inspect_checkpoint", "reinit_checkpoint"]


def inspect_checkpoint(
    path: str | Path,
    *,
    key: str | None = None,
    arch: str | None = None,
    stats: bool = True,
    layer_filter: str | None = None,
    skip: Collection[str] = (),
    stable_rank: bool = False,
) -> InspectReport:
    """What is inside a checkpoint: tensors grouped into layers, dtypes, parameter counts and data-free
    weight statistics, read one tensor at a time (a safetensors file never imports torch).

    Args:
        path: A ``.safetensors`` file, a sharded ``*.safetensors.index.json`` (or its folder), a
            ``.pt``/``.pth``/``.pth.tar``/``.bin``/``.ckpt`` file (loaded with ``weights_only=True``), or
            a hub folder.
        key: The entry of a training checkpoint that holds the weights (``state_dict``,
            ``model_ema``...); found by itself when there is one obvious candidate.
        arch: A timm architecture name, when the file's own (metadata, ``config.json``) is wrong or
            missing.
        stats: Compute the statistics (reads every tensor); ``False`` reads the header only.
        layer_filter: A glob on layer or tensor names: only those layers are listed and read.
        skip: Metric names not to compute (reported as ``None``).
        stable_rank: Also compute ``weight_stable_rank`` (costs more than all the others together).

    Returns:
        An ``InspectReport``; ``report.to_dict()`` is the ``plastic inspect --json`` document.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or of an unknown kind.
        UnsafeCheckpointError: a pickle would need to run code to load.
        UsageError: an option names something that does not exist.

    Example:
        >>> import plastic
        >>> report = plastic.inspect_checkpoint("sample_checkpoints/test_resnet.mnist.safetensors")
        >>> report.totals.parameters
        373658
        >>> report.to_dict()["checkpoint"]["format"]
        'safetensors'
    """
    from plastic.pipelines.inspect import inspect_checkpoint as run

    return run(
        path, key=key, arch=arch, stats=stats, layer_filter=layer_filter, skip=skip, stable_rank=stable_rank
    )


def diagnose_checkpoint(
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
    in_chans: int | None = None,
    reference: bool = True,
) -> DiagnoseReport:
    """Run calibration images through a checkpoint's model and score every layer's loss of plasticity
    against the same architecture freshly initialised, with a recommendation.

    Args:
        path: The checkpoint (any layout ``inspect_checkpoint`` reads).
        data: A folder of calibration images from the target dataset; class subfolders give labels.
        key: The entry of a training checkpoint that holds the weights.
        arch: A timm architecture name; otherwise the file's, else recognised from its tensors.
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
        in_chans: Input channels (1: grayscale); default: the config's, else the stem's.
        reference: Score each layer by its excess over a fresh model (``False``: absolute scores).

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
    from plastic.pipelines.diagnose import diagnose

    return diagnose(
        path, data, key=key, arch=arch, device=device, amp=amp, max_images=max_images,
        batch_size=batch_size, workers=workers, tau=tau, seed=seed, input_size=input_size, mean=mean,
        std=std, in_chans=in_chans, reference=reference,
    )  # fmt: skip


def reinit_checkpoint(
    path: str | Path | None,
    strategy: str = "auto",
    output: str | Path | None = None,
    *,
    report: DiagnoseReport | dict[str, Any] | None = None,
    options: Options | None = None,
    data: str | Path | None = None,
    key: str | None = None,
    arch: str | None = None,
    in_chans: int | None = None,
    force: bool = False,
    dry_run: bool = False,
    keep_extra: bool = False,
    device: str = DEFAULT_DEVICE,
    max_images: int = DEFAULT_MAX_IMAGES,
    workers: int = 0,
    tau: float = DEFAULT_TAU,
) -> ReinitResult:
    """Write a new checkpoint with the strategy's layers, units or weights re-initialized by the
    architecture's own init (replayed per tensor); every other tensor is copied bit-identical.

    Args:
        path: The checkpoint; ``None`` takes the one the report names.
        strategy: A name from ``list_strategies()``; ``"auto"`` follows the report's recommendation.
        output: The new file (``.safetensors`` or ``.pt``/``.pth``/``.bin``/``.ckpt``); written
            atomically, never over an input. May be ``None`` with ``dry_run``.
        report: What ``diagnose_checkpoint`` returned, or its ``to_dict()`` document (read back from
            ``plastic diagnose --json``); the strategies that rank layers need one, or ``data``.
        options: Strategy options (``k``, ``from_block``, ``value``, ``seed``...); an option the
            strategy does not read, set away from its default, is refused.
        data: A calibration folder: run the diagnosis here when the strategy needs one and no report
            is given (and the gradient probe of ``Options(utility="gradient")``).
        key: The entry of a training checkpoint that holds the weights.
        arch: A timm architecture name (the report's, when there is one).
        in_chans: Input channels, as for ``diagnose_checkpoint``.
        force: Overwrite an existing output (never an input without it).
        dry_run: Plan and report what would change; write nothing.
        keep_extra: PyTorch containers: keep optimizer state and other entries.
        device: For a diagnosis or gradient probe run here.
        max_images: For a diagnosis or gradient probe run here.
        workers: For a diagnosis or gradient probe run here.
        tau: For a diagnosis run here.

    Returns:
        A ``ReinitResult`` (what changed, the seed, where the new values came from);
        ``result.to_dict()`` is the ``plastic reinit --json`` manifest.

    Raises:
        UsageError: an unknown strategy, an option it does not read, a stale or malformed report.
        OutputError: the output would replace an input, or exists without ``force``.
        CheckpointError, ArchitectureError: as for ``diagnose_checkpoint``.

    Example:
        >>> import plastic
        >>> result = plastic.reinit_checkpoint(
        ...     "sample_checkpoints/test_resnet.mnist.safetensors", "head", "resnet.head.safetensors")
        >>> [c["tensor"] for c in result.changed]
        ['fc.bias', 'fc.weight']
        >>> result.to_dict()["unchanged_tensors"]
        90
    """
    from plastic.pipelines.diagnose import DiagnoseReport
    from plastic.pipelines.reinit import reinit

    doc = report.to_dict() if isinstance(report, DiagnoseReport) else report
    return reinit(
        path, strategy=strategy, output=output, options=options or Options(), report=doc,  # type: ignore[arg-type]
        data=data, key=key, arch=arch, force=force, dry_run=dry_run, keep_extra=keep_extra, in_chans=in_chans,
        diagnose_options={"device": device, "max_images": max_images, "workers": workers, "tau": tau},
    )  # fmt: skip
