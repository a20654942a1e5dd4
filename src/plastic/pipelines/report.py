"""The diagnosis as a result: the dataclasses ``diagnose_checkpoint``, ``diagnose_model`` and
``diagnose --trial`` return, each with the ``to_dict()`` that is its part of the ``diagnose --json``
document (typed in :mod:`plastic.documents.schema`, read back by :mod:`plastic.documents.reports`).
One model per result: the pipelines fill these in, the CLI renders their documents."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from plastic.decide.race import Margin
from plastic.decide.recommend import Recommendation, recommendation_dict
from plastic.documents.schema import (
    SCHEMA_VERSION,
    ArchDoc,
    BlockDoc,
    DiagnoseDoc,
    EvidenceDoc,
    LayerDoc,
    MarginDoc,
    TrialCandidateDoc,
    TrialDoc,
)
from plastic.files.checkpoint import Checkpoint
from plastic.measure.calib import DataConfig
from plastic.measure.capture import RANK_ROWS
from plastic.measure.finetune import Recipe
from plastic.pipelines.documents import checkpoint_dict, clean_float

if TYPE_CHECKING:
    from plastic.model.ties import TieEvidence


@dataclass(frozen=True)
class Start:
    """A starting point: which layers are re-initialized before fine-tuning (``strategy`` None: none)."""

    name: str  # "fine-tune" | "from-block blocks.5" | the rule's own selection
    strategy: str | None
    options: dict[str, Any]
    roles: tuple[str, ...]  # "fine-tune", "rule", "top stage", "one stage deeper"


@dataclass
class RungResult:
    steps: int
    accuracy: float
    loss: float  # inf when training diverged

    def to_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "accuracy": self.accuracy,
                "loss": self.loss if math.isfinite(self.loss) else None}  # fmt: skip


@dataclass
class TrialCandidate:
    start: Start
    lr_scale: float
    changed_tensors: int
    rungs: list[RungResult] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.start.name} @ {self.lr_scale:g}x"

    def to_dict(self) -> TrialCandidateDoc:
        return {
            "name": self.name, "start": self.start.name, "strategy": self.start.strategy,
            "options": dict(self.start.options), "roles": list(self.start.roles), "lr_scale": self.lr_scale,
            "changed_tensors": self.changed_tensors, "rungs": [r.to_dict() for r in self.rungs],
        }  # fmt: skip


@dataclass
class TrialResult:
    """The race: who ran, how each scored at every rung, the winner and how clear its margins are."""

    path: Path
    classes: list[str]
    train_images: int
    validation_images: int
    skipped: int
    recipe: Recipe
    budget: int
    rungs: list[int]
    seed: int
    threads: int | None  # torch's CPU threads during the race (None on CUDA)
    candidates: list[TrialCandidate]
    winner: int  # index into candidates
    runner_up: int
    over_runner_up: Margin
    over_rule: Margin | None  # None when the winner is the rule's pick at 1x
    rule: int  # the rule's pick at 1x
    decided: bool  # the advice follows the trial
    verdict: str
    steps_trained: int = 0  # over all candidates: the trial's cost in optimizer steps

    def to_dict(self) -> TrialDoc:
        """The report's ``trial`` section (``documents.schema.TrialDoc``)."""

        def m(x: Margin | None) -> MarginDoc | None:
            if x is None:
                return None
            return {"difference": x.difference, "low": x.low, "high": x.high, "steps": x.steps,
                    "clear": x.clear}  # fmt: skip

        return {
            "data": {"path": str(self.path), "classes": list(self.classes), "train_images": self.train_images,
                     "validation_images": self.validation_images, "skipped": self.skipped},
            "recipe": {**self.recipe.to_dict(), "budget_steps": self.budget, "rungs": list(self.rungs),
                       "seed": self.seed, "threads": self.threads},
            "candidates": [c.to_dict() for c in self.candidates],
            "winner": self.candidates[self.winner].name,
            "runner_up": self.candidates[self.runner_up].name,
            "rule": self.candidates[self.rule].name,
            "margin_over_runner_up": m(self.over_runner_up) or cast(MarginDoc, {}),
            "margin_over_rule": m(self.over_rule),
            "decided": self.decided,
            "verdict": self.verdict,
            "steps_trained": self.steps_trained,
        }  # fmt: skip


@dataclass
class LayerDiagnosis:
    """One measured layer: its metrics, the fresh reference's, the score's components, score and rank."""

    name: str
    type: str
    units: int
    params: int
    site: str  # the module whose output was measured
    block: str | None
    classifier: bool
    metrics: dict[str, float | None]
    components: dict[str, float] = field(default_factory=dict)
    score: float | None = None
    rank: int | None = None
    dormant_units: list[int] = field(default_factory=list)
    reference: dict[str, float | None] = field(default_factory=dict)  # the fresh model's metrics here
    # the standard deviation of the fresh layer's statistics over three draws (measure/spread.py)
    reference_spread: dict[str, float | None] = field(default_factory=dict)


@dataclass
class BlockDiagnosis:
    """One of the family's fine groups (a block): its layers and their highest score."""

    name: str
    group: int
    layers: list[str]
    score: float | None = None
    rank: int | None = None


@dataclass
class StageDiagnosis:
    """One of timm's coarse groups (stem, stages, head), bottom to top: what ``from-block`` starts at."""

    name: str
    start: str  # the ``reinit --strategy from-block --from`` value that starts at this stage
    layers: list[str]
    score: float | None = None  # the highest layer score in it


@dataclass
class Calibration:
    """The calibration images: found, used, skipped (with why), and how they were labelled."""

    path: Path
    images_found: int
    images_used: int
    skipped: list[tuple[Path, str]]
    labels: str  # "subfolders" | "random"
    classes: list[str]
    reference_images: int | None = None  # images the fresh reference measured (None: no reference)


@dataclass
class DiagnoseReport:
    """What ``diagnose_checkpoint`` and ``diagnose_model`` return; ``to_dict()`` is ``diagnose --json``."""

    checkpoint: Checkpoint
    arch: str
    arch_source: str
    candidates: list[str]
    device: str
    amp: bool
    data_config: DataConfig
    calibration: Calibration
    layers: list[LayerDiagnosis]
    blocks: list[BlockDiagnosis]
    timing: dict[str, float]
    options: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    recommendation: Recommendation | None = None
    stages: list[StageDiagnosis] = field(default_factory=list)
    certainty: str | None = None  # "assumed": see model.build.Resolution
    evidence: TieEvidence | None = None  # what the calibration images said between look-alikes
    trial: TrialResult | None = None  # the race among starts and rates (``--trial``)

    def to_dict(self) -> DiagnoseDoc:
        """The ``plastic diagnose --json`` document (without ``findings``, which only ``--fail-on``
        adds); ``plastic reinit`` reads it back from stdin."""
        cal = self.calibration
        cfg = self.data_config
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
                "reference_spread": {k: clean_float(v) for k, v in la.reference_spread.items()} or None,
                "components": {k: clean_float(v) for k, v in la.components.items()},
                "score": clean_float(la.score),
                "rank": la.rank,
                "dormant_units": la.dormant_units,
            }
            for la in self.layers
        ]
        blocks: list[BlockDoc] = [
            {
                "name": b.name,
                "group": b.group,
                "layers": b.layers,
                "score": clean_float(b.score),
                "rank": b.rank,
            }
            for b in self.blocks
        ]
        return {
            "schema_version": SCHEMA_VERSION,
            "command": "diagnose",
            "checkpoint": checkpoint_dict(self.checkpoint),
            "arch": _diagnose_arch(self),
            "device": self.device,
            "amp": self.amp,
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
            "options": self.options,
            "notes": self.notes,
            "layers": layers,
            "blocks": blocks,
            "stages": [
                {"name": st.name, "start": st.start, "layers": st.layers, "score": clean_float(st.score)}
                for st in self.stages
            ],
            "recommendation": (
                recommendation_dict(self.recommendation) if self.recommendation is not None else None
            ),
            "timing": {k: round(v, 4) for k, v in self.timing.items()},
            "trial": self.trial.to_dict() if self.trial is not None else None,
        }


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
    saturation fractions are sampled; the feature ranks, past ``RANK_ROWS`` images (a wide layer keeps a
    uniform sample of that many images' rows); the reference's metrics, when it measured fewer images.
    The rest (dormant, dead, gradients, attention) are exact sums over every image."""
    out = dict(SAMPLED)
    if cal.images_used > RANK_ROWS:
        ranks = (
            f"a uniform sample of {RANK_ROWS} of the {cal.images_used} images in layers wider than "
            f"{RANK_ROWS // 2} units (fixed seed, the same images for the reference); narrower: every image"
        )
        out["feature_erank"] = out["feature_srank99"] = ranks
    if cal.reference_images is not None and cal.reference_images < cal.images_used:
        out["reference"] = f"{cal.reference_images} of the {cal.images_used} images (--reference-images)"
    return out
