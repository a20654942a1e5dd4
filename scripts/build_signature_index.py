"""Build src/plastic/data/signatures-timm-<version>.json.gz: every timm model's state-dict signature.

    python scripts/build_signature_index.py [--limit N] [--workers 2]

Each model is built on the meta device (no weights, no init, nothing downloaded). Rerun after
upgrading timm; plastic falls back to confirming candidates by building them when the index is stale.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def describe(arch: str) -> tuple[str, str, str, list[str], str] | tuple[str, str]:
    from plastic.model.signatures import model_signature

    try:
        sig = model_signature(arch)
    except Exception as e:  # some models need arguments or optional packages
        return arch, f"{type(e).__name__}: {str(e)[:120]}"
    return arch, sig.shapes, sig.names, list(sig.classifier), sig.order


def main() -> None:
    import timm

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--limit", type=int, default=0, help="only the first N models (for testing)")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    archs = timm.list_models()
    if args.limit:
        archs = archs[: args.limit]
    t0 = time.time()
    by_shapes: dict[str, list[str]] = {}
    by_names: dict[str, list[str]] = {}
    by_order: dict[str, list[str]] = {}
    classifier_sets: set[tuple[str, ...]] = set()
    failed = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for result in pool.map(describe, archs, chunksize=8):
            if len(result) == 2:
                failed[result[0]] = result[1]
                continue
            arch, shapes, names, classifier, order = result
            by_shapes.setdefault(shapes, []).append(arch)
            by_order.setdefault(order, []).append(arch)
            by_names.setdefault(names, []).append(arch)
            if classifier:
                classifier_sets.add(tuple(classifier))
    doc = {
        "timm_version": timm.__version__,
        "models": len(archs) - len(failed),
        "failed": failed,
        "by_shapes": by_shapes,
        "by_names": by_names,
        # roles and shapes in state-dict order, names aside: another implementation's file, same model
        "by_order": by_order,
        # longest first: a classifier that is a superset (head.fc + head.norm) is tried before its parts
        "classifier_sets": sorted(classifier_sets, key=lambda c: (-len(c), c)),
    }
    out = ROOT / "src" / "plastic" / "data" / f"signatures-timm-{timm.__version__}.json.gz"
    out.parent.mkdir(parents=True, exist_ok=True)
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        f.write(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    shared = sum(1 for v in by_shapes.values() if len(v) > 1)
    print(
        f"{doc['models']} models, {len(failed)} failed, {len(by_shapes)} signatures "
        f"({shared} shared by several models), {time.time() - t0:.0f}s -> {out}"
    )


if __name__ == "__main__":
    main()
