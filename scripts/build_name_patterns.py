"""Build src/plastic/data/patterns-timm-<version>.json.gz: every timm model's tensor-name patterns
(indices replaced by ``#``: ``blocks.#.#.conv_pw.weight``), for the "nearest model" an error names when
a checkpoint matches no signature.

    python scripts/build_name_patterns.py [--workers 2]

Each model is built on the meta device (no weights). Patterns are stored once in a vocabulary and each
model lists the ids of its own; families share most of theirs, so the file stays small.
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


def patterns_of(arch: str) -> tuple[str, list[str] | None]:
    from plastic.model.signatures import model_signature, name_pattern

    try:
        keys = model_signature(arch).keys
    except Exception:  # some models need arguments or optional packages
        return arch, None
    return arch, sorted({name_pattern(k) for k in keys})


def main() -> None:
    import timm

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    t0 = time.time()
    vocab: dict[str, int] = {}
    models: dict[str, list[int]] = {}
    with ProcessPoolExecutor(args.workers) as pool:
        for arch, pats in pool.map(patterns_of, timm.list_models(), chunksize=8):
            if pats is not None:
                models[arch] = [vocab.setdefault(p, len(vocab)) for p in pats]
    doc = {"timm_version": timm.__version__, "vocabulary": list(vocab), "models": models}
    out = ROOT / "src" / "plastic" / "data" / f"patterns-timm-{timm.__version__}.json.gz"
    with gzip.GzipFile(out, "wb", mtime=0) as f:
        f.write(json.dumps(doc, sort_keys=True, separators=(",", ":")).encode())
    took = time.time() - t0
    print(f"{len(models)} models, {len(vocab)} patterns, {took:.0f}s -> {out} ({out.stat().st_size} B)")


if __name__ == "__main__":
    main()
