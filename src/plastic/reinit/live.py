"""``reinit_model``: re-initialize a model in memory, in place, with the same strategies, the same
plans and the same new values as ``plastic reinit`` writes to a file (one implementation: the strategy
reads a view of the model's own state dict, and the values are copied into its tensors)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from plastic.documents.reports import diagnose_dict, validate_report
from plastic.errors import ArchitectureError, UsageError
from plastic.measure.diagnosis import DiagnoseReport
from plastic.measure.live import checkpoint_view
from plastic.model.build import compare_names, mismatch_message
from plastic.model.init_values import fresh_model, recorded_model
from plastic.model.structure import analyse
from plastic.reinit.options import Need, Options
from plastic.reinit.run import ReinitResult, _check_dtypes, _init_source, _manifest, _values
from plastic.reinit.strategies import Context, get_strategy


def reinit_model(
    model: nn.Module,
    strategy: str = "auto",
    *,
    report: DiagnoseReport | dict[str, Any] | None = None,
    options: Options | None = None,
    arch: str | None = None,
) -> ReinitResult:
    """Re-initialize ``model`` in place and say what changed. ``report``: what ``diagnose_model`` (or
    ``plastic diagnose --json``) found, for the strategies that rank layers (auto, topk-layers,
    dormant-units). ``arch`` (or a timm model, which records it) gives the architecture's own init;
    without one, PyTorch's default per tensor role. Same model, report, strategy and seed: the same
    values as the file written by ``plastic reinit``."""
    from plastic.documents.validation import check_reinit_options

    options = options or Options()
    check_reinit_options(options)
    info = get_strategy(strategy)
    if "value" in info.uses and options.value not in info.values:
        raise UsageError(
            f"value {str(options.value)!r} does not apply to {strategy}; choose {', '.join(info.values)}"
        )
    doc = diagnose_dict(report) if isinstance(report, DiagnoseReport) else report
    if doc is not None:
        doc = validate_report(doc)
    if info.wants(Need.REPORT, options) and doc is None:
        raise UsageError(f"strategy {strategy!r} ranks layers: pass report=diagnose_model(model, images)")
    if info.wants(Need.GRADIENTS, options):
        raise UsageError("utility 'gradient' needs calibration images: use 'magnitude' or 'random' in memory")
    ckpt = checkpoint_view(model, arch)
    notes: list[str] = []
    if doc is not None:
        modules = {t.name.rpartition(".")[0] for t in ckpt.tensors}
        foreign = [la["name"] for la in doc["layers"] if la["name"] not in modules]
        if foreign:
            raise UsageError(f"the report's layers are not in this model (e.g. {foreign[0]})")
    recording, classes = None, 0
    if ckpt.arch is not None:
        head = [t for t in ckpt.tensors if t.name.endswith("weight") and len(t.shape) >= 2]
        from plastic.measure.live import classifier_keys_of

        keys = [k for k in classifier_keys_of(model) if k.endswith("weight")]
        classes = ckpt.by_name[keys[0]].shape[0] if keys else (head[-1].shape[0] if head else 0)
        recording = recorded_model(ckpt.arch, classes, ckpt.in_chans)
        missing, unexpected, shaped = compare_names(recording.model, ckpt)
        if missing or unexpected or shaped:
            raise ArchitectureError(mismatch_message(ckpt.arch, missing, unexpected, shaped) + "; pass arch=")
    arch_name = ckpt.arch
    structure = None
    mode = model.training
    try:
        if info.wants(Need.LOADED, options):
            structure = analyse(model)  # completeness is checked on the model's own weights
        elif recording is not None and arch_name is not None:
            name, seed = arch_name, options.seed
            structure = analyse(recording.model, materialise=lambda: fresh_model(name, classes, seed))
        plan = info.fn(Context(ckpt, options, doc, structure))
    finally:
        model.train(mode)  # analyse() puts the model it reads in eval mode
    _check_dtypes(ckpt, plan)
    source = _init_source(arch_name, classes, ckpt, plan, recording, options.seed, notes)
    result = _manifest(ckpt, plan, source, options, strategy, None, notes, dry_run=False)
    values = _values(ckpt, plan, source, options)
    with torch.no_grad():
        for tensor_info in ckpt.tensors:
            new = values(tensor_info)
            if new is not None:
                ckpt.tensor(tensor_info.name).copy_(new)  # the model's own parameter or buffer
    return result
