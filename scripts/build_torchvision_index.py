"""Build src/plastic/data/signatures-torchvision-<version>.json.gz: every torchvision classification
model's state-dict (key, shape) pairs, its classifier keys and its stem convolution.

    python scripts/build_torchvision_index.py

Each model is built with ``weights=None`` (nothing downloaded) under an init-skipping dispatch mode,
at its default class count and at 10 classes: the tensors whose shape follows the class count are the
classifier. Rerun after upgrading torchvision.
"""

from __future__ import annotations

import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def shapes_of(name: str, num_classes: int) -> dict[str, list[int]]:
    from plastic.model.backends import ArchSpec
    from plastic.model.backends.torchvision_family import BACKEND
    from plastic.model.init_replay import MetaShapesOnly

    with MetaShapesOnly():  # allocation only: no init values drawn
        model = BACKEND.create(ArchSpec("torchvision", name, num_classes))
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def main() -> None:
    import torch
    import torchvision
    from torchvision import models

    torch.set_num_threads(1)
    t0 = time.time()
    doc: dict[str, object] = {"torchvision_version": torchvision.__version__}
    entries = {}
    from plastic.model.backends.torchvision_family import VARIANTS

    for name in [*models.list_models(module=models), *VARIANTS]:
        full, small = shapes_of(name, 1000), shapes_of(name, 10)
        classifier = sorted(k for k in full if small.get(k) != full[k])
        convs = [k for k, s in full.items() if k.endswith("weight") and len(s) == 4]
        entries[name] = {
            "tensors": [[k, s] for k, s in full.items()],
            "classifier": classifier,
            "first_conv": convs[0] if convs else None,
        }
        print(f"{name}: {len(full)} tensors, classifier {classifier}", file=sys.stderr)
    doc["models"] = entries
    out = ROOT / "src" / "plastic" / "data" / f"signatures-torchvision-{torchvision.__version__}.json.gz"
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        f.write(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    print(f"{len(entries)} models, {time.time() - t0:.0f}s -> {out} ({out.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
