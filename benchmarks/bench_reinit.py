"""Benchmark ``plastic reinit`` on a 100 MB and a 1.2 GB checkpoint: wall time and peak RSS, same run,
against ``cp``, ``cp`` + ``sync``, ``cp`` beside ``openssl dgst -sha256`` (the same file work as plastic's:
copy, fingerprint the source, make the copy durable), ``shutil.copyfile`` and safetensors ``load_file`` +
``save_file`` of the same file.

    python benchmarks/bench_reinit.py [--arch resnet50 --arch vit_large_patch16_224] [--repeats 3] [--write]

Each contender runs in a fresh Python process that reports its own peak RSS (``ru_maxrss``) and the
time of the operation after its imports; the parent also times the whole process. The "imports" row is
a process that only imports torch, timm and plastic: the fixed start every row shares.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORK = ROOT / "benchmarks" / "_work"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine_line, replace_section  # noqa: E402
from bench_inspect import build_checkpoint  # noqa: E402

RUNNER = """
import json, resource, sys, time
import torch, timm, plastic.pipelines.reinit, safetensors.torch
src, out, what = sys.argv[1], sys.argv[2], sys.argv[3]
t0 = time.perf_counter()
if what == "copyfile":
    import shutil; shutil.copyfile(src, out)
elif what == "load+save":
    sd = safetensors.torch.load_file(src); safetensors.torch.save_file(sd, out)
elif what != "imports":
    from plastic.reinit.strategies import Options
    strategy, _, extra = what.partition(":")
    opts = Options(**json.loads(extra or "{}"))
    plastic.pipelines.reinit.reinit(src, strategy=strategy, output=out, options=opts, force=True)
dt = time.perf_counter() - t0
print(json.dumps({"s": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

BASE = [
    ("imports", "imports only (torch, timm, plastic)"),
    ("cp", "`cp` (whole process)"),
    ("cp+sync", "`cp` then `sync` of the copy (durable, as plastic's fsynced output)"),
    ("sha256", "`openssl dgst -sha256` of the source (the manifest's fingerprint alone)"),
    ("cp+sha256+sync", "`cp` beside `openssl dgst -sha256`, then `sync`: plastic's file work, by tools"),
    ("copyfile", "`shutil.copyfile`"),
    ("load+save", "safetensors `load_file` + `save_file`"),
    ("head:{}", "reinit `head` (2 tensors)"),
]
MORE = {
    "resnet50": [
        ('layers:{"layers": ["layer4.*"]}', "reinit `layers 'layer4.*'` (60% of the bytes)"),
        ('weights:{"fraction": 0.25}', "reinit `weights --fraction 0.25` (every conv/linear weight)"),
        ("shrink-perturb:{}", "reinit `shrink-perturb` (every parameter)"),
    ],
    "vit_large_patch16_224": [
        ('layers:{"layers": ["blocks.23.*"]}', "reinit `layers 'blocks.23.*'` (one of 24 blocks)"),
    ],
}


SHELL = ("cp", "cp+sync", "sha256", "cp+sha256+sync")  # measured as whole processes from here
HASHER = ["openssl", "dgst", "-sha256"] if shutil.which("openssl") else ["sha256sum"]


def run(src: Path, what: str) -> dict[str, float]:
    out = WORK / "bench_out.safetensors"
    t0 = time.perf_counter()
    if what in SHELL:
        digest = None
        if "sha256" in what:  # openssl uses the CPU's SHA instructions; coreutils' sha256sum does not
            digest = subprocess.Popen([*HASHER, str(src)], stdout=subprocess.DEVNULL)
        if what.startswith("cp"):
            subprocess.run(["cp", str(src), str(out)], check=True)
        if what.endswith("sync"):
            subprocess.run(["sync", str(out)], check=True)  # coreutils: fsync of that one file
        if digest is not None and digest.wait() != 0:
            raise RuntimeError(f"{HASHER[0]} failed")
        result = {"s": time.perf_counter() - t0, "rss_mb": float("nan")}
    else:
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(src), str(out), what],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - t0
    out.unlink(missing_ok=True)
    return result  # type: ignore[no-any-return]


def table(arch: str, repeats: int) -> str:
    src = build_checkpoint(arch)
    size_mb = src.stat().st_size / 1e6
    cases = BASE + MORE.get(arch, [])
    results: dict[str, list[dict[str, float]]] = {w: [] for w, _ in cases}
    for _ in range(repeats):  # alternate contenders in every round
        for what, _label in cases:
            results[what].append(run(src, what))

    def med(what: str, key: str) -> float:
        return statistics.median(r[key] for r in results[what])

    floor = max(r["rss_mb"] for r in results["imports"])
    cp, cp_sync = med("cp", "process_s"), med("cp+sync", "process_s")
    same_work = med("cp+sha256+sync", "process_s")
    copy_s = med("copyfile", "s")
    rows = []
    for what, label in cases:
        s, whole = med(what, "s"), med(what, "process_s")
        rss = max(r["rss_mb"] for r in results[what])
        if what == "imports":
            rows.append(f"| {label} | - | {whole:.2f} s | - | {rss:.0f} MB | 0 |")
        elif what in SHELL:
            rows.append(f"| {label} | {whole:.2f} s | {whole:.2f} s | - | - | - |")
        else:
            goal = (  # the time after imports: the start's noise (+-0.5 s here) is larger than cp itself
                f" ({s / cp:.1f}x cp, {s / cp_sync:.1f}x cp+sync, {s / same_work:.1f}x cp+sha256+sync)"
                if what.startswith("head")
                else ""
            )
            cells = [label, f"{s:.2f} s{goal}", f"{whole:.2f} s", f"{s / copy_s:.1f}x"]
            rows.append("| " + " | ".join([*cells, f"{rss:.0f} MB", f"{rss - floor:+.0f} MB"]) + " |")
    return "\n".join(
        [
            f"Checkpoint: random timm `{arch}`, {size_mb:.1f} MB safetensors; median time and max peak RSS "
            f"of {repeats} alternating rounds.",
            "",
            "| operation | after imports | whole process | vs copyfile | peak RSS | above imports floor |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--arch", action="append", help="repeatable; default resnet50 and vit_large_patch16_224"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    parts = [table(arch, args.repeats) for arch in args.arch or ["resnet50", "vit_large_patch16_224"]]
    text = "\n\n".join([*parts, f"Machine: {machine_line()}."])
    print(text)
    if args.write:
        replace_section(ROOT / "BENCHMARKS.md", "reinit", text)


if __name__ == "__main__":
    main()
