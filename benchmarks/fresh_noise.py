"""How far apart two fresh inits of the same architecture read, layer by layer: the noise the score's
reference-relative components must not call a loss of plasticity.

    python benchmarks/fresh_noise.py [--write]

Each architecture is initialised with seed 1234 and saved; ``diagnose`` measures it against its own
fresh reference (seed 0) on 32 calibration images. For every layer with a gradient in both: the
signed difference of their relative gradients (each ``grad_ratio`` over its model's median) in
decades, positive where the checkpoint's layer gets less (the direction ``starved`` counts); and the
highest score. ``STARVED_SLACK`` in ``plastic/decide/score.py`` comes from the 95th percentile
printed here; the fractions' noise is a binomial standard error (no constant to fit).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine_line, replace_section  # noqa: E402

ARCHS = [
    ("efficientnet_b0", 96),
    ("mobilenetv3_small_100", 96),
    ("resnet50", 96),
    ("regnety_002", 96),
    ("convnext_atto", 96),
    ("vit_tiny_patch16_224", 224),
]


def _q(values: list[float], q: float) -> float:
    return sorted(values)[min(len(values) - 1, int(q * len(values)))]


def measure(arch: str, size: int, folder: Path) -> tuple[list[float], float]:
    """(decade differences of every layer with a gradient in both, the highest score)."""
    import timm
    from safetensors.torch import save_file

    from plastic.pipelines.diagnose import diagnose

    torch.manual_seed(1234)
    model = timm.create_model(arch, pretrained=False)
    path = folder / f"{arch}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    rep = diagnose(path, ROOT / "sample_checkpoints" / "calib", arch=arch, max_images=32,
                   input_size=(3, size, size), seed=0)  # fmt: skip
    body = [la for la in rep.layers if not la.classifier]
    both = [la for la in body if la.metrics.get("grad_ratio") and la.reference.get("grad_ratio")]
    med = statistics.median(la.metrics["grad_ratio"] for la in both)  # type: ignore[misc]
    ref = statistics.median(la.reference["grad_ratio"] for la in both)  # type: ignore[misc]
    diffs = [  # > 0: the checkpoint's layer gets less than the reference's (the direction starved counts)
        math.log10((la.reference["grad_ratio"] / ref) / (la.metrics["grad_ratio"] / med))  # type: ignore[operator]
        for la in both
    ]
    return diffs, max(la.score or 0.0 for la in body)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    torch.set_num_threads(2)
    rows, every = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for arch, size in ARCHS:
            diffs, top = measure(arch, size, Path(tmp))
            every += diffs
            typical = statistics.median(abs(d) for d in diffs)
            rows.append(
                f"| {arch} | {size} | {len(diffs)} | {typical:.3f} | {_q(diffs, 0.95):.3f} "
                f"| {max(diffs):.3f} | {top:.3f} |"
            )
            print(rows[-1], flush=True)
    typical = statistics.median(abs(d) for d in every)
    text = "\n".join(
        [
            "Seed 1234 checkpoint against the seed-0 reference, 32 calibration images. "
            f"Machine: {machine_line()}.",
            "",
            "| architecture | px | layers | median \\|diff\\| (decades) | p95 of diff | max diff "
            "| highest score |",
            "|---|---|---|---|---|---|---|",
            *rows,
            f"| **all** | | {len(every)} | {typical:.3f} | {_q(every, 0.95):.3f} | {max(every):.3f} | |",
        ]
    )
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "noise", text)


if __name__ == "__main__":
    main()
