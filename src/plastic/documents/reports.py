"""Machine-readable reports: the stable JSON documents behind ``--json``.

Each document carries ``schema_version``; a key is never renamed or removed without bumping it, so
shell pipelines and CI gates can rely on them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from plastic.decide.recommend import recommendation_dict
from plastic.documents.schema import (
    SCHEMA_VERSION,
    BlockDoc,
    CheckpointDoc,
    DiagnoseDoc,
    EvidenceDoc,
    InspectArchDoc,
    InspectDoc,
    InspectLayerDoc,
    LayerDoc,
    ReinitDoc,
    TensorDoc,
)
from plastic.errors import UsageError
from plastic.files.checkpoint import Checkpoint
from plastic.measure.inspection import InspectReport

if TYPE_CHECKING:
    from plastic.measure.diagnosis import DiagnoseReport  # imports torch: only for type checking
    from plastic.reinit.run import ReinitResult


def clean_float(x: float | None) -> float | None:
    """JSON has no NaN or infinity: report them as null."""
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return float(x)


def checkpoint_dict(ckpt: Checkpoint) -> CheckpointDoc:
    doc: CheckpointDoc = {
        "path": str(ckpt.path),
        "format": ckpt.format,
        "size_bytes": ckpt.size_bytes,
        "container_key": ckpt.container_key,
        "stripped_prefixes": ckpt.stripped_prefixes,
        "metadata": ckpt.metadata,
    }
    if ckpt.sha256 is not None:  # the identity reinit checks a report against (diagnose computes it)
        doc["sha256"] = ckpt.sha256
    return doc


# A report is read back by reinit; anything larger than this is not one (and /dev/zero never ends).
MAX_REPORT_BYTES = 64 << 20


def read_report_text(stream: Any, what: str) -> str:
    """At most MAX_REPORT_BYTES of UTF-8 text from a binary ``stream``; more is a UsageError."""
    raw = stream.read(MAX_REPORT_BYTES + 1)
    if len(raw) > MAX_REPORT_BYTES:
        raise UsageError(f"{what}: larger than {MAX_REPORT_BYTES >> 20} MiB; not a diagnose report")
    try:
        return str(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise UsageError(f"{what}: not UTF-8 text; not a diagnose report") from None


def parse_report(text: str, *, base: Path | None = None, what: str = "the report") -> DiagnoseDoc:
    """Parse and validate a ``diagnose --json`` document: the one place reports are checked.

    Relative paths in it (checkpoint, calibration folder) are resolved against ``base``, the folder
    of the report file (None: stdin, the current folder).
    """
    if not text.strip():
        upstream = (
            " (when a command before the pipe failed, its own error is the line above)"
            if "stdin" in what
            else ""
        )
        raise UsageError(f"{what} is empty{upstream}: pipe `plastic diagnose ... --json` or give CKPT")
    try:
        doc = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        msg = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise UsageError(f"{what} is not JSON ({msg}); did diagnose run with --json?") from None
    report = validate_report(doc, what=what)
    if base is not None:
        for section in ("checkpoint", "calibration"):
            path = doc.get(section, {}).get("path")
            if isinstance(path, str) and path and not Path(path).is_absolute():
                doc[section]["path"] = str(base / path)
    return report


def validate_report(doc: Any, *, what: str = "the report") -> DiagnoseDoc:
    """The shape reinit relies on; a report that lacks it is a UsageError naming the first problem.
    The one place a document read from outside becomes a typed ``DiagnoseDoc``."""
    if not isinstance(doc, dict) or doc.get("command") != "diagnose":
        raise UsageError(f"{what} is not a `plastic diagnose --json` document")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise UsageError(
            f"{what} has schema_version {doc.get('schema_version')!r}; this plastic reads {SCHEMA_VERSION}"
        )
    ckpt = doc.get("checkpoint")
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("path"), str) or not ckpt["path"]:
        raise UsageError(f"{what}: 'checkpoint.path' is missing")
    if ckpt.get("container_key") is not None and not isinstance(ckpt["container_key"], str):
        raise UsageError(f"{what}: 'checkpoint.container_key' must be a string or null")
    for k in ("sha256",):
        if k in ckpt and not isinstance(ckpt[k], str):
            raise UsageError(f"{what}: 'checkpoint.{k}' must be a string")
    if "size_bytes" in ckpt and (
        not isinstance(ckpt["size_bytes"], int) or isinstance(ckpt["size_bytes"], bool)
    ):
        raise UsageError(f"{what}: 'checkpoint.size_bytes' must be an integer")
    layers = doc.get("layers")
    if not isinstance(layers, list):
        raise UsageError(f"{what}: 'layers' must be a list")
    for i, la in enumerate(layers):
        if not isinstance(la, dict) or not isinstance(la.get("name"), str):
            raise UsageError(f"{what}: layers[{i}] needs a 'name'")
        score = la.get("score")
        if score is not None and (
            not isinstance(score, int | float) or isinstance(score, bool) or not math.isfinite(score)
        ):
            raise UsageError(f"{what}: layers[{i}].score must be a finite number or null")
        if not isinstance(la.get("metrics", {}), dict) or not isinstance(la.get("components", {}), dict):
            raise UsageError(f"{what}: layers[{i}].metrics and .components must be objects")
        units = la.get("dormant_units", [])
        if not isinstance(units, list) or not all(isinstance(u, int) and u >= 0 for u in units):
            raise UsageError(f"{what}: layers[{i}].dormant_units must be a list of unit indices")
    for name in ("arch", "calibration", "options"):
        if name in doc and doc[name] is not None and not isinstance(doc[name], dict):
            raise UsageError(f"{what}: '{name}' must be an object")
    arch = (doc.get("arch") or {}).get("name")
    if arch is not None and not isinstance(arch, str):
        raise UsageError(f"{what}: 'arch.name' must be a string")
    rec = doc.get("recommendation")
    if rec is not None and not isinstance(rec, dict):
        raise UsageError(f"{what}: 'recommendation' must be an object or null")
    blocks = doc.setdefault("blocks", [])  # topk-layers --unit block reads them
    if not isinstance(blocks, list):
        raise UsageError(f"{what}: 'blocks' must be a list")
    for i, b in enumerate(blocks):
        rank = b.get("rank") if isinstance(b, dict) else None
        if (
            not isinstance(b, dict)
            or not isinstance(b.get("name"), str)
            or not isinstance(b.get("layers", []), list)
            or not all(isinstance(la, str) for la in b.get("layers", []))
            or not (rank is None or (isinstance(rank, int) and not isinstance(rank, bool)))
        ):
            raise UsageError(
                f"{what}: blocks[{i}] needs a 'name', a list of 'layers' and an integer or null 'rank'"
            )
        b.setdefault("layers", [])
        b.setdefault("rank", None)
    stages = doc.setdefault("stages", [])  # auto's recomputed recommendation reads them
    if not isinstance(stages, list) or not all(
        isinstance(st, dict)
        and isinstance(st.get("name"), str)
        and isinstance(st.get("start"), str)
        and isinstance(st.get("layers"), list)
        and all(isinstance(la, str) for la in st["layers"])
        for st in stages
    ):
        raise UsageError(f"{what}: 'stages' must be a list of objects with a 'name', a 'start' and 'layers'")
    if isinstance(rec, dict) and rec.get("strategy") == "from-block":
        start = (rec.get("options") or {}).get("from_block") if isinstance(rec.get("options"), dict) else None
        if not isinstance(start, str):
            raise UsageError(f"{what}: a from-block recommendation needs options.from_block (a block name)")
    size = (doc.get("data_config") or {}).get("input_size")
    if size is not None and not (
        isinstance(size, list) and len(size) == 3 and all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise UsageError(f"{what}: 'data_config.input_size' must be [channels, height, width]")
    return cast(DiagnoseDoc, doc)


def _inspect_arch(report: InspectReport) -> InspectArchDoc:
    """The named architecture, else what the signature index says, with how certain that is."""
    ckpt, found = report.checkpoint, report.detected
    if ckpt.arch or found is None:
        certainty = None if ckpt.arch else "not checked (the shipped index is for another timm version)"
        return {"name": ckpt.arch, "source": ckpt.arch_source, "candidates": [], "certainty": certainty}
    under = f" under the prefix {report.detected_prefix!r}" if report.detected_prefix else ""
    if len(found) == 1:
        return {"name": found[0], "source": "detected", "candidates": found,
                "certainty": f"unique signature match{under}"}  # fmt: skip
    if found:
        return {"name": None, "source": "detected", "candidates": found,
                "certainty": f"{len(found)} architectures share this signature{under}; diagnose decides "
                             "from calibration images, or pass --arch"}  # fmt: skip
    return {"name": None, "source": None, "candidates": [], "certainty": "no timm architecture matches"}


def inspect_dict(report: InspectReport) -> InspectDoc:
    ckpt = report.checkpoint
    layers: list[InspectLayerDoc] = []
    for la in report.layers:
        tensors: list[TensorDoc] = []
        for t in la.tensors:
            entry: TensorDoc = {"name": t.name, "shape": list(t.shape), "dtype": t.dtype}
            if t.key != t.name:
                entry["key"] = t.key
            if report.stats:  # integer tensors are counted but have no statistics: null
                tm = la.tensor_metrics.get(t.name)
                entry["metrics"] = {k: clean_float(v) for k, v in tm.items()} if tm is not None else None
            tensors.append(entry)
        metrics = None
        if report.stats:
            metrics = {k: clean_float(v) for k, v in (la.metrics or {}).items()}
        layers.append(
            {
                "name": la.name,
                "params": la.params,
                "tensors": tensors,
                "stats_tensor": la.stats_tensor,
                "metrics": metrics,
            }
        )
    return {
        "schema_version": SCHEMA_VERSION,
        "command": "inspect",
        "checkpoint": checkpoint_dict(ckpt),
        "arch": _inspect_arch(report),
        "totals": {
            "tensors": report.totals.tensors,
            "parameters": report.totals.parameters,
            "bytes": report.totals.bytes,
            "dtypes": report.totals.dtypes,
        },
        "filter": report.layer_filter,
        "layers": layers,
    }


def _evidence_dict(evidence: Any) -> EvidenceDoc | None:
    """How the calibration images decided between look-alike architectures (null when they did not run)."""
    if evidence is None:
        return None
    return {
        "measure": evidence.measure,
        "scores": {k: clean_float(v) for k, v in evidence.scores.items()},
        "margin": clean_float(evidence.margin),
        "pick": evidence.pick,
    }


def diagnose_dict(report: DiagnoseReport) -> DiagnoseDoc:
    """The ``diagnose --json`` document; ``plastic reinit`` reads it back from stdin."""
    cal = report.calibration
    cfg = report.data_config
    layers: list[LayerDoc] = [
        {
            "name": la.name,
            "type": la.type,
            "units": la.units,
            "params": la.params,
            "site": la.site,
            "block": la.block,
            "classifier": la.classifier,
            "metrics": {k: clean_float(v) for k, v in la.metrics.items()},
            "reference": {k: clean_float(v) for k, v in la.reference.items()} or None,
            "components": {k: clean_float(v) for k, v in la.components.items()},
            "score": clean_float(la.score),
            "rank": la.rank,
            "dormant_units": la.dormant_units,
        }
        for la in report.layers
    ]
    blocks: list[BlockDoc] = [
        {"name": b.name, "group": b.group, "layers": b.layers, "score": clean_float(b.score), "rank": b.rank}
        for b in report.blocks
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "command": "diagnose",
        "checkpoint": checkpoint_dict(report.checkpoint),
        "arch": {
            "name": report.arch,
            "source": report.arch_source,
            "candidates": report.candidates,
            "evidence": _evidence_dict(report.checkpoint.tie_evidence),
        },
        "device": report.device,
        "amp": report.amp,
        "data_config": {
            "input_size": list(cfg.input_size),
            "input_size_source": cfg.source,
            "mean": list(cfg.mean),
            "std": list(cfg.std),
            "interpolation": cfg.interpolation,
            "crop_pct": cfg.crop_pct,
        },
        "calibration": {
            "path": str(cal.path),
            "images_found": cal.images_found,
            "images_used": cal.images_used,
            "images_skipped": len(cal.skipped),
            "skipped": [{"path": str(p), "reason": why} for p, why in cal.skipped],
            "labels": cal.labels,
            "classes": cal.classes,
        },
        "options": report.options,
        "notes": report.notes,
        "layers": layers,
        "blocks": blocks,
        "stages": [
            {"name": st.name, "start": st.start, "layers": st.layers, "score": clean_float(st.score)}
            for st in report.stages
        ],
        "recommendation": (
            recommendation_dict(report.recommendation) if report.recommendation is not None else None
        ),
        "timing": {k: round(v, 4) for k, v in report.timing.items()},
    }


def reinit_dict(result: ReinitResult) -> ReinitDoc:
    """The ``reinit --json`` manifest."""
    return {
        "schema_version": SCHEMA_VERSION,
        "command": "reinit",
        "input": str(result.input),
        "output": str(result.output) if result.output is not None and not result.dry_run else None,
        "dry_run": result.dry_run,
        "strategy": result.strategy,
        "options": result.options,
        "seed": result.seed,
        "init_source": result.init_source,
        "changed": result.changed,
        "unchanged_tensors": result.unchanged_tensors,
        "skipped": [{"what": w, "why": y} for w, y in result.skipped],
        "notes": result.notes,
        "metadata": result.metadata,
    }
