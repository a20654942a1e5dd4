"""Benchmark ``plastic diagnose``: hooks + statistics against a plain timm forward, same images, same run.

    python benchmarks/bench_diagnose.py [--device auto] [--repeats 3] [--write]

For each model, the calibration images (sample_checkpoints/calib, 80 real images) are decoded and
preprocessed once; then, alternating in each round:
- plain: ``model(x)`` on every batch under ``torch.no_grad()`` (no hooks);
- stats: the same batches with plastic's capture hooks on (dormant/dead/saturation sums, pooled features);
then, from the image files: a plain timm eval loop, a plain forward+backward loop, and plastic's one
pass (``diagnose()``'s ``timing.pass_s``; the call end to end beside it).
Also the time to detect an architecture from a checkpoint without metadata.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
CALIB = ROOT / "sample_checkpoints" / "calib"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine_line, replace_section  # noqa: E402

OVERHEAD_ROUNDS = 9  # alternating plain / hooked rounds for the hook overhead (3 gave +-15 points)


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
    """Hook overhead on pre-decoded batches, then whole passes from disk: plastic's one pass against a
    plain timm eval loop and a plain forward+backward loop over the same images, same batch size."""
    import torch.nn.functional as F

    from plastic.files.checkpoint import open_checkpoint
    from plastic.measure.calib import (
        CalibDataset,
        calib_batches,
        make_transform,
        resolve_data_config,
        scan_folder,
    )
    from plastic.measure.capture import capture
    from plastic.measure.onepass import CPU_CHUNK
    from plastic.model.build import build_model
    from plastic.model.init_values import fresh_model
    from plastic.model.modules import find_act_sites
    from plastic.pipelines.diagnose import diagnose, full_float32

    with open_checkpoint(ckpt) as c:
        built = build_model(c)
        model = built.model.to(dev).eval()
        meta = c.metadata
        # the default's fresh reference: the same architecture, freshly initialised
        fresh = fresh_model(built.arch, built.num_classes, 0, c.in_chans).to(dev).eval()
    cfg = resolve_data_config(model, meta)
    calib = scan_folder(CALIB)
    ds = CalibDataset(calib, make_transform(cfg))
    x_all = torch.stack([ds[i][1] for i in range(len(ds))])  # type: ignore[misc]
    batches = [b.to(dev) for b in x_all.split(batch)]
    n = len(x_all)
    sites = find_act_sites(model, batches[0][:2])
    chunk = batch if dev.type == "cuda" else min(batch, CPU_CHUNK)

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

    def eval_loop(m: torch.nn.Module = model, hooked: bool = False) -> None:
        """What a user's timm eval script does: decode + forward (``hooked``: with plastic's hooks)."""
        with torch.no_grad(), capture(m, find_act_sites(m, batches[0][:2])) if hooked else nullcontext():
            for _idx, x, _bad in calib_batches(calib, cfg, batch):
                if x is not None:
                    m(x.to(dev))
            sync(dev)

    def fwd_bwd_loop(m: torch.nn.Module = model) -> None:  # the least a gradient probe costs
        torch.manual_seed(0)  # decode + forward + backward
        head: torch.nn.Linear | None = None
        for _idx, x, _bad in calib_batches(calib, cfg, batch):
            if x is None:
                continue
            for xs in x.to(dev).split(chunk):
                feats = m.forward_head(m.forward_features(xs), pre_logits=True)  # type: ignore[operator]
                if head is None:
                    head = torch.nn.Linear(feats.shape[1], 10).to(dev)
                y = torch.zeros(len(xs), dtype=torch.long, device=dev)
                F.cross_entropy(head(feats), y).backward()
        m.zero_grad(set_to_none=True)
        sync(dev)

    def script() -> None:  # the hand-written baseline: a hooked eval pass, then fwd+bwd
        eval_loop(model, hooked=True)
        fwd_bwd_loop(model)

    def script_both() -> None:  # the default's work done that way: the model, then a fresh one
        for m in (model, fresh):
            eval_loop(m, hooked=True)
            fwd_bwd_loop(m)

    loops: dict[str, Callable[[], None]] = {
        "plain": plain, "stats": stats, "eval": eval_loop, "fwd_bwd": fwd_bwd_loop,
        "script": script, "script_both": script_both,
    }  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in loops}
    with full_float32():
        for fn in (plain, stats, eval_loop, script_both):  # warm-up (kernels, allocator, page cache)
            fn()
        for r in range(max(repeats, OVERHEAD_ROUNDS)):
            for k, fn in loops.items():
                if r >= repeats and k not in ("plain", "stats"):
                    continue  # the short pre-decoded pair gets more rounds: its ratio is the noisy one
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    runs, ref_runs = [], []
    for _ in range(repeats):  # alternating: one model's pass (--no-reference), then the default's
        t0 = time.perf_counter()
        rep = diagnose(ckpt, CALIB, device=str(dev), batch_size=batch, reference=False)
        runs.append((time.perf_counter() - t0, rep.timing["pass_s"], rep.timing["build_s"]))
        t0 = time.perf_counter()
        with_ref = diagnose(ckpt, CALIB, device=str(dev), batch_size=batch)
        ref_runs.append((time.perf_counter() - t0, with_ref.timing["pass_s"]))
    full, one_pass, build = min(runs)
    ref_full, ref_pass = min(ref_runs)
    arch, classes = rep.arch, next(la.units for la in reversed(rep.layers) if la.classifier)
    plain_builds = []
    for _ in range(repeats):  # what a user's script does before its loop: create the model, load the file
        t0 = time.perf_counter()
        create_and_load(ckpt, arch, classes, dev)
        plain_builds.append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    p, s, e, b = med["plain"], med["stats"], med["eval"], med["fwd_bwd"]
    return {
        "images": n,
        "input": cfg.input_size[-1],
        "plain_ips": n / p,
        "stats_ips": n / s,
        "overhead": s / p - 1,
        "eval_s": e,
        "fwd_bwd_s": b,
        "script_s": med["script"],
        "script_both_s": med["script_both"],
        "ref_pass_s": ref_pass,
        "ref_full_s": ref_full,
        "pass_s": one_pass,
        "full_s": full,
        "build_s": build,
        "create_load_s": statistics.median(plain_builds),
    }


def create_and_load(ckpt: Path, arch: str, num_classes: int, dev: torch.device) -> torch.nn.Module:
    """The plain build: ``timm.create_model`` + the file's state dict, strict, on the device."""
    import timm
    from safetensors.torch import load_file

    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    if ckpt.suffix == ".safetensors":
        state = load_file(str(ckpt))
    else:
        obj = torch.load(ckpt, map_location="cpu", weights_only=True)
        state = obj.get("state_dict", obj) if isinstance(obj, dict) else obj
    model.load_state_dict(state, strict=True)
    return model.to(dev).eval()


def bench_detect() -> list[tuple[str, float, str]]:
    from plastic.errors import ArchitectureError
    from plastic.files.checkpoint import open_checkpoint
    from plastic.model.build import resolve_arch
    from plastic.model.signatures import load_index

    load_index()  # the index is read once per process; count that separately below
    out = []
    for arch in ("resnet50", "convnext_tiny", "vit_tiny_patch16_224", "efficientnet_b0"):
        path = random_checkpoint(arch, with_arch=False)
        t0 = time.perf_counter()
        try:
            with open_checkpoint(path) as c:
                res = resolve_arch(c)
            got, cands = res.arch, res.candidates
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
    from plastic.documents.validation import pick_device

    dev = pick_device(args.device)
    models = {
        "test_resnet (MNIST sample)": ROOT / "sample_checkpoints" / "test_resnet.mnist.safetensors",
        "test_vit (MNIST sample)": ROOT / "sample_checkpoints" / "test_vit.mnist.pt",
        "mobilenetv2_100 (ImageNet sample)": ROOT
        / "sample_checkpoints"
        / "mobilenetv2_100.imagenet.safetensors",
        "resnet50 (random init)": random_checkpoint("resnet50"),
    }
    rows, passes, builds, refs = [], [], [], []
    for label, path in models.items():
        r = bench_model(path, dev, args.repeats, args.batch_size)
        rows.append(
            f"| {label} | {r['input']} px | {r['plain_ips']:.1f} | {r['stats_ips']:.1f} | "
            f"**{r['overhead'] * 100:+.0f}%** |"
        )
        builds.append(
            f"| {label} | {r['create_load_s']:.2f} s | {r['build_s']:.2f} s | "
            f"**{r['build_s'] - r['create_load_s']:+.2f} s** |"
        )
        passes.append(
            f"| {label} | {r['eval_s']:.2f} s | {r['fwd_bwd_s']:.2f} s | {r['script_s']:.2f} s | "
            f"{r['pass_s']:.2f} s | **{r['pass_s'] / r['eval_s']:.2f}x** | "
            f"**{r['pass_s'] / r['fwd_bwd_s']:.2f}x** | **{r['pass_s'] / r['script_s']:.2f}x** | "
            f"{r['full_s']:.2f} s |"
        )
        refs.append(
            f"| {label} | {r['script_both_s']:.2f} s | {r['ref_pass_s']:.2f} s | "
            f"**{r['ref_pass_s'] / r['script_both_s']:.2f}x** | {r['ref_full_s']:.2f} s |"
        )
        print(rows[-1], passes[-1], refs[-1], flush=True)
    detect = bench_detect()
    lines = [
        f"Device: **{dev}**. Machine: {machine_line()}.",
        f"{len(list(CALIB.rglob('*.png')))} calibration images (sample_checkpoints/calib), batch "
        f"{args.batch_size}, median of {args.repeats} alternating rounds after a warm-up "
        f"({max(args.repeats, OVERHEAD_ROUNDS)} for the hook overhead).",
        "",
        "Hook overhead, on batches decoded beforehand:",
        "",
        "| model | input | plain forward (img/s) | forward + plastic hooks (img/s) | hook overhead |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "Whole passes from the image files (decode included), against plain loops over the same "
        "images in the same process: a timm eval loop (decode + forward, no grad), a forward + "
        "backward loop (decode + forward + linear head + backward, no hooks), and the hand-written "
        "script issue 12 measured against (an eval loop with plastic's hooks, then that fwd+bwd loop); "
        "plastic's one pass = decode + forward with the statistics hooks + backward of the probe loss "
        f"(`timing.pass_s`, `--no-reference`), best of {args.repeats} `diagnose()` calls:",
        "",
        "| model | plain eval loop | plain fwd+bwd loop | hooks pass + fwd+bwd loop | plastic one pass "
        "| vs eval loop | vs fwd+bwd loop | vs hooks + fwd+bwd | `diagnose()` end to end |",
        "|---|---|---|---|---|---|---|---|---|",
        *passes,
        "",
        "The default (the fresh reference measured in the same pass) against the same work done the "
        "hand-written way: hooks pass + fwd+bwd loop over the model, then over a freshly initialised one:",
        "",
        "| model | hooks + fwd+bwd, both models | plastic one pass, two models | ratio "
        "| `diagnose()` end to end |",
        "|---|---|---|---|---|",
        *refs,
        "",
        "Build step: plastic's `timing.build_s` (read the file, decide the architecture, build, load, "
        "fingerprint) against `timm.create_model` + the file's state dict loaded strictly, same process:",
        "",
        "| model | create_model + load | plastic build | difference |",
        "|---|---|---|---|",
        *builds,
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
