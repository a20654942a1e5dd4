"""Convergence, as the re-initialization papers claim it: does ``auto`` reach plain fine-tuning's final
accuracy sooner? From saved runs only (``benchmarks/results/scenario<N>/result.json``), no training.

    python benchmarks/convergence.py [--write]

Per scenario: the mean test accuracy after each epoch for ``auto`` and ``finetune`` (same seeds), the
first epoch at which ``auto``'s mean reaches fine-tuning's *final* mean, and the accuracy after 1 and 2
epochs. Where the rule says "fine-tune as is", ``auto`` is fine-tuning itself (the same runs).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import replace_section  # noqa: E402


def curves(doc: dict[str, Any]) -> dict[str, list[float]]:
    """condition -> mean accuracy per epoch over the seeds both auto and finetune ran."""
    by: dict[tuple[str, int], list[float]] = {(r["condition"], r["seed"]): r["test_acc"] for r in doc["runs"]}
    seeds = sorted(s for c, s in by if c == "auto" and ("finetune", s) in by)
    out = {}
    for cond in ("auto", "finetune"):
        runs = [by[(cond, s)] for s in seeds]
        out[cond] = [statistics.mean(r[e] for r in runs) for e in range(min(len(r) for r in runs))]
    return out


def rows() -> list[dict[str, Any]]:
    from transfer import SCENARIOS

    table = []
    for path in sorted(RESULTS.glob("scenario*/result.json"), key=lambda p: int(p.parent.name[8:])):
        doc = json.loads(path.read_text())
        c = curves(doc)
        target = c["finetune"][-1]
        reach = next((e + 1 for e, a in enumerate(c["auto"]) if a >= target), None)
        table.append({
            "scenario": doc["scenario"], "title": SCENARIOS[doc["scenario"]]["title"],
            "action": doc["report"]["recommendation"]["action"], "auto": c["auto"], "finetune": c["finetune"],
            "reach": reach, "epochs": len(c["finetune"]),
        })  # fmt: skip
    return table


def markdown(table: list[dict[str, Any]]) -> str:
    lines = [
        "| scenario | auto does | epoch 1: auto / fine-tune | epoch 2: auto / fine-tune "
        "| epochs for auto to reach fine-tuning's final accuracy (of) |",
        "|---|---|---|---|---|",
    ]
    for r in table:
        a, f = r["auto"], r["finetune"]
        two = f"{a[1] * 100:.1f} / {f[1] * 100:.1f}" if len(a) > 1 else "-"
        does = "re-initializes" if r["action"] == "reinit" else "fine-tunes as is"
        reach = r["reach"] if r["reach"] is not None else "not reached"
        lines.append(
            f"| {r['scenario']}: {r['title']} | {does} | {a[0] * 100:.1f} / {f[0] * 100:.1f} | {two} "
            f"| {reach} ({r['epochs']}) |"
        )
    return "\n".join(lines)


def plot(table: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = 4
    rows_n = (len(table) + cols - 1) // cols
    fig, axes = plt.subplots(rows_n, cols, figsize=(3.2 * cols, 2.6 * rows_n), dpi=100, squeeze=False)
    for ax, r in zip(axes.flat, table, strict=False):
        xs = range(1, len(r["finetune"]) + 1)
        ax.plot(xs, [v * 100 for v in r["finetune"]], "o-", color="gray", label="fine-tune")
        ax.plot(xs, [v * 100 for v in r["auto"]], "s--", color="tab:blue", label="auto")
        ax.set_title(f"S{r['scenario']} ({'reinit' if r['action'] == 'reinit' else 'as is'})", fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(table) :]:
        ax.axis("off")
    axes.flat[0].set_ylabel("test accuracy (%)", fontsize=8)
    axes.flat[0].legend(fontsize=7)
    fig.suptitle("auto vs plain fine-tuning, mean over seeds, per epoch", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md and the PNG")
    args = parser.parse_args()
    table = rows()
    text = markdown(table)
    print(text)
    if args.write:
        plot(table, RESULTS / "convergence.png")
        replace_section(ROOT / "BENCHMARKS.md", "convergence",
                        text + "\n\n![convergence](benchmarks/results/convergence.png)")  # fmt: skip


if __name__ == "__main__":
    main()
