"""The fresh reference's metrics, cached per architecture, images and settings.

The reference is the same architecture freshly initialised (seeded) and measured on the same images:
its metrics do not depend on the checkpoint, so a second ``diagnose`` of another checkpoint of the same
architecture on the same calibration folder (a CI job over training checkpoints) needs no second model
in the pass. A cache entry is one JSON file (no pickle: nothing in it runs), written atomically under
the user's cache folder, named by the SHA-256 of its key and holding the key itself: an entry is used
only when every key field equals the current run's (architecture, class count, channels, seed, tau,
preprocessing, the images by content and label, batch size, device kind, reference subset, and the
versions of plastic, torch and the model library), and when its layers are exactly the model's. Anything
else (unreadable, over the size cap, another key, other layers) is ignored and measured afresh.

Where: ``$PLASTIC_CACHE_DIR``, else ``$XDG_CACHE_HOME/plastic``, else ``~/.cache/plastic``; the
newest ``MAX_ENTRIES`` are kept. ``diagnose --no-cache`` neither reads nor writes it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plastic.measure.spread import SPREAD_DRAWS, SPREAD_IMAGES, SPREAD_SEED_STEP

if TYPE_CHECKING:
    from plastic.measure.calib import CalibSet, DataConfig
    from plastic.model.backends import ArchSpec

FORMAT = 2  # the entry layout (2: with the seed-to-seed spread); another value is ignored
# What the pass measures, beyond the versions: bumped when a metric starts or stops being measured
# within one plastic version (3: attention entropy in transformers and torch attention too), so an
# entry measured by older code is a miss rather than a reference without those metrics.
MEASURED = 3
MAX_BYTES = 64 << 20  # an entry larger than this is not read
MAX_ENTRIES = 256  # older entries are removed past this many
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class CachedReference:
    """What the reference's passes left, as the report needs it: per layer its metrics, its images, and
    per layer its seed-to-seed spread (measure/spread.py)."""

    layers: dict[str, dict[str, float | None]]
    images: int
    spread: dict[str, dict[str, float | None]] | None = None


def cache_dir() -> Path:
    explicit = os.environ.get("PLASTIC_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "plastic"


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes (images are small; read in 1 MiB pieces all the same)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_READ_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def entry_path(key: Mapping[str, Any]) -> Path:
    digest = hashlib.sha256(_canonical(key).encode()).hexdigest()
    return cache_dir() / "reference" / f"{digest}.json"


def load(key: Mapping[str, Any], layers: set[str]) -> CachedReference | None:
    """The cached reference for ``key`` whose layers are exactly ``layers``, or None."""
    path = entry_path(key)
    try:
        if path.stat().st_size > MAX_BYTES:
            return None
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        return None
    try:
        if _canonical(doc.get("key")) != _canonical(key):
            return None
    except ValueError:  # NaN or infinity in the stored key: not one of ours
        return None
    images, table = doc.get("images"), doc.get("layers")
    if not isinstance(images, int) or isinstance(images, bool) or images < 1 or not isinstance(table, dict):
        return None
    if set(table) != layers or not all(_metrics_ok(m) for m in table.values()):
        return None
    spread = doc.get("spread")
    if not isinstance(spread, dict) or not set(spread) <= layers:
        return None
    if not all(_metrics_ok(m) for m in spread.values()):
        return None
    return CachedReference(
        {k: dict(v) for k, v in table.items()}, images, {k: dict(v) for k, v in spread.items()}
    )


def store(key: Mapping[str, Any], ref: CachedReference) -> bool:
    """Write the entry atomically (False when the folder cannot be written: the run goes on without it)."""
    from plastic.errors import PlasticError
    from plastic.files.atomic import write_text

    path = entry_path(key)
    doc = {"format": FORMAT, "key": key, "images": ref.images, "layers": ref.layers, "spread": ref.spread}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(doc, sort_keys=True, allow_nan=False) + "\n")
        _prune(path.parent)
    except (OSError, ValueError, PlasticError):
        return False
    return True


def _prune(folder: Path) -> None:
    entries = sorted(folder.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[MAX_ENTRIES:]:
        old.unlink(missing_ok=True)


def _metrics_ok(m: object) -> bool:
    return isinstance(m, dict) and all(
        isinstance(k, str)
        and (v is None or (isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)))
        for k, v in m.items()
    )


def _canonical(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


def reference_key(
    spec: ArchSpec,
    cfg: DataConfig,
    calib: CalibSet,
    *,
    seed: int,
    tau: float,
    batch_size: int,
    device: str,
    amp: bool,
    reference_images: int | None,
) -> dict[str, Any]:
    """Everything the fresh reference's metrics depend on, as plain JSON values: the architecture as
    built, the preprocessing, the images (content and label, in order), the settings that change which
    sums are taken in which order, and the code (versions)."""
    from importlib import metadata

    import torch

    def version(package: str) -> str:
        try:
            return metadata.version(package)
        except metadata.PackageNotFoundError:
            return "unknown"

    from plastic.model.backends import backend_of

    library = backend_of(spec).library
    return {
        "plastic": version("plastic-reinit"),
        "torch": torch.__version__,
        "library": f"{library} {version(library)}" if library else spec.family,
        "arch": spec.label,
        "classes": spec.num_classes,
        "in_chans": spec.in_chans,
        "config": dict(spec.config) if spec.config is not None else None,
        "data": [
            list(cfg.input_size),
            list(cfg.mean),
            list(cfg.std),
            cfg.interpolation,
            cfg.crop_pct,
            cfg.crop_mode,
        ],
        "images": [file_digest(f) for f in calib.files],
        "labels": calib.labels,
        "classes_named": len(calib.class_names),
        "seed": seed,
        "tau": tau,
        "batch_size": batch_size,
        "device": device,
        "amp": amp,
        "reference_images": reference_images,
        "spread": [SPREAD_DRAWS, SPREAD_IMAGES, SPREAD_SEED_STEP],  # how the seed-to-seed spread is drawn
        "measured": MEASURED,
    }
