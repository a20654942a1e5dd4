"""Attention entropy read in transformers and torchvision attention too: does the advice hold? (pre-registered
in BENCHMARKS.md, "Pre-registered: attention entropy for transformers and torchvision attention").

Each case is diagnosed twice in one process, the reference cache off: with attention read in every
family (the shipped code) and with it read in timm only (the code before the change, by filtering
``attention_sites``). Cases: N, fresh checkpoints (seed 1234 against the seed-0 reference) on the 80
sample images; S, scenario 8's source on its 80 calibration images and on 256 Animal-MNIST images.

    python benchmarks/attention_families.py --out benchmarks/results/attention_families.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "scripts"))

from _report import machine_line  # noqa: E402
from reference_images import advice, animal_folder  # noqa: E402
from transfer import SAMPLES, _source_path, calibration_folder  # noqa: E402

SWEEP = ("vit-msn", "ijepa", "dinov2-registers", "clip", "siglip", "metaclip2", "segformer")


def _small() -> dict[str, Callable[[], Any]]:
    import transformers as T
    from sweep_families import transformers_models

    made = {name: make for name, make in transformers_models().items() if name in SWEEP}
    vit = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               image_size=32, patch_size=8, num_labels=4)  # fmt: skip
    made["vit"] = lambda: T.ViTForImageClassification(T.ViTConfig(**vit))
    made["deit"] = lambda: T.DeiTForImageClassification(T.DeiTConfig(**vit))
    made["beit"] = lambda: T.BeitForImageClassification(T.BeitConfig(**vit))
    made["dinov2"] = lambda: T.Dinov2ForImageClassification(T.Dinov2Config(**vit))
    made["swin"] = lambda: T.SwinForImageClassification(T.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
        num_labels=4))  # fmt: skip
    made["vit (DeiT-Tiny size)"] = lambda: T.ViTForImageClassification(T.ViTConfig(
        hidden_size=192, num_hidden_layers=12, num_attention_heads=3, intermediate_size=768,
        image_size=224, num_labels=10))  # fmt: skip
    return made


def null_checkpoints(out: Path) -> list[tuple[str, Path]]:
    import torch
    import torchvision

    made = []
    for name, make in _small().items():
        torch.manual_seed(1234)
        folder = out / name.replace(" ", "_").replace("(", "").replace(")", "")
        make().save_pretrained(folder)
        made.append((f"null transformers {name}", folder))
    for arch in ("vit_b_32", "vit_b_16"):
        torch.manual_seed(1234)
        path = out / f"tv_{arch}.pth"
        torch.save(getattr(torchvision.models, arch)(weights=None).state_dict(), path)
        made.append((f"null torchvision:{arch}", path))
    return made


def run(ckpt: Path, calib: Path, n: int, timm_only: bool) -> dict[str, Any]:
    import plastic.measure.capture as capture
    from plastic.model.attention import attention_sites
    from plastic.pipelines.diagnose import diagnose

    capture.attention_sites = (  # type: ignore[assignment]
        (lambda m: [s for s in attention_sites(m) if s.kind == "timm"]) if timm_only else attention_sites
    )
    try:
        t0 = time.perf_counter()
        doc = diagnose(ckpt, calib, max_images=n, seed=0, device="cpu", cache=False).to_dict()
    finally:
        capture.attention_sites = attention_sites  # type: ignore[assignment]
    scored = [la for la in doc["layers"] if la["score"] is not None]
    top = max(scored, key=lambda la: la["score"], default=None)
    collapsed = [
        (la["name"], (la.get("components") or {}).get("collapsed_attention"))
        for la in doc["layers"]
        if (la.get("components") or {}).get("collapsed_attention") is not None
    ]
    worst = max(collapsed, key=lambda c: c[1], default=None)
    return {
        "advice": advice(doc),
        "top": None if top is None else [top["name"], top["score"]],
        "flagged": sum(1 for la in scored if la["score"] >= 0.10),
        "attention_layers": len(collapsed),
        "worst_collapsed_attention": worst,
        "pass_s": doc["timing"]["pass_s"],
        "wall_s": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/attention_families.json")
    parser.add_argument("--only", help="comma-separated case labels (default: all)")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    results = []
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        source = _source_path("transformers:ViTForImageClassification")
        cases = [
            ("S", "scenario 8 (80 calibration images)", source, calibration_folder("animal", tmp / "s8"), 80),
            ("S", "scenario 8 source on 256 Animal-MNIST images", source, animal_folder(tmp, 256), 256),
        ]
        cases += [("N", label, path, SAMPLES / "calib", 80) for label, path in null_checkpoints(tmp)]
        for group, label, ckpt, calib, n in cases:
            if args.only and label not in args.only.split(","):
                continue
            before = run(ckpt, calib, n, timm_only=True)
            after = run(ckpt, calib, n, timm_only=False)
            row = {"set": group, "case": label, "before": before, "after": after}
            results.append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
    doc = {"machine": machine_line(), "cases": results}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
