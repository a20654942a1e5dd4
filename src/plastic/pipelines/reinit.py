"""``plastic reinit``: plan a strategy's changes, compute the new values, write the new checkpoint."""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from plastic.documents.reports import validate_report
from plastic.documents.schema import DiagnoseDoc
from plastic.errors import ArchitectureError, DataError, UsageError
from plastic.files.atomic import atomic_folder, check_folder_target, check_target
from plastic.files.checkpoint import Checkpoint, open_checkpoint
from plastic.files.writer import LateValue, Target, write_safetensors, write_torch
from plastic.measure.defaults import DiagnoseOptions
from plastic.measure.onepass import Progress
from plastic.model.backends import ArchSpec
from plastic.model.init_replay import InitRecording
from plastic.model.init_values import InitSource, fresh_model, recorded_model
from plastic.model.structure import Structure, analyse
from plastic.pipelines.manifest import (
    SOURCE_SHA256,
    ReinitResult,
    check_names,
    check_report_layers,
    manifest,
    metadata,
)
from plastic.reinit.options import Need, Options, check_reinit_options
from plastic.reinit.strategies import Context, Plan, StrategyInfo, get_strategy
from plastic.reinit.values import check_dtypes, init_source, new_values

SAFETENSORS_SUFFIX = ".safetensors"


def output_format(out: Path, ckpt: Checkpoint | None = None) -> str:
    """``safetensors`` or ``torch``, from the output's extension; ``folder`` for a folder name (no
    extension, or an existing folder) when the input is a hub folder (``config.json`` beside it)."""
    if out.is_dir() or out.suffix == "" or str(out).endswith(("/", os.sep)):
        if ckpt is not None and ckpt.hub is not None:
            return "folder"
        raise UsageError(
            f"-o {out}: a folder output needs a save_pretrained / hub folder as input (its config.json is "
            "copied); give a .safetensors or .pt file name"
        )
    if out.suffix == SAFETENSORS_SUFFIX:
        return "safetensors"
    if out.suffix in (".pt", ".pth", ".bin", ".ckpt", ".tar"):
        return "torch"
    folder = " (or, for a hub folder input, a folder name without an extension)" if ckpt and ckpt.hub else ""
    raise UsageError(f"-o {out}: use a .safetensors, .pt, .pth, .pth.tar, .bin or .ckpt name{folder}")


def _architecture(ckpt: Checkpoint, notes: list[str]) -> tuple[Checkpoint, ArchSpec | None, str]:
    """The checkpoint under the model's names (a wrapper's prefix such as Lightning's ``model.``
    stripped) and the architecture (the option's or the report's, else detected) with its class count;
    None when unknown, which makes new values fall back to PyTorch's defaults per tensor role."""
    from plastic.model.build import resolve_arch

    try:
        res = resolve_arch(ckpt)
        notes.extend(n for n in res.checkpoint.notes if n not in ckpt.notes)  # the view's: names mapped
        notes.extend(res.notes)
    except ArchitectureError as e:
        if ckpt.arch is not None:
            raise
        notes.append(f"architecture unknown ({e}); new values use PyTorch's default init per tensor role")
        return ckpt, None, str(e)
    return res.checkpoint, res.spec, ""


def _report_for(
    ckpt_path: Path, data: Path | None, report: DiagnoseDoc | None, diag: DiagnoseOptions,
    progress: Progress | None,
) -> DiagnoseDoc | None:  # fmt: skip
    if report is not None or data is None:
        return report
    from plastic.pipelines.diagnose import run_diagnosis

    return run_diagnosis(ckpt_path, data, diag, progress).to_dict()


def reinit(
    checkpoint: str | Path | None,
    *,
    strategy: str,
    output: str | Path | None,
    options: Options,
    report: DiagnoseDoc | None = None,
    data: str | Path | None = None,
    key: str | None = None,
    arch: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    keep_extra: bool = False,
    diagnose_options: DiagnoseOptions | None = None,
    inputs: Sequence[Path] = (),
    in_chans: int | None = None,
    progress: Progress | None = None,
) -> ReinitResult:
    """Apply ``strategy`` to ``checkpoint`` (or the report's checkpoint) and write ``output``.

    ``inputs`` are other files the caller read (the report file): the output may never replace one.
    ``progress`` gets (phase, done, total) image counts from a diagnosis or gradient pass run here.
    The steps: settle the request, get the report it needs, open the checkpoint and its output, build
    the strategy's context, plan, find the new values, write.
    """
    info = get_strategy(strategy)
    req = _settle(
        info, options, checkpoint, output, report, data, key, arch, in_chans, dry_run,
        diagnose_options or DiagnoseOptions(), progress,
    )  # fmt: skip
    if info.wants(Need.REPORT, options):
        req.report = _report_for(req.path, req.data, req.report, req.diag, req.progress)
    notes: list[str] = []
    with open_checkpoint(req.path, key=req.key, arch=req.arch, in_chans=req.in_chans) as opened:
        notes.extend(opened.notes)
        fmt = _open_output(opened, req, inputs, force=force, dry_run=dry_run)
        ckpt, spec, unknown = _architecture(opened, notes)  # ckpt: the file under the model's names
        _check_report(req.report, ckpt, notes)
        ctx, recording = _context(ckpt, info, options, req, spec, unknown)
        plan = info.plan(ctx)
        check_dtypes(ckpt, plan)
        if ctx.structure is not None:
            ctx.structure.release()  # drop the probe model before writing
        source = init_source(spec, ckpt, plan, recording, options.seed, notes)
        result = manifest(ckpt, plan, source, options, strategy, req.out, notes, dry_run)
        if not plan.changes:
            result.notes.append("the strategy selected nothing: the output equals the input")
        if not dry_run and req.out is not None and fmt is not None:
            _write(
                ckpt, plan, source, options, result, Target(req.out, force, _mode_of(ckpt)), fmt, keep_extra
            )
    return result


@dataclass
class _Request:
    """What reinit was asked for, settled: which file, under which names, with which inputs."""

    path: Path
    key: str | None
    arch: str | None
    in_chans: int | None
    out: Path | None
    data: Path | None
    report: DiagnoseDoc | None
    diag: DiagnoseOptions  # the options of a diagnosis or gradient pass run here
    progress: Progress | None


def _settle(
    info: StrategyInfo, options: Options, checkpoint: str | Path | None, output: str | Path | None,
    report: DiagnoseDoc | None, data: str | Path | None, key: str | None, arch: str | None,
    in_chans: int | None, dry_run: bool, given: DiagnoseOptions, progress: Progress | None,
) -> _Request:  # fmt: skip
    """Check every option, then fill what the report knows (checkpoint, key, architecture, channels,
    calibration folder) where the caller left it open."""
    check_reinit_options(options)
    # the same checks as diagnose's, for a diagnosis or probe run here
    dataclasses.replace(given, seed=options.seed, in_chans=in_chans, arch=arch).check(progress)
    if report is not None:
        validate_report(report)
    info.check_value(options)
    info.check_options(options)
    if checkpoint is None:
        if report is None:
            raise UsageError(
                "no checkpoint: give CKPT, --report FILE, or pipe `plastic diagnose --json` into reinit"
            )
        checkpoint = report["checkpoint"]["path"]
        key = key or report["checkpoint"].get("container_key")
    size = (report.get("data_config") or {}).get("input_size") if report is not None else None
    if in_chans is None and isinstance(size, list) and size and isinstance(size[0], int) and size[0] != 3:
        in_chans = int(size[0])  # the channels diagnose ran the model with
    if report is not None and arch is None and (report.get("arch") or {}).get("name"):
        arch = str(report["arch"]["name"])  # the architecture diagnose ran, not a second guess
    if output is None and not dry_run:
        raise UsageError("-o OUT is required (or --dry-run)")
    data_path = Path(data) if data is not None else None
    if data_path is None and report is not None and info.wants(Need.GRADIENTS, options):
        folder = (report.get("calibration") or {}).get("path")
        if not folder:
            raise UsageError("--utility gradient needs --data DIR: the report names no calibration folder")
        data_path = Path(folder)
    diag = dataclasses.replace(given, key=key, arch=arch, seed=options.seed, in_chans=in_chans)
    out = Path(output) if output is not None else None
    return _Request(Path(checkpoint), key, arch, in_chans, out, data_path, report, diag, progress)


def _open_output(
    ckpt: Checkpoint, req: _Request, inputs: Sequence[Path], *, force: bool, dry_run: bool
) -> str | None:
    """Refuse an output that would replace an input (or exist, without --force); its format; start
    hashing the source for the manifest while the rest runs."""
    fmt = None
    if req.out is not None:
        fmt = output_format(req.out, ckpt)
        if fmt == "folder":
            check_folder_target(req.out, inputs=[*ckpt.input_files, *inputs], force=force)
        else:
            check_target(req.out, inputs=[*ckpt.input_files, *inputs], force=force)
    if req.report is not None or (req.out is not None and not dry_run):
        ckpt.hash_in_background()  # the manifest's source_sha256, ready when the header is written
    return fmt


def _context(
    ckpt: Checkpoint, info: StrategyInfo, options: Options, req: _Request, spec: ArchSpec | None,
    unknown: str = "",
) -> tuple[Context, InitRecording | None]:  # fmt: skip
    """What the strategy reads: the report, the structure (of the loaded model when it needs the real
    weights, else of the meta model), gradients when asked; and the init recording for the new values."""
    if spec is None:
        return Context(ckpt, options, req.report, None, unknown=unknown), None
    structure: Structure | None = None
    gradients = None
    if info.wants(Need.LOADED, options):
        from plastic.model.build import build_model

        structure = analyse(build_model(ckpt).model)  # completeness needs the real weights
    if info.wants(Need.GRADIENTS, options):
        if req.data is None:
            raise UsageError("--utility gradient needs --data DIR (or a diagnose report)")
        gradients = _gradients(ckpt, req.data, req.diag, req.report, req.progress)
    recording = recorded_model(spec)  # on meta: no values drawn
    if recording is None:  # a constructor that reads values cannot run on meta: a seeded fresh model
        fresh = fresh_model(spec, seed=options.seed)
        check_names(fresh, ckpt, spec)
        structure = structure or analyse(fresh)
    else:
        check_names(recording.model, ckpt, spec)
    if structure is None and recording is not None:
        structure = analyse(recording.model, materialise=lambda: fresh_model(spec, seed=options.seed))
    grads = (lambda: gradients) if gradients is not None else None
    return Context(ckpt, options, req.report, structure, grads), recording


def _write(
    ckpt: Checkpoint, plan: Plan, source: InitSource, options: Options, result: ReinitResult,
    target: Target, fmt: str, keep_extra: bool,
) -> None:  # fmt: skip
    if fmt == "folder":
        _write_folder(ckpt, plan, source, options, result, target, keep_extra)
        return
    values = new_values(ckpt, plan, source, options)
    if fmt == "safetensors":  # the source's fingerprint finishes hashing while the bytes are copied
        late = {SOURCE_SHA256: LateValue(64, ckpt.compute_sha256)}
        result.metadata = write_safetensors(ckpt, target, values, metadata(ckpt, result, options), late)
        return
    meta = metadata(ckpt, result, options)
    meta[SOURCE_SHA256] = ckpt.compute_sha256()
    result.metadata = meta
    if ckpt.format != "torch" or ckpt.container_key is None:
        result.notes.append(
            "a bare state dict has no room for metadata (strict loading would reject an extra key): "
            "what changed is recorded only in `reinit --json` (its `metadata`)"
        )
    dropped = write_torch(ckpt, target, values, meta, keep_extra=keep_extra)
    if dropped:
        result.notes.append(
            f"left out of the output: {', '.join(repr(k) for k in dropped)} (training state of the old "
            "weights: optimizer moments, an EMA, other tensors); --keep-extra keeps them"
        )


def _write_folder(
    ckpt: Checkpoint, plan: Plan, source: InitSource, options: Options, result: ReinitResult,
    target: Target, keep_extra: bool,
) -> None:  # fmt: skip
    """A hub folder out of a hub folder: the weights under the input's file name (one
    ``model.safetensors`` for a sharded input), ``config.json`` and ``preprocessor_config.json`` copied
    byte for byte, so ``from_pretrained(DIR)`` (transformers) or timm's hub loader reads it."""
    assert ckpt.hub is not None
    weights = "model.safetensors" if ckpt.format.startswith("safetensors") else ckpt.path.name
    fmt = "safetensors" if weights.endswith(SAFETENSORS_SUFFIX) else "torch"
    companions = [ckpt.hub.path, *([ckpt.hub.preprocessor] if ckpt.hub.preprocessor else [])]
    with atomic_folder(target.path, replace=target.replace) as tmp:
        _write(
            ckpt, plan, source, options, result, Target(tmp / weights, False, target.mode), fmt, keep_extra
        )
        for f in companions:
            shutil.copyfile(f, tmp / f.name)
    result.notes.append(f"wrote {weights} and {', '.join(f.name for f in companions)} in {target.path}")


def _mode_of(ckpt: Checkpoint) -> int:
    """The output keeps the input's read/write/execute bits (a private 0600 checkpoint stays private),
    never its set-uid, set-gid or sticky bits."""
    return (stat.S_IMODE(ckpt.path.stat().st_mode) & 0o777) | stat.S_IRUSR | stat.S_IWUSR


def _check_report(report: DiagnoseDoc | None, ckpt: Checkpoint, notes: list[str]) -> None:
    """The report must describe this very file: same size and SHA-256 when the report records them."""
    if report is None:
        return
    recorded = report["checkpoint"]
    size, digest = recorded.get("size_bytes"), recorded.get("sha256")
    if (size is not None and size != ckpt.size_bytes) or (digest and digest != ckpt.compute_sha256()):
        made_for = str(recorded.get("path") or "")
        if made_for and Path(made_for).resolve() != ckpt.path.resolve():
            raise UsageError(
                f"the report was made for {made_for}, not {ckpt.path} (other contents): give the "
                "checkpoint the report describes, or run diagnose on this one"
            )
        raise UsageError(
            f"the report was made for a checkpoint with other contents than {ckpt.path} "
            f"(fingerprint {str(digest)[:12]}..., the file's {ckpt.compute_sha256()[:12]}...): the file "
            "changed since diagnose ran; run diagnose again"
        )
    if not digest:
        notes.append("the report carries no checkpoint fingerprint (an older plastic): not verified")
    check_report_layers(report, ckpt)


def _gradients(
    ckpt: Checkpoint, data: Path, diag: DiagnoseOptions, report: DiagnoseDoc | None, progress: Progress | None
) -> dict[str, torch.Tensor]:
    """dL/dW for every weight, by the same probe as diagnose's grad_ratio (model loaded, then freed).

    The preprocessing is the report's when there is one (what diagnose measured with), else the model's.
    """
    from plastic.documents.validation import pick_device
    from plastic.measure.calib import calib_batches, resolve_data_config, scan_folder
    from plastic.measure.onepass import PassSettings, full_float32, one_pass, probe_targets
    from plastic.model.build import build_model
    from plastic.model.structure import input_channels

    model = build_model(ckpt).model
    seed = diag.seed
    calib = scan_folder(data, max_images=diag.max_images, seed=seed)
    given: dict[str, Any] = dict(report.get("data_config") or {}) if report is not None else {}
    size, mean, std = given.get("input_size"), given.get("mean"), given.get("std")
    cfg = resolve_data_config(
        model,
        ckpt.metadata,
        input_size=tuple(size) if isinstance(size, list) and len(size) == 3 else None,  # type: ignore[arg-type]
        mean=tuple(mean) if isinstance(mean, list) and mean else None,
        std=tuple(std) if isinstance(std, list) and std else None,
        hub=ckpt.hub,
        in_chans=chans if (chans := input_channels(model)) != 3 else None,
    )
    labels, classes = probe_targets(calib.labels, calib.class_names, len(calib.files), seed)
    dev = pick_device(diag.device)
    model.to(dev)
    settings = PassSettings(
        labels=labels, n_classes=classes, total=len(calib.files), seed=seed, device=dev, keep_grads=True,
        batch_size=diag.batch_size,
    )  # fmt: skip
    workers = diag.workers
    with full_float32():  # the same pass as diagnose's (its retry too): its grad_ratio and these grads agree
        done, _ = one_pass([model], lambda size: calib_batches(calib, cfg, size, workers), settings, progress)
    if not done.used:
        raise DataError(f"{calib.root}: none of the {len(calib.files)} images could be read")
    grads = done.measured[0].grads or {}
    del model, done
    return grads
