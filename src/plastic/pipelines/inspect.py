"""``plastic inspect``: what is inside a checkpoint, layer by layer, with data-free weight statistics."""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from plastic.documents.schema import SCHEMA_VERSION, InspectArchDoc, InspectDoc, InspectLayerDoc, TensorDoc
from plastic.errors import UsageError
from plastic.files.checkpoint import Checkpoint, TensorInfo, open_checkpoint
from plastic.pipelines.documents import checkpoint_dict, clean_float

Progress = Callable[[int, int], None]  # (done, total) in bytes


@dataclass
class Layer:
    """Tensors grouped by module prefix (``layer1.0.conv1.weight`` -> ``layer1.0.conv1``)."""

    name: str
    tensors: list[TensorInfo]
    # Metrics of the layer's main tensor (``weight``, else its largest floating tensor); None without stats.
    metrics: dict[str, float | None] | None = None
    stats_tensor: str | None = None
    tensor_metrics: dict[str, dict[str, float | None]] = field(default_factory=dict)

    @property
    def params(self) -> int:
        return sum(t.numel for t in self.tensors if t.is_parameter)


@dataclass
class Totals:
    tensors: int
    parameters: int
    bytes: int
    dtypes: dict[str, int]  # dtype -> number of tensors


@dataclass
class InspectReport:
    """What ``inspect_checkpoint`` returns; ``to_dict()`` is ``inspect --json``."""

    checkpoint: Checkpoint
    layers: list[Layer]
    totals: Totals
    stats: bool
    layer_filter: str | None = None
    detected: list[str] | None = None  # candidates from the signature index when the file names none
    detected_prefix: str = ""  # a wrapper prefix the detection looked under
    lined_up: list[str] = field(default_factory=list)  # nothing detected: what --arch reads by position

    def to_dict(self) -> InspectDoc:
        """The ``plastic inspect --json`` document."""
        ckpt = self.checkpoint
        layers: list[InspectLayerDoc] = []
        for la in self.layers:
            tensors: list[TensorDoc] = []
            for t in la.tensors:
                entry: TensorDoc = {"name": t.name, "shape": list(t.shape), "dtype": t.dtype}
                if t.key != t.name:
                    entry["key"] = t.key
                if self.stats:  # integer tensors are counted but have no statistics: null
                    tm = la.tensor_metrics.get(t.name)
                    entry["metrics"] = {k: clean_float(v) for k, v in tm.items()} if tm is not None else None
                tensors.append(entry)
            metrics = None
            if self.stats:
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
            "arch": _inspect_arch(self),
            "totals": {
                "tensors": self.totals.tensors,
                "parameters": self.totals.parameters,
                "bytes": self.totals.bytes,
                "dtypes": self.totals.dtypes,
            },
            "filter": self.layer_filter,
            "layers": layers,
        }


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


def detect_for_inspect(ckpt: Checkpoint) -> tuple[list[str] | None, str]:
    """Candidates from the shipped signature index (cheap: no timm import); None when not checkable."""
    from plastic.model.build import wrapper_prefixes
    from plastic.model.signatures import quick_detect

    shapes = {t.name: t.shape for t in ckpt.tensors}
    prefixes = ["", *wrapper_prefixes(list(shapes))]
    for prefix in prefixes:
        found = quick_detect({k[len(prefix) :]: v for k, v in shapes.items()})
        if found is None:
            return None, ""
        if found.candidates:
            return found.candidates, prefix
    from plastic.model.backends import DEFAULT_FAMILY, ArchSpec, detecting

    for b in detecting():  # the other families' indexes (timm's was asked above, without importing timm)
        if b.family == DEFAULT_FAMILY:
            continue
        for prefix in prefixes:
            hit = b.detect({k[len(prefix) :]: v for k, v in shapes.items()})
            if hit is not None and hit.candidates:
                return [ArchSpec(b.family, n).label for n in hit.candidates], prefix
    return [], ""


def layer_name(tensor_name: str) -> str:
    """Module prefix of a tensor; top-level tensors (``cls_token``) are their own layer."""
    prefix, dot, _ = tensor_name.rpartition(".")
    return prefix if dot else tensor_name


def natural_key(name: str) -> list[tuple[int, int | str]]:
    """Sort key that puts ``blocks.2`` before ``blocks.10``."""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"(\d+)", name) if p]


def group_layers(tensors: Sequence[TensorInfo], *, sort: bool = False) -> list[Layer]:
    """Group tensors into layers, in order of first appearance (or natural name order with ``sort``).

    safetensors files store tensors sorted by dtype and name, not in model order, so for them a natural
    sort of the names is the most readable order available without the model.
    """
    if sort:
        tensors = sorted(tensors, key=lambda t: natural_key(t.name))
    layers: dict[str, Layer] = {}
    for t in tensors:
        name = layer_name(t.name)
        layers.setdefault(name, Layer(name, [])).tensors.append(t)
    return list(layers.values())


def main_tensor(layer: Layer) -> TensorInfo | None:
    floats = [t for t in layer.tensors if t.is_float]
    for t in floats:
        if t.name.rpartition(".")[2] == "weight":
            return t
    return max(floats, key=lambda t: t.numel, default=None)


def totals_of(tensors: Sequence[TensorInfo]) -> Totals:
    dtypes: dict[str, int] = {}
    for t in tensors:
        dtypes[t.dtype] = dtypes.get(t.dtype, 0) + 1
    return Totals(
        tensors=len(tensors),
        parameters=sum(t.numel for t in tensors if t.is_parameter),
        bytes=sum(t.nbytes for t in tensors),
        dtypes=dict(sorted(dtypes.items())),
    )


def matches(layer: Layer, pattern: str) -> bool:
    return fnmatch.fnmatchcase(layer.name, pattern) or any(
        fnmatch.fnmatchcase(t.name, pattern) for t in layer.tensors
    )


def _check_arch(arch: object) -> None:
    """An ``arch`` given to inspect is checked as diagnose and reinit check it: a name its library
    does not know is refused, not recorded (the one place inspect imports a model library)."""
    from plastic.documents.validation import check_arch_type
    from plastic.model.backends import backend, parse_arch

    check_arch_type(arch)
    family, name = parse_arch(str(arch))
    backend(family).check_name(name, "--arch")


def inspect_checkpoint(
    path: str | Path,
    *,
    key: str | None = None,
    arch: str | None = None,
    stats: bool = True,
    layer_filter: str | None = None,
    skip: Collection[str] = (),
    progress: Progress | None = None,
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
        arch: The architecture (a timm name, ``torchvision:NAME`` or ``transformers:CLASS``), when
            the file's own (metadata, ``config.json``) is wrong or missing; checked against its
            library (which imports it).
        stats: Compute the statistics (reads every tensor); ``False`` reads the header only.
        layer_filter: A glob on layer or tensor names: only those layers are listed and read.
        skip: Metric names not to compute (reported as ``None``).
        progress: Called with (bytes done, bytes total) while the statistics are computed.
        stable_rank: Also compute ``weight_stable_rank`` (costs more than all the others together).

    Returns:
        An ``InspectReport``; ``report.to_dict()`` is the ``plastic inspect --json`` document.

    Raises:
        CheckpointError: the file is missing, truncated, corrupt or of an unknown kind.
        UnsafeCheckpointError: a pickle would need to run code to load.
        UsageError: an option names something that does not exist.
        ArchitectureError: ``arch`` is not a model its library knows.
        TypeError: an argument of the wrong type.

    Example:
        >>> import plastic
        >>> report = plastic.inspect_checkpoint("sample_checkpoints/test_resnet.mnist.safetensors")
        >>> report.totals.parameters
        373658
        >>> report.to_dict()["checkpoint"]["format"]
        'safetensors'
    """
    from plastic.documents.validation import check_progress, wrong_type

    check_progress(progress)
    if arch is not None:
        _check_arch(arch)
    if layer_filter is not None and not isinstance(layer_filter, str):
        raise wrong_type("layer_filter", layer_filter, "a glob (str) or None")
    if isinstance(skip, str):  # one metric's name, not its characters
        skip = (skip,)
    if not isinstance(skip, Collection) or not all(isinstance(m, str) for m in skip):
        raise wrong_type("skip", skip, "a collection of metric names (str)")
    if skip:
        from plastic.measure.weight_stats import METRIC_NAMES

        unknown = sorted(set(skip) - set(METRIC_NAMES))
        if unknown:
            raise UsageError(f"unknown metric(s) {unknown}; choose from {list(METRIC_NAMES)}")
    ckpt = open_checkpoint(path, key=key, arch=arch)
    detected, prefix = (None, "") if ckpt.arch else detect_for_inspect(ckpt)
    try:
        layers = group_layers(ckpt.tensors, sort=ckpt.format != "torch")
        if layer_filter:
            layers = [la for la in layers if matches(la, layer_filter)]
        if stats:
            skipped = set(skip) | (set() if stable_rank else {"weight_stable_rank"})
            _compute_stats(ckpt, layers, skipped, progress)
    finally:
        ckpt.close()
    lined_up: list[str] = []
    if detected == [] and ckpt.format == "torch":  # unknown names, in model order: another implementation's?
        from plastic.model.build import lined_up_in_order

        lined_up = lined_up_in_order(ckpt)
    return InspectReport(
        ckpt, layers, totals_of(ckpt.tensors), stats, layer_filter, detected, prefix, lined_up
    )


STAT_THREADS = max(1, min(4, os.cpu_count() or 1))


def wanted_in_file_order(ckpt: Checkpoint, wanted: list[TensorInfo]) -> list[TensorInfo]:
    names = {t.name for t in wanted}
    return [t for t in ckpt.tensors if t.name in names]


def _compute_stats(ckpt: Checkpoint, layers: list[Layer], skip: set[str], progress: Progress | None) -> None:
    """Every wanted tensor's metrics. Large tensors go to STAT_THREADS threads (numpy and positional
    reads release the GIL), each reading into its own reused buffer, so at most that many large
    tensors are in memory; small ones are batched into a few vectorized passes."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np

    from plastic.measure.weight_stats import SMALL, batch_metrics, is_gain, tensor_metrics  # numpy only

    wanted = wanted_in_file_order(ckpt, [t for la in layers for t in la.tensors if t.is_float])
    owner = {t.name: la for la in layers for t in la.tensors}
    total = sum(t.nbytes for t in wanted)
    done = 0
    srank = "weight_stable_rank" not in skip
    local = threading.local()

    def record(info: TensorInfo, metrics: dict[str, float | None]) -> None:
        nonlocal done
        for name in skip:
            metrics[name] = None
        owner[info.name].tensor_metrics[info.name] = metrics
        done += info.nbytes
        if progress is not None:
            progress(done, total)

    def measure(info: TensorInfo) -> dict[str, float | None]:
        scratch = getattr(local, "scratch", None)
        if scratch is None or scratch.nbytes < info.nbytes:
            scratch = local.scratch = np.empty(info.nbytes, dtype=np.uint8)
        work = getattr(local, "work", None)
        if work is None:
            work = local.work = {}
        return tensor_metrics(
            ckpt.array(info.name, scratch), gain=is_gain(info.name, info.shape), srank=srank, work=work
        )

    small = [t for t in wanted if t.numel <= SMALL]
    for i in range(0, len(small), 256):
        chunk = small[i : i + 256]
        items = [(ckpt.array(t.name), is_gain(t.name, t.shape)) for t in chunk]
        for info, metrics in zip(chunk, batch_metrics(items, srank=srank), strict=True):
            record(info, metrics)
    large = [t for t in wanted if t.numel > SMALL]
    ckpt.open_files()
    with ThreadPoolExecutor(max_workers=STAT_THREADS) as pool:
        for info, metrics in zip(large, pool.map(measure, large), strict=True):
            record(info, metrics)
    for la in layers:
        main = main_tensor(la)
        la.stats_tensor = main.name if main else None
        la.metrics = dict(la.tensor_metrics[main.name]) if main and main.name in la.tensor_metrics else None
        if la.metrics is not None and "nonfinite" not in skip:  # the layer's count covers all its tensors
            counts = [m.get("nonfinite") for m in la.tensor_metrics.values()]
            la.metrics["nonfinite"] = float(sum(c for c in counts if c is not None))
