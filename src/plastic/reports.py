"""Machine-readable reports: the stable JSON documents behind ``--json``.

Each document carries ``schema_version``; a key is never renamed or removed without bumping it, so
shell pipelines and CI gates can rely on them.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from plastic.checkpoint import Checkpoint
from plastic.inspection import InspectReport
from plastic.recommend import recommendation_dict

if TYPE_CHECKING:
    from plastic.diagnosis import DiagnoseReport  # imports torch: only for type checking
    from plastic.reinit import ReinitResult

SCHEMA_VERSION = 1


def clean_float(x: float | None) -> float | None:
    """JSON has no NaN or infinity: report them as null."""
    if x is None or math.isnan(x) or math.isinf(x):
        return None
    return float(x)


def checkpoint_dict(ckpt: Checkpoint) -> dict[str, Any]:
    return {
        "path": str(ckpt.path),
        "format": ckpt.format,
        "size_bytes": ckpt.size_bytes,
        "container_key": ckpt.container_key,
        "stripped_prefixes": ckpt.stripped_prefixes,
        "metadata": ckpt.metadata,
    }


def inspect_dict(report: InspectReport) -> dict[str, Any]:
    ckpt = report.checkpoint
    layers = []
    for la in report.layers:
        tensors = []
        for t in la.tensors:
            entry: dict[str, Any] = {"name": t.name, "shape": list(t.shape), "dtype": t.dtype}
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
        "arch": {"name": ckpt.arch, "source": ckpt.arch_source},
        "totals": {
            "tensors": report.totals.tensors,
            "parameters": report.totals.parameters,
            "bytes": report.totals.bytes,
            "dtypes": report.totals.dtypes,
        },
        "filter": report.layer_filter,
        "layers": layers,
    }


def diagnose_dict(report: DiagnoseReport) -> dict[str, Any]:
    """The ``diagnose --json`` document; ``plastic reinit`` reads it back from stdin."""
    cal = report.calibration
    cfg = report.data_config
    layers = [
        {
            "name": la.name,
            "type": la.type,
            "units": la.units,
            "params": la.params,
            "site": la.site,
            "block": la.block,
            "classifier": la.classifier,
            "metrics": {k: clean_float(v) for k, v in la.metrics.items()},
            "components": {k: clean_float(v) for k, v in la.components.items()},
            "score": clean_float(la.score),
            "rank": la.rank,
            "dormant_units": la.dormant_units,
        }
        for la in report.layers
    ]
    blocks = [
        {"name": b.name, "group": b.group, "layers": b.layers, "score": clean_float(b.score), "rank": b.rank}
        for b in report.blocks
    ]
    return {
        "schema_version": SCHEMA_VERSION,
        "command": "diagnose",
        "checkpoint": checkpoint_dict(report.checkpoint),
        "arch": {"name": report.arch, "source": report.arch_source, "candidates": report.candidates},
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
        "recommendation": (
            recommendation_dict(report.recommendation) if report.recommendation is not None else None
        ),
        "timing": {k: round(v, 4) for k, v in report.timing.items()},
    }


def reinit_dict(result: ReinitResult) -> dict[str, Any]:
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
