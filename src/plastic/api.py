"""``reinit_checkpoint``: the public door to the reinit pipeline, where its arguments differ from the
pipeline's (a report as the dataclass or the dict, the options of a diagnosis run inside as plain
keywords). ``inspect_checkpoint`` and ``diagnose_checkpoint`` are the pipelines' own functions, which
``plastic/__init__.py`` names directly; everything is imported lazily, so ``import plastic`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from plastic.measure.defaults import DEFAULT_DEVICE, DEFAULT_MAX_IMAGES, DEFAULT_TAU, DiagnoseOptions
from plastic.reinit.options import Options

if TYPE_CHECKING:
    from plastic.pipelines.manifest import ReinitResult
    from plastic.pipelines.report import DiagnoseReport

__all__ = ["reinit_checkpoint"]


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
        arch: The architecture (a timm name, ``torchvision:NAME``, ``transformers:CLASS``; the
            report's, when there is one).
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
    from plastic.pipelines.reinit import reinit
    from plastic.pipelines.report import DiagnoseReport

    doc = report.to_dict() if isinstance(report, DiagnoseReport) else report
    return reinit(
        path, strategy=strategy, output=output, options=Options() if options is None else options, report=doc,  # type: ignore[arg-type]
        data=data, key=key, arch=arch, force=force, dry_run=dry_run, keep_extra=keep_extra, in_chans=in_chans,
        diagnose_options=DiagnoseOptions(device=device, max_images=max_images, workers=workers, tau=tau),
    )  # fmt: skip
