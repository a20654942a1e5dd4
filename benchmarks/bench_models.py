"""How long ``plastic diagnose`` takes, and how much memory, on common architectures of the three
families: the whole command, as a user runs it, beside a plain forward+backward over the checkpoint
alone (``benchmarks/plain_pass.py``) in the same run.

Each model is freshly initialised (seeded) and saved as its library saves it (timm and torchvision:
safetensors; transformers: ``save_pretrained``): the run time depends on the architecture and the
images, not on the weights. The calibration folder holds N images (the shipped samples, repeated
through links into 10 class folders). Reported per model and N: wall time of the whole process, the
pass, images per second and the peak resident memory (wait4) of ``diagnose`` and of the plain script,
and their ratios. On CUDA (``--device cuda``, or ``auto`` with a GPU) the same rows are written with
the peak GPU memory allocated.

    python benchmarks/bench_models.py --images 16 64 256 512 --out benchmarks/results/bench_models.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_checkpoints" / "calib"
sys.path.insert(0, str(ROOT / "benchmarks"))
MODELS = [
    "timm:mobilenetv2_100", "timm:efficientnet_b0", "torchvision:mobilenet_v3_large",
    "timm:vit_small_patch16_224", "timm:resnet50", "transformers:ResNetForImageClassification",
    "timm:convnext_tiny", "timm:vit_base_patch16_224",
]  # fmt: skip
# on CUDA: report the peak GPU memory of the diagnose process (it runs plastic's CLI in-process)
_CUDA_RUNNER = (
    "import sys, json, torch\n"
    "from plastic.cli.main import main\n"
    "sys.argv = ['plastic', *sys.argv[2:]]\n"
    "try:\n    main()\n"
    "finally:\n"
    "    open(sys.argv_peak, 'w').write(json.dumps(torch.cuda.max_memory_allocated()))\n"
)


def calib_folder(folder: Path, n: int) -> Path:
    images = sorted(SAMPLES.rglob("*.png"))
    for i in range(n):
        cls = folder / f"c{i % 10}"
        cls.mkdir(parents=True, exist_ok=True)
        (cls / f"{i:04d}.png").symlink_to(images[i % len(images)])
    return folder


def save(spec: str, out: Path) -> tuple[Path, list[str]]:
    """The fresh model saved as its library saves it; the ``--arch`` diagnose needs (none: found)."""
    import torch

    family, _, name = spec.partition(":")
    torch.manual_seed(0)
    if family == "transformers":
        import transformers

        config = getattr(transformers, name.replace("ForImageClassification", "Config"))()
        model = getattr(transformers, name)(config)
        model.save_pretrained(out / name)
        return out / name, []
    from safetensors.torch import save_file

    if family == "timm":
        import timm

        state = timm.create_model(name, pretrained=False).state_dict()
        path = out / f"{name}.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"arch": name})
        return path, []
    import torchvision

    state = torchvision.models.get_model(name, weights=None).state_dict()
    path = out / f"tv_{name}.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path, ["--arch", spec]


def _child(cmd: list[str]) -> tuple[str, float, float]:
    """Run one process; (its stdout, wall seconds, its own peak resident memory in GiB via wait4)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _pid, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}...: exited {os.waitstatus_to_exitcode(status)}")
    return out, wall, usage.ru_maxrss / 2**20


def run_diagnose(ckpt: Path, extra: list[str], calib: Path, n: int, device: str, tmp: Path) -> dict[str, Any]:
    args = ["diagnose", str(ckpt), *extra, "--data", str(calib), "--max-images", str(n), "--device", device,
            "--json", "-q"]  # fmt: skip
    peak_file = tmp / "gpu_peak.json"
    if device == "cuda":
        runner = _CUDA_RUNNER.replace("sys.argv_peak", repr(str(peak_file)))
        cmd = [sys.executable, "-c", runner, "-", *args]
    else:
        cmd = [sys.executable, "-m", "plastic", *args]
    out, wall, peak = _child(cmd)
    doc = json.loads(out)
    t = doc["timing"]
    row = {"wall_s": wall, "pass_s": t["pass_s"], "spread_s": t.get("spread_s"),
           "images_per_s": t["images_per_s"], "peak_gib": peak,
           "threads": t.get("threads"), "reference_cached": t.get("reference_cached"),
           "reference_images": doc["options"].get("reference_images")}  # fmt: skip
    if device == "cuda":
        row["gpu_peak_gib"] = json.loads(peak_file.read_text()) / 2**30
    return row


def run_plain(spec: str, ckpt: Path, calib: Path, n: int, device: str) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "benchmarks" / "plain_pass.py"), spec, str(ckpt), str(calib),
           "--images", str(n), "--device", device]  # fmt: skip
    out, wall, peak = _child(cmd)
    r = json.loads(out.strip().splitlines()[-1])
    return {"wall_s": wall, "pass_s": r["pass_s"], "images_per_s": n / r["pass_s"], "peak_gib": peak,
            **({"gpu_peak_gib": r["gpu_peak_gib"]} if "gpu_peak_gib" in r else {})}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, nargs="+", default=[16, 64, 256, 512])
    parser.add_argument("--models", nargs="*", default=MODELS)
    parser.add_argument("--device", default="auto", help="cpu, cuda, or auto (CUDA when present)")
    parser.add_argument("--warm", type=int, nargs="*", default=[256], help="image counts run twice (cache)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "bench_models.json")
    args = parser.parse_args()
    import torch
    from _report import machine_line

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    out = args.out if device == "cpu" else args.out.with_name(args.out.stem + "_cuda.json")
    rows: list[dict[str, Any]] = json.loads(out.read_text())["rows"] if out.exists() else []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["PLASTIC_CACHE_DIR"] = str(Path(tmp) / "cache")  # the children's: cold, then warm
        calib = calib_folder(Path(tmp) / "calib", max(args.images))
        for spec in args.models:
            todo = [n for n in args.images if not any(r["model"] == spec and r["images"] == n for r in rows)]
            if not todo:
                continue  # resumable: rows already in the file are kept
            ckpt, extra = save(spec, Path(tmp))
            for n in todo:
                d = run_diagnose(ckpt, extra, calib, n, device, Path(tmp))  # cold: the reference measured
                w = run_diagnose(ckpt, extra, calib, n, device, Path(tmp)) if n in args.warm else None
                p = run_plain(spec, ckpt, calib, n, device)
                rows.append({"model": spec, "images": n, "diagnose": d, "plain": p, "warm": w})
                print(f"{spec} {n}: diagnose {d} plain {p}", file=sys.stderr, flush=True)
                doc = {"machine": machine_line(), "device": device, "rows": rows}
                out.write_text(json.dumps(doc, indent=1) + "\n")
    print(table(rows, device))


def table(rows: list[dict[str, Any]], device: str) -> str:
    mem = "gpu_peak_gib" if device == "cuda" else "peak_gib"
    lines = [
        "| model | images | diagnose: whole | pass | images/s | peak | plain: whole | pass | peak "
        "| time (whole) | time (pass) | peak | peak vs its fewest images | warm: whole | time (whole) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    first = {r["model"]: r for r in sorted(rows, key=lambda r: -r["images"])}  # the fewest images, per model
    order = {m: i for i, m in enumerate(dict.fromkeys([*MODELS, *(r["model"] for r in rows)]))}
    for r in sorted(rows, key=lambda r: (order[r["model"]], r["images"])):  # rows of a resumed run in place
        d, p = r["diagnose"], r["plain"]
        base = first[r["model"]]["diagnose"][mem]
        lines.append(
            f"| {r['model']} | {r['images']} | {d['wall_s']:.0f} s | {d['pass_s']:.0f} s "
            f"| {d['images_per_s']:.1f} | {d[mem]:.2f} GiB | {p['wall_s']:.0f} s | {p['pass_s']:.0f} s "
            f"| {p[mem]:.2f} GiB "
            f"| {d['wall_s'] / p['wall_s']:.2f}x | {d['pass_s'] / p['pass_s']:.2f}x | {d[mem] / p[mem]:.2f}x "
            f"| {d[mem] / base - 1:+.1%} | {_warm(r.get('warm'), p)} |"
        )
    return "\n".join(lines)


def _warm(w: dict[str, Any] | None, p: dict[str, Any]) -> str:
    """The second run (the reference from the cache): its wall time, and against the plain script's."""
    if not w:
        return "- | -"
    return f"{w['wall_s']:.0f} s | {w['wall_s'] / p['wall_s']:.2f}x"


if __name__ == "__main__":
    main()
