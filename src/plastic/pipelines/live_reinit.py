"""``reinit_model``: re-initialize a model in memory, in place, with the same strategies, the same
plans and the same new values as ``plastic reinit`` writes to a file (one implementation: the strategy
reads a view of the model's own state dict, and the values are copied into its tensors)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from plastic.documents.reports import validate_report
from plastic.errors import UsageError
from plastic.model.init_values import fresh_model, recorded_model
from plastic.model.structure import analyse
from plastic.pipelines.live_model import checkpoint_view, model_spec
from plastic.pipelines.manifest import ReinitResult, check_names, check_report_layers, manifest
from plastic.pipelines.report import DiagnoseReport
from plastic.reinit.options import Need, Options
from plastic.reinit.strategies import Context, get_strategy
from plastic.reinit.values import check_dtypes, init_source, new_values


def reinit_model(
    model: nn.Module,
    strategy: str = "auto",
    *,
    report: DiagnoseReport | dict[str, Any] | None = None,
    options: Options | None = None,
    arch: str | None = None,
) -> ReinitResult:
    """Re-initialize ``model`` in place and say what changed: the same plans and the same new values as
    the file ``plastic reinit`` writes for the same weights, report, strategy and seed.

    Args:
        model: The model, on any device; its own tensors are changed.
        strategy: A name from ``list_strategies()``; ``"auto"`` follows the report's recommendation.
        report: What ``diagnose_model`` returned (or a ``diagnose --json`` document): needed by the
            strategies that rank layers (auto, topk-layers, dormant-units).
        options: Strategy options; one the strategy does not read, set away from its default, is refused.
        arch: The timm architecture, for its own init (a timm model records it); without one, PyTorch's
            default per tensor role.

    Returns:
        A ``ReinitResult``; ``to_dict()`` is the ``plastic reinit --json`` manifest.

    Raises:
        UsageError: an unknown strategy, an option it does not read, a report for another model.

    Example:
        >>> import timm, torch, plastic
        >>> model = timm.create_model("test_resnet", num_classes=10)
        >>> result = plastic.reinit_model(model, "head")
        >>> [c["tensor"] for c in result.changed]
        ['fc.weight', 'fc.bias']
    """
    from plastic.reinit.options import check_reinit_options

    options = Options() if options is None else options
    check_reinit_options(options)
    info = get_strategy(strategy)
    info.check_value(options, flag="value")
    info.check_options(options)
    doc = report.to_dict() if isinstance(report, DiagnoseReport) else report
    if doc is not None:
        doc = validate_report(doc)
    if info.wants(Need.REPORT, options) and doc is None:
        raise UsageError(f"strategy {strategy!r} ranks layers: pass report=diagnose_model(model, images)")
    if info.wants(Need.GRADIENTS, options):
        raise UsageError("utility 'gradient' needs calibration images: use 'magnitude' or 'random' in memory")
    ckpt = checkpoint_view(model, arch)
    notes: list[str] = []
    if doc is not None:
        check_report_layers(doc, ckpt)
    spec = model_spec(model, ckpt)
    recording = recorded_model(spec) if spec is not None else None
    if spec is not None:
        check_names(
            recording.model if recording is not None else fresh_model(spec, seed=options.seed), ckpt, spec
        )
    structure = None
    mode = model.training
    try:
        if info.wants(Need.LOADED, options) or (spec is not None and recording is None):
            structure = analyse(model)  # completeness is checked on the model's own weights
        elif recording is not None and spec is not None:
            seed, known = options.seed, spec
            structure = analyse(recording.model, materialise=lambda: fresh_model(known, seed=seed))
        plan = info.plan(Context(ckpt, options, doc, structure))
    finally:
        model.train(mode)  # analyse() puts the model it reads in eval mode
    check_dtypes(ckpt, plan)
    source = init_source(spec, ckpt, plan, recording, options.seed, notes)
    result = manifest(ckpt, plan, source, options, strategy, None, notes, dry_run=False)
    values = new_values(ckpt, plan, source, options)
    with torch.no_grad():
        for tensor_info in ckpt.tensors:
            new = values(tensor_info)
            if new is not None:
                ckpt.tensor(tensor_info.name).copy_(new)  # the model's own parameter or buffer
    return result
