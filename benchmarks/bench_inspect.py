"""Benchmark ``plastic inspect`` on a >= 100 MB checkpoint against a plain reduction pass, same run.

    python benchmarks/bench_inspect.py [--arch resnet50] [--repeats 5] [--write]

Builds a randomly initialised timm model (seeded; no download) and saves it as safetensors under
benchmarks/_work/. Then, alternating the contenders in each round so that both see the same machine
state (page cache warm for both):
- header-only inspect: ``inspect_checkpoint(stats=False)`` in-process, and the full CLI
  (``plastic inspect --no-stats --json``) as a subprocess, interpreter start-up included;
- full-stats inspect throughput (MB/s of tensor data) against the baseline: open the same file with
  safetensors and run ``t.float().abs().sum()`` on every tensor.
``--write`` replaces the inspect section of BENCHMARKS.md with the results.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine_line, replace_section  # noqa: E402


def build_checkpoint(arch: str) -> Path:
    import timm
    from safetensors.torch import save_file

    path = WORK / f"{arch}.random.safetensors"
    if not path.exists():
        WORK.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False)
        sd = {k: v.contiguous() for k, v in model.state_dict().items()}
        save_file(sd, path, metadata={"arch": arch})
    return path


def baseline_pass(path: Path) -> float:
    from safetensors import safe_open

    total = 0.0
    with safe_open(str(path), framework="pt") as f:
        for k in f.keys():  # noqa: SIM118 - safe_open is not a Mapping
            total += float(f.get_tensor(k).float().abs().sum())
    return total


def weightwatcher_seconds(arch: str) -> float | None:
    """WeightWatcher 0.7's ``analyze()`` on the same (random) model, as a whole process; None without it."""
    import importlib.util

    if importlib.util.find_spec("weightwatcher") is None:
        return None
    code = (
        "import timm, torch, weightwatcher as ww; torch.manual_seed(0); "
        f"m = timm.create_model({arch!r}, pretrained=False); ww.WeightWatcher(model=m).analyze()"
    )
    runs = [
        timed(subprocess.run, [sys.executable, "-c", code], check=True, capture_output=True) for _ in range(2)
    ]
    return min(runs)


def timed(fn, *args, **kw) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(*args, **kw)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()

    from plastic.pipelines.inspect import inspect_checkpoint

    path = build_checkpoint(args.arch)
    size_mb = path.stat().st_size / 1e6
    data_mb = sum(t.nbytes for t in inspect_checkpoint(path, stats=False).checkpoint.tensors) / 1e6
    baseline_pass(path)  # warm the page cache for everyone
    base, default, srank, header, cli, proc, proc_srank, torch_import = ([] for _ in range(8))
    cmd = [sys.executable, "-m", "plastic", "inspect", "--no-stats", "--json", str(path)]
    full_cmd = [sys.executable, "-m", "plastic", "inspect", "--json", str(path)]
    for _ in range(args.repeats):
        base.append(timed(baseline_pass, path))
        default.append(timed(inspect_checkpoint, path, stats=True))
        srank.append(timed(inspect_checkpoint, path, stats=True, stable_rank=True))
        header.append(timed(inspect_checkpoint, path, stats=False))
        cli.append(timed(subprocess.run, cmd, check=True, capture_output=True))
        proc.append(timed(subprocess.run, full_cmd, check=True, capture_output=True))
        proc_srank.append(
            timed(subprocess.run, [*full_cmd, "--stable-rank"], check=True, capture_output=True)
        )
        torch_import.append(timed(subprocess.run, [sys.executable, "-c", "import torch"], check=True))
    b, f, s, h, c, p, ps, ti = (
        statistics.median(x) for x in (base, default, srank, header, cli, proc, proc_srank, torch_import)
    )
    ww = weightwatcher_seconds(args.arch)
    rows = [
        ("header-only inspect (library call)", f"{h * 1e3:.1f} ms", "-"),
        ("header-only inspect (CLI process, `--no-stats --json`)", f"{c * 1e3:.0f} ms", "-"),
        (
            "baseline: safetensors get_tensor + `t.float().abs().sum()`",
            f"{b:.3f} s",
            f"{data_mb / b:.0f} MB/s",
        ),
        ("inspect, default statistics (library call, numpy)", f"{f:.3f} s", f"{data_mb / f:.0f} MB/s"),
        ("inspect `--stable-rank` (library call)", f"{s:.3f} s", f"{data_mb / s:.0f} MB/s"),
        ("`plastic inspect --json` (whole process, no torch import)", f"{p:.2f} s", "-"),
        ("`plastic inspect --json --stable-rank` (whole process)", f"{ps:.2f} s", "-"),
        ("`python -c 'import torch'` alone, for scale", f"{ti:.2f} s", "-"),
    ]
    if ww is not None:
        rows.append(("WeightWatcher `analyze()` on the same model (whole process)", f"{ww:.2f} s", "-"))
    lines = [
        f"Checkpoint: random timm `{args.arch}`, {size_mb:.1f} MB safetensors "
        f"({data_mb:.1f} MB of tensor data), page cache warm; median of {args.repeats} alternating rounds.",
        f"Machine: {machine_line()}.",
        "",
        "| measurement | time | throughput |",
        "|---|---|---|",
        *[f"| {a} | {t} | {r} |" for a, t, r in rows],
        "",
        f"**Default statistics throughput / baseline throughput = {b / f:.2f}x** (goal: >= 0.5x); "
        f"with `--stable-rank`: **{b / s:.2f}x**."
        + (f" Whole process against WeightWatcher: **{p / ww:.2f}x** (goal: <= 0.1x)." if ww else ""),
    ]
    text = "\n".join(lines)
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "inspect", text)


if __name__ == "__main__":
    main()
