"""Does the fresh reference need every calibration image? (issue 31 item 2, pre-registered in
BENCHMARKS.md, "Pre-registered: the fresh reference on fewer images").

Each case is diagnosed with the shipped ``diagnose`` at ``reference_images=None`` (the reference on all
N images) and at R = 16, 32, 64 (a seeded, class-spread subset); the advice, the layer scores (Spearman's
rho) and the pass's time are compared. Cases: S, the 11 transfer scenarios as diagnosed there (80
images); L, 256 Animal-MNIST training images for the five source checkpoints; N, fresh checkpoints of
the three families (seed 1234 against the seed-0 reference) on the 80 sample images.

    python benchmarks/reference_images.py --out benchmarks/results/reference_images.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine_line  # noqa: E402
from transfer import SAMPLES, SCENARIOS, _source_path, calibration_folder  # noqa: E402

SIZES = (16, 32, 64)


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rho with average ranks for ties."""
    from scipy.stats import spearmanr

    if len(a) < 3 or len(set(a)) < 2 or len(set(b)) < 2:
        return 1.0 if a == b else 0.0
    return float(spearmanr(a, b).statistic)


def advice(doc: dict[str, Any]) -> dict[str, Any]:
    rec = doc["recommendation"] or {}
    return {k: rec.get(k) for k in ("action", "strategy", "options", "layers", "lr_scale")}


def animal_folder(out: Path, n: int) -> Path:
    """``n`` Animal-MNIST training images (the first n/10 of each class) as class subfolders of PNGs."""
    from PIL import Image

    data = np.load(SAMPLES / "animal_mnist_transfer.npz")
    x, y = data["x_train"], data["y_train"]
    root = out / "animal256"
    taken: dict[int, int] = {}
    for img, label in zip(x, y, strict=True):
        c = int(label)
        if taken.get(c, 0) >= n // 10 + (1 if c < n % 10 else 0):
            continue
        taken[c] = taken.get(c, 0) + 1
        (root / str(c)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / str(c) / f"{sum(taken.values()):04d}.png")
    return root


def null_checkpoints(out: Path) -> list[tuple[str, Path, str | None]]:
    """Fresh seed-1234 checkpoints of the three families: (label, path, --arch)."""
    import timm
    import torch
    import torchvision
    import transformers
    from safetensors.torch import save_file

    made = []
    for arch in ("efficientnet_b0", "convnext_atto", "vit_tiny_patch16_224"):
        torch.manual_seed(1234)
        sd = timm.create_model(arch).state_dict()
        path = out / f"{arch}.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path), metadata={"arch": arch})
        made.append((f"null {arch}", path, None))
    for arch in ("resnet18", "mobilenet_v3_small"):
        torch.manual_seed(1234)
        sd = getattr(torchvision.models, arch)(weights=None).state_dict()
        path = out / f"tv_{arch}.safetensors"
        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
        made.append((f"null torchvision:{arch}", path, f"torchvision:{arch}"))
    torch.manual_seed(1234)
    cfg = transformers.ViTConfig(hidden_size=192, num_hidden_layers=4, num_attention_heads=3,
                                 intermediate_size=768, image_size=224, num_labels=10)  # fmt: skip
    transformers.ViTForImageClassification(cfg).save_pretrained(out / "hf_vit")
    made.append(("null transformers:ViT (4 layers)", out / "hf_vit", None))
    return made


def cases(tmp: Path, which: str) -> list[tuple[str, str, Path, Path, int, str | None]]:
    """(set, label, checkpoint, calibration folder, images, arch)."""
    out: list[tuple[str, str, Path, Path, int, str | None]] = []
    if "S" in which:
        for n, sc in SCENARIOS.items():
            ckpt = _source_path(sc["arch"]) if "source" in sc else sc["ckpt"]
            calib = calibration_folder(sc.get("target", "animal"), tmp / f"s{n}")
            out.append(("S", f"scenario {n}", ckpt, calib, 80, None))
    if "L" in which:
        big = animal_folder(tmp, 256)
        for label, ckpt in (
            ("test_resnet", SAMPLES / "test_resnet.mnist.safetensors"),
            ("mobilenetv2_100", SAMPLES / "mobilenetv2_100.imagenet.safetensors"),
            ("tf_efficientnet_lite2", _source_path("tf_efficientnet_lite2")),
            ("torchvision shufflenet_v2_x1_0", _source_path("torchvision:shufflenet_v2_x1_0")),
            ("transformers ViT", _source_path("transformers:ViTForImageClassification")),
        ):
            out.append(("L", label, ckpt, big, 256, None))
    if "N" in which:
        for label, ckpt, arch in null_checkpoints(tmp):
            out.append(("N", label, ckpt, SAMPLES / "calib", 80, arch))
    return out


def run_case(ckpt: Path, calib: Path, n: int, arch: str | None) -> dict[str, Any]:
    from plastic.pipelines.diagnose import diagnose

    runs: dict[str, Any] = {}
    for r in (None, *SIZES):
        t0 = time.perf_counter()
        doc = (
            diagnose(ckpt, calib, max_images=n, seed=0, device="cpu", arch=arch, reference_images=r)
        ).to_dict()
        scores = {la["name"]: la["score"] for la in doc["layers"] if la["score"] is not None}
        runs["all" if r is None else str(r)] = {
            "advice": advice(doc), "scores": scores, "pass_s": doc["timing"]["pass_s"],
            "wall_s": time.perf_counter() - t0,
        }  # fmt: skip
    full = runs["all"]
    for key, run in runs.items():
        names = sorted(full["scores"])
        a = [full["scores"][k] for k in names]
        b = [run["scores"].get(k, 0.0) for k in names]
        run["rho"] = spearman(a, b)
        run["max_abs_change"] = max((abs(x - y) for x, y in zip(a, b, strict=True)), default=0.0)
        run["same_advice"] = run["advice"] == full["advice"]
        run["time_vs_all"] = run["pass_s"] / full["pass_s"] if full["pass_s"] else None
        del key
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sets", default="SLN", help="which case sets: S, L, N")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reference_images.json")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(2)
    # resumable: the cases already in the file are kept, and only the others run
    results: list[dict[str, Any]] = json.loads(args.out.read_text())["cases"] if args.out.exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        for group, label, ckpt, calib, n, arch in cases(Path(tmp), args.sets):
            if any(c["set"] == group and c["case"] == label for c in results):
                continue
            runs = run_case(ckpt, calib, n, arch)
            results.append({"set": group, "case": label, "images": n, "runs": runs})
            summary = {k: (v["same_advice"], round(v["rho"], 3)) for k, v in runs.items()}
            print(f"{group} {label}: {summary}", file=sys.stderr, flush=True)
            args.out.write_text(json.dumps({"machine": machine_line(), "cases": results}, indent=1) + "\n")
    print(table(results))


def table(results: list[dict[str, Any]]) -> str:
    lines = ["| R | same advice | rho: median | rho: worst (case) | largest score change | pass vs all |",
             "|---|---|---|---|---|---|"]  # fmt: skip
    for r in SIZES:
        rows = [(c, c["runs"][str(r)]) for c in results]
        same = sum(run["same_advice"] for _, run in rows)
        rhos = sorted(run["rho"] for _, run in rows)
        worst_case, worst = min(rows, key=lambda cr: cr[1]["rho"])
        change = max(run["max_abs_change"] for _, run in rows)
        times = [run["time_vs_all"] for _, run in rows if run["time_vs_all"]]
        lines.append(
            f"| {r} | {same} of {len(rows)} | {rhos[len(rhos) // 2]:.3f} | {worst['rho']:.3f} "
            f"({worst_case['case']}) | {change:.3f} | {np.median(times):.2f}x (median) |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
