"""The JSON documents, typed: what ``inspect --json``, ``diagnose --json`` and ``reinit --json`` print.

These are the real data model between the commands (reinit reads a diagnose document back), so they
are spelled out once, here; the results' ``to_dict()`` build them and ``reports`` validates
them when they are read back. Keys are never renamed or removed
without bumping ``SCHEMA_VERSION``. No torch here: ``inspect`` and ``--help`` import this module.
"""

from __future__ import annotations

from typing import Any, TypedDict

SCHEMA_VERSION = 2  # 2: the diagnose report's ``trial`` section and ``recommendation.lr_scale``
READABLE_VERSIONS = (1, 2)  # a version-1 report is a version-2 one without a trial

Metrics = dict[str, float | None]  # metric name -> value; null where undefined (NaN, inf, not measured)


class _CheckpointOptional(TypedDict, total=False):
    sha256: str  # of every input file's bytes; diagnose records it, reinit checks it


class CheckpointDoc(_CheckpointOptional):
    path: str
    format: str  # "safetensors" | "safetensors-sharded" | "torch"
    size_bytes: int
    container_key: str | None
    stripped_prefixes: list[str]
    metadata: dict[str, str]


class EvidenceDoc(TypedDict):
    measure: str
    scores: Metrics
    margin: float | None
    pick: str | None


class _ArchOptional(TypedDict, total=False):
    family: str  # "torchvision" | "transformers"; absent for timm (reports from before are unchanged)
    certainty: str  # "assumed": the canonical model among look-alikes the images could not tell apart


class ArchDoc(_ArchOptional):
    name: str | None
    source: str | None
    candidates: list[str]
    evidence: EvidenceDoc | None


class DataConfigDoc(TypedDict):
    input_size: list[int]  # (channels, height, width)
    input_size_source: str
    mean: list[float]
    std: list[float]
    interpolation: str
    crop_pct: float


class SkippedImageDoc(TypedDict):
    path: str
    reason: str


class CalibrationDoc(TypedDict):
    path: str
    images_found: int
    images_used: int
    images_skipped: int
    skipped: list[SkippedImageDoc]
    labels: str  # "subfolders" | "random"
    classes: list[str]
    reference_images: int | None  # images the fresh reference measured; null without one
    estimates: dict[str, str]  # figure -> what it is estimated from (the rest are exact over the images)


class LayerDoc(TypedDict):
    name: str
    type: str
    units: int
    params: int
    site: str
    block: str | None
    classifier: bool
    metrics: Metrics
    reference: Metrics | None  # the fresh model's metrics with --reference, else null
    # with --reference: the standard deviation over three fresh draws of grad_decades (log10 of the
    # relative gradient over the draw's median layer), dormant_frac and saturated_frac; else null
    reference_spread: Metrics | None
    components: Metrics
    score: float | None
    rank: int | None
    dormant_units: list[int]


class BlockDoc(TypedDict):
    name: str
    group: int
    layers: list[str]
    score: float | None
    rank: int | None


class StageDoc(TypedDict):
    name: str
    start: str  # the ``reinit --strategy from-block --from`` value that starts here
    layers: list[str]
    score: float | None  # the highest layer score in the stage


class RecommendationDoc(TypedDict):
    action: str
    strategy: str | None
    options: dict[str, Any]
    layers: list[str]
    threshold: float
    reason: str
    alternatives: list[str]
    commands: list[str]
    confidence: str
    evidence: str  # what the transfer benchmark showed for this kind of choice
    lr_scale: float  # the rate as a multiple of the trial's recipe; 1 without a trial (version 2)


class _DiagnoseOptional(TypedDict, total=False):
    findings: list[dict[str, Any]]  # added by the CLI: the layers over a --fail-on threshold


class DiagnoseDoc(_DiagnoseOptional):
    schema_version: int
    command: str  # "diagnose"
    checkpoint: CheckpointDoc
    arch: ArchDoc
    device: str
    amp: bool
    data_config: DataConfigDoc
    calibration: CalibrationDoc
    options: dict[str, Any]
    notes: list[str]
    layers: list[LayerDoc]
    blocks: list[BlockDoc]
    stages: list[StageDoc]  # timm's coarse groups, bottom to top
    recommendation: RecommendationDoc | None
    timing: dict[str, float]
    trial: TrialDoc | None  # the race among starts and rates (``--trial``); version 2


class MarginDoc(TypedDict):
    difference: float  # accuracy of the one minus the other on the same validation images
    low: float  # the bootstrap's 90% interval
    high: float
    steps: int  # the rung both were scored at
    clear: bool  # low > 0


class TrialCandidateDoc(TypedDict):
    name: str  # "<start> @ <lr_scale>x"
    start: str
    strategy: str | None
    options: dict[str, Any]
    roles: list[str]  # "fine-tune", "rule", "top stage", "one stage deeper"
    lr_scale: float
    changed_tensors: int
    rungs: list[dict[str, float]]  # steps, accuracy, loss at each rung it reached


class TrialDoc(TypedDict):
    data: dict[str, Any]  # path, classes, train_images, validation_images, skipped
    recipe: dict[str, Any]  # optimizer, lr, weight_decay, batch_size, ..., budget_steps, rungs, seed, threads
    candidates: list[TrialCandidateDoc]
    winner: str
    runner_up: str
    rule: str  # the rule's pick at 1x
    margin_over_runner_up: MarginDoc
    margin_over_rule: MarginDoc | None  # null when the winner is the rule's pick at 1x
    decided: bool  # the recommendation follows the winner
    verdict: str
    steps_trained: int


class _TensorOptional(TypedDict, total=False):
    key: str  # the stored key, when a wrapper prefix was stripped from the name
    metrics: Metrics | None  # with statistics; null for integer tensors


class TensorDoc(_TensorOptional):
    name: str
    shape: list[int]
    dtype: str


class InspectLayerDoc(TypedDict):
    name: str
    params: int
    tensors: list[TensorDoc]
    stats_tensor: str | None
    metrics: Metrics | None


class InspectArchDoc(TypedDict):
    name: str | None
    source: str | None
    candidates: list[str]
    certainty: str | None


class TotalsDoc(TypedDict):
    tensors: int
    parameters: int
    bytes: int
    dtypes: dict[str, int]


class InspectDoc(TypedDict):
    schema_version: int
    command: str  # "inspect"
    checkpoint: CheckpointDoc
    arch: InspectArchDoc
    totals: TotalsDoc
    filter: str | None
    layers: list[InspectLayerDoc]


class ChangedDoc(TypedDict):
    tensor: str
    kind: str
    fraction: float


class SkippedDoc(TypedDict):
    what: str
    why: str


class ReinitDoc(TypedDict):
    schema_version: int
    command: str  # "reinit"
    input: str
    output: str | None
    dry_run: bool
    strategy: str
    options: dict[str, Any]
    seed: int
    init_source: str
    changed: list[ChangedDoc]
    unchanged_tensors: int
    skipped: list[SkippedDoc]
    notes: list[str]
    metadata: dict[str, str]
