"""The JSON documents, built: what ``inspect``, ``diagnose`` and ``reinit`` print with ``--json`` (and
what the results' ``to_dict()`` returns). The one place a result dataclass becomes a document; the
shapes are typed in :mod:`plastic.documents.schema`, and reading one back is
:mod:`plastic.documents.reports`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from plastic.decide.recommend import recommendation_dict
from plastic.documents.schema import (
    SCHEMA_VERSION,
    ArchDoc,
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
from plastic.files.checkpoint import Checkpoint

if TYPE_CHECKING:  # annotations only: these modules import this one when a result is turned into JSON
    from plastic.pipelines.diagnose import Calibration, DiagnoseReport
    from plastic.pipelines.inspect import InspectReport
    from plastic.pipelines.manifest import ReinitResult


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
        "stripped_prefixes": list(ckpt.stripped_prefixes),
        "metadata": dict(ckpt.metadata),
    }
    if ckpt.sha256 is not None:  # the identity reinit checks a report against (diagnose computes it)
        doc["sha256"] = ckpt.sha256
    return doc


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
    if report.lined_up:
        return {"name": None, "source": None, "candidates": [],
                "certainty": "no timm or torchvision architecture matches its names, but its tensors line "
                             f"up in order (role and shape) with {' or '.join(report.lined_up[:3])}: --arch "
                             f"{report.lined_up[0]} reads it by position"}  # fmt: skip
    return {"name": None, "source": None, "candidates": [],
            "certainty": "no timm or torchvision architecture matches"}  # fmt: skip


def _diagnose_arch(report: DiagnoseReport) -> ArchDoc:
    doc: ArchDoc = {
        "name": report.arch,
        "source": report.arch_source,
        "candidates": report.candidates,
        "evidence": _evidence_dict(report.evidence),
    }
    family = report.arch.partition(":")[0] if ":" in report.arch else None
    if family:
        doc["family"] = family
    if report.certainty:
        doc["certainty"] = report.certainty
    return doc


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


SAMPLED = {
    "saturated_frac": "a strided sample of at most 32,768 activation inputs per forward call",
    "saturated_ref": "32,768 seeded standard-normal inputs",
}


def estimates(cal: Calibration) -> dict[str, str]:
    """The figures that are estimates rather than exact over the images used, and from what: the
    saturation fractions are sampled; the reference's metrics, when it measured fewer images. The
    rest (dormant, dead, ranks, gradients, attention) are exact sums over every image."""
    out = dict(SAMPLED)
    if cal.reference_images is not None and cal.reference_images < cal.images_used:
        out["reference"] = f"{cal.reference_images} of the {cal.images_used} images (--reference-images)"
    return out


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
        "arch": _diagnose_arch(report),
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
            "reference_images": cal.reference_images,
            "estimates": estimates(cal),
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
        "trial": report.trial.to_dict() if report.trial is not None else None,
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
