"""Benchmark ``plastic diagnose``: hooks + statistics against a plain timm forward, same images, same run.

    python benchmarks/bench_diagnose.py [--device auto] [--repeats 3] [--write]

For each model, the calibration images (sample_checkpoints/calib, 80 real images) are decoded and
preprocessed once; then, alternating in each round:
- plain: ``model(x)`` on every batch under ``torch.no_grad()`` (no hooks);
- stats: the same batches with plastic's capture hooks on (dormant/dead/saturation sums, pooled features);
and once: the full ``diagnose()`` call (decode + stats + gradient pass + metrics) end to end.
Also the time to detect an architecture from a checkpoint without metadata.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
CALIB = ROOT / "sample_checkpoints" / "calib"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine_line, replace_section  # noqa: E402


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize()


def random_checkpoint(arch: str, with_arch: bool = True) -> Path:
    import timm
    from safetensors.torch import save_file

    path = WORK / f"{arch}.{'meta' if with_arch else 'nometa'}.safetensors"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        sd = timm.create_model(arch, pretrained=False).state_dict()
        save_file(
            {k: v.contiguous() for k, v in sd.items()}, path, metadata={"arch": arch} if with_arch else None
        )
    return path


def bench_model(ckpt: Path, dev: torch.device, repeats: int, batch: int) -> dict[str, float]:
    from plastic.calib import CalibDataset, make_transform, resolve_data_config, scan_folder
    from plastic.capture import capture, find_act_sites
    from plastic.checkpoint import open_checkpoint
    from plastic.diagnosis import diagnose
    from plastic.models import build_model

    with open_checkpoint(ckpt) as c:
        model = build_model(c).model.to(dev)
        meta = c.metadata
    cfg = resolve_data_config(model, meta)
    calib = scan_folder(CALIB)
    ds = CalibDataset(calib, make_transform(cfg))
    x_all = torch.stack([ds[i][1] for i in range(len(ds))])  # type: ignore[misc]
    batches = [b.to(dev) for b in x_all.split(batch)]
    n = len(x_all)
    sites = find_act_sites(model, batches[0][:2])

    def plain() -> None:
        with torch.no_grad():
            for b in batches:
                model(b)
        sync(dev)

    def stats() -> None:
        with torch.no_grad(), capture(model, sites):
            for b in batches:
                model(b)
            sync(dev)

    plain(), stats()  # warm-up (kernels, allocator)
    tp, ts = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        plain()
        tp.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        stats()
        ts.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    rep = diagnose(ckpt, CALIB, device=str(dev), batch_size=batch)
    full = time.perf_counter() - t0
    p, s = statistics.median(tp), statistics.median(ts)
    return {
        "images": n,
        "input": cfg.input_size[-1],
        "plain_ips": n / p,
        "stats_ips": n / s,
        "overhead": s / p - 1,
        "full_s": full,
        "full_ips": n / full,
        "grad_s": rep.timing["gradients_s"],
    }


def bench_detect() -> list[tuple[str, float, str]]:
    from plastic.checkpoint import open_checkpoint
    from plastic.errors import ArchitectureError
    from plastic.models import resolve_arch
    from plastic.signatures import load_index

    load_index()  # the index is read once per process; count that separately below
    out = []
    for arch in ("resnet50", "convnext_tiny", "vit_tiny_patch16_224", "efficientnet_b0"):
        path = random_checkpoint(arch, with_arch=False)
        t0 = time.perf_counter()
        try:
            with open_checkpoint(path) as c:
                got, _src, cands, _notes = resolve_arch(c)
            verdict = f"{got}" + (f" (candidates: {', '.join(cands)})" if len(cands) > 1 else "")
        except ArchitectureError as e:
            verdict = (
                "asks for --arch: " + str(e).split("ambiguous architecture: ")[-1].split(" all match")[0]
            )
        out.append((arch, time.perf_counter() - t0, verdict))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    from plastic.validation import pick_device

    dev = pick_device(args.device)
    models = {
        "test_resnet (MNIST sample)": ROOT / "sample_checkpoints" / "test_resnet.mnist.safetensors",
        "test_vit (MNIST sample)": ROOT / "sample_checkpoints" / "test_vit.mnist.pt",
        "mobilenetv2_100 (ImageNet sample)": ROOT
        / "sample_checkpoints"
        / "mobilenetv2_100.imagenet.safetensors",
        "resnet50 (random init)": random_checkpoint("resnet50"),
    }
    rows = []
    for label, path in models.items():
        r = bench_model(path, dev, args.repeats, args.batch_size)
        rows.append(
            f"| {label} | {r['input']} px | {r['plain_ips']:.1f} | {r['stats_ips']:.1f} | "
            f"**{r['overhead'] * 100:+.0f}%** | {r['full_ips']:.1f} ({r['full_s']:.1f} s, of which "
            f"gradients {r['grad_s']:.1f} s) |"
        )
        print(rows[-1], flush=True)
    detect = bench_detect()
    lines = [
        f"Device: **{dev}**. Machine: {machine_line()}.",
        f"{len(list(CALIB.rglob('*.png')))} calibration images (sample_checkpoints/calib), batch "
        f"{args.batch_size}, median of {args.repeats} alternating rounds after a warm-up.",
        "",
        "| model | input | plain forward (img/s) | forward + plastic hooks (img/s) | hook overhead | "
        "full `diagnose()` img/s (time) |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        "Automatic architecture detection (checkpoint without metadata, signature index warm):",
        "",
        "| checkpoint | detection time | result |",
        "|---|---|---|",
        *[f"| random `{a}` | {t * 1e3:.0f} ms | {v} |" for a, t, v in detect],
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", f"diagnose-{dev.type}", text)


if __name__ == "__main__":
    main()
