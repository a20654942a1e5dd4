"""Benchmark ``plastic reinit`` on a >= 100 MB checkpoint: wall time and peak RSS, same run, against
``shutil.copyfile`` and against safetensors ``load_file`` + ``save_file`` of the same file.

    python benchmarks/bench_reinit.py [--arch resnet50] [--repeats 3] [--write]

Each contender runs in a fresh Python process that reports its own peak RSS (``ru_maxrss``); the
"imports" row is a process that only imports torch, timm and plastic, the floor every row shares.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine_line, replace_section  # noqa: E402
from bench_inspect import build_checkpoint  # noqa: E402

RUNNER = """
import json, resource, sys, time
import torch, timm, plastic.reinit, safetensors.torch
src, out, what = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if what == "copyfile":
    import shutil; shutil.copyfile(src, out)
elif what == "load+save":
    sd = safetensors.torch.load_file(src); safetensors.torch.save_file(sd, out)
elif what != "imports":
    from plastic.strategies import Options
    strategy, _, extra = what.partition(":")
    opts = Options(**json.loads(extra or "{}"))
    plastic.reinit.reinit(src, strategy=strategy, output=out, options=opts, force=True)
dt = time.perf_counter() - t0
print(json.dumps({"s": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CASES = [
    ("imports", "imports only (torch, timm, plastic)"),
    ("copyfile", "`shutil.copyfile`"),
    ("load+save", "safetensors `load_file` + `save_file`"),
    ("head:{}", "reinit `head` (2 tensors)"),
    ('layers:{"layers": ["layer4.*"]}', "reinit `layers 'layer4.*'` (60% of the bytes)"),
    ('weights:{"fraction": 0.25}', "reinit `weights --fraction 0.25` (every conv/linear weight)"),
    ("shrink-perturb:{}", "reinit `shrink-perturb` (every parameter)"),
]


def run(src: Path, what: str) -> dict[str, float]:
    out = WORK / "bench_out.safetensors"
    proc = subprocess.run(
        [sys.executable, "-c", RUNNER, str(src), str(out), what], capture_output=True, text=True, check=True
    )
    out.unlink(missing_ok=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    src = build_checkpoint(args.arch)
    size_mb = src.stat().st_size / 1e6
    results: dict[str, list[dict[str, float]]] = {w: [] for w, _ in CASES}
    for _ in range(args.repeats):  # alternate contenders in every round
        for what, _label in CASES:
            results[what].append(run(src, what))
    floor = statistics.median(r["rss_mb"] for r in results["imports"])
    copy_s = statistics.median(r["s"] for r in results["copyfile"])
    rows = []
    for what, label in CASES:
        s = statistics.median(r["s"] for r in results[what])
        rss = max(r["rss_mb"] for r in results[what])
        rows.append(
            f"| {label} | {s:.2f} s | {s / copy_s:.1f}x | {rss:.0f} MB | {rss - floor:+.0f} MB |"
            if what != "imports"
            else f"| {label} | - | - | {rss:.0f} MB | 0 |"
        )
    text = "\n".join(
        [
            f"Checkpoint: random timm `{args.arch}`, {size_mb:.1f} MB safetensors; each row a fresh process, "
            f"median time and max peak RSS of {args.repeats} alternating rounds.",
            f"Machine: {machine_line()}.",
            "",
            "| operation | wall time | vs copyfile | peak RSS | above the imports floor |",
            "|---|---|---|---|---|",
            *rows,
        ]
    )
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "reinit", text)


if __name__ == "__main__":
    main()
