"""What every JSON document shares: non-finite floats as null, the checkpoint section. The documents
themselves are built by their results' ``to_dict()`` (:mod:`plastic.pipelines.report`,
:class:`plastic.pipelines.inspect.InspectReport`, :class:`plastic.pipelines.manifest.ReinitResult`);
their shapes are typed in :mod:`plastic.documents.schema`."""

from __future__ import annotations

import math

from plastic.documents.schema import CheckpointDoc
from plastic.files.checkpoint import Checkpoint


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
