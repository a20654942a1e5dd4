"""How long ``plastic diagnose`` takes on common architectures: the whole command, as a user runs it.

Each model is a timm architecture freshly initialised (seeded) and saved as safetensors: the run time
depends on the architecture and the images, not on the weights. The calibration folder holds N images
(the shipped samples, repeated through links into 10 class folders); the default ``--max-images`` is 256.
Reported: wall time of the whole process (imports, build, the one pass over checkpoint and fresh
reference, metrics), the pass's images per second, and the peak resident memory.

    python benchmarks/bench_models.py --images 256 --out /tmp/bench_models.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_checkpoints" / "calib"
MODELS = [
    "mobilenetv2_100", "efficientnet_b0", "resnet50", "convnext_tiny", "vit_small_patch16_224",
    "vit_base_patch16_224",
]  # fmt: skip


def calib_folder(folder: Path, n: int) -> Path:
    images = sorted(SAMPLES.rglob("*.png"))
    for i in range(n):
        cls = folder / f"c{i % 10}"
        cls.mkdir(parents=True, exist_ok=True)
        (cls / f"{i:04d}.png").symlink_to(images[i % len(images)])
    return folder


def save(arch: str, path: Path) -> Path:
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    state = timm.create_model(arch, pretrained=False).state_dict()
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"arch": arch})
    return path


def run(ckpt: Path, calib: Path, n: int) -> dict[str, float]:
    """One whole ``plastic diagnose`` process: its wall time, its pass, and its own peak memory (wait4
    reports the rusage of that one child, not the largest child so far)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "plastic", "diagnose", str(ckpt), "--data", str(calib), "--max-images", str(n),
         "--device", "cpu", "--json", "-q"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{ckpt.name}: plastic diagnose exited {proc.returncode}")
    timing = json.loads(out)["timing"]
    return {"wall_s": wall, "images_per_s": timing["images_per_s"], "pass_s": timing["pass_s"],
            "peak_gib": usage.ru_maxrss / 2**20}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        calib = calib_folder(Path(tmp) / "calib", args.images)
        for arch in args.models:
            ckpt = save(arch, Path(tmp) / f"{arch}.safetensors")
            r = run(ckpt, calib, args.images)
            rows.append((arch, r))
            print(f"{arch}: {r}", file=sys.stderr, flush=True)
            ckpt.unlink()
    cpu = platform.processor() or platform.machine()
    lines = [
        f"`plastic diagnose` on CPU, {args.images} images at each model's own input size, checkpoint + fresh "
        f"reference in one pass; {os.cpu_count()} cores ({cpu}), torch threads default.",
        "",
        "| model | whole command | the pass | images/s | peak memory |",
        "|---|---|---|---|---|",
    ]
    for a, r in rows:
        wall, pass_s, rate, peak = r["wall_s"], r["pass_s"], r["images_per_s"], r["peak_gib"]
        lines.append(f"| {a} | {wall:.0f} s | {pass_s:.0f} s | {rate:.1f} | {peak:.1f} GiB |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)


if __name__ == "__main__":
    main()
