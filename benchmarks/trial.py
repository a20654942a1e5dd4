"""Does the trial pick a better start than the rule? The pre-registered evaluation of issue 29.

    python benchmarks/trial.py --scenarios 1,2,3 --seeds 0,1,2      # runs the trials, one JSON each
    python benchmarks/trial.py --per-class 40 --scenarios 1,2       # the same with 40 images per class
    python benchmarks/trial.py --write                              # the tables in BENCHMARKS.md

Design frozen in BENCHMARKS.md ("Pre-registered: the trial") before this script or any trial existed.
For each scenario of the transfer benchmark (benchmarks/transfer.py) and each trial seed, the trial sees
20 labelled images per class (``--per-class``; 40 in the third pre-registration) drawn (by the seed)
from the scenario's training split, disjoint from its test set, through ``diagnose --trial-data``;
diagnose measures the scenario's own calibration folder at the scenario's fine-tuning input size (the
size the full runs train at, so the trial trains as they do).
Its pick is mapped to a condition of the full runs (benchmarks/results/scenario<N>): regret = the best
condition's mean final test accuracy minus the picked condition's. Conditions a trial picks that were
never run (a stage start at 3x) are run first with ``transfer.py --conditions from-<stage>-lr3x --merge``.
Cost: images passed forward and backward by the trial's training against one full fine-tuning run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine_line, replace_section  # noqa: E402
from transfer import SCENARIOS, _source_path, _target_arrays, calibration_folder  # noqa: E402

PER_CLASS = 20  # labelled images per class the trial sees (pre-registered)
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "trial"  # the 20-per-class trials; other counts in trial<N>/


def out_dir(per_class: int) -> Path:
    return OUT if per_class == PER_CLASS else RESULTS / f"trial{per_class}"


TRAIN_IMAGES = 2000  # every scenario's training split


def trial_folder(target: str, seed: int, root: Path, per_class: int = PER_CLASS) -> Path:
    """``per_class`` images per class from the training split, drawn by ``seed``, as PNG class folders."""
    from PIL import Image

    arrays = _target_arrays(target)
    x, y = arrays["x_train"], arrays["y_train"]
    rng = np.random.default_rng(10_000 + seed)
    folder = root / "trial"
    for c in sorted(set(y.tolist())):
        members = np.flatnonzero(y == c)
        for i in rng.choice(members, size=per_class, replace=False):
            (folder / f"{c:02d}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(x[i]).save(folder / f"{c:02d}" / f"{int(i):05d}.png")
    return folder


def condition_of(pick: dict[str, Any], committed_auto: dict[str, Any]) -> str:
    """The full-run condition that is the trial's pick: fine-tune, or a stage start, at 1x or 3x."""
    scale = "-lr3x" if pick["lr_scale"] == 3.0 else ""
    if pick["strategy"] is None:
        return "finetune" + scale
    start = pick["options"].get("from_block")
    if pick["strategy"] == "from-block" and start == committed_auto.get("from_block"):
        return "auto" + scale  # the same start the committed `auto` runs re-initialized
    if pick["strategy"] == "from-block":
        return f"from-{start}" + scale
    raise SystemExit(f"no full-run condition for {pick}")


def run_one(n: int, seed: int, per_class: int = PER_CLASS) -> dict[str, Any]:
    from plastic.pipelines.diagnose import diagnose

    sc = SCENARIOS[n]
    ckpt = _source_path(sc["arch"]) if "source" in sc else sc["ckpt"]
    target = sc.get("target", "animal")
    with tempfile.TemporaryDirectory() as tmp:
        calib = calibration_folder(target, Path(tmp))
        data = trial_folder(target, seed, Path(tmp), per_class)
        t0 = time.perf_counter()
        size = (3, sc["size"], sc["size"])  # the size the full runs fine-tune at
        report = diagnose(
            ckpt, calib, max_images=80, seed=seed, device="cpu", input_size=size, trial_data=data
        )
        seconds = time.perf_counter() - t0
        doc = report.to_dict()
    trial = doc["trial"]
    assert trial is not None and doc["recommendation"] is not None
    pick = next(c for c in trial["candidates"] if c["name"] == trial["winner"])
    rec = doc["recommendation"]
    followed = {"strategy": rec["strategy"], "options": rec["options"], "lr_scale": rec["lr_scale"]}
    return {
        "scenario": n, "seed": seed, "winner": pick["name"], "winner_pick": pick, "decided": trial["decided"],
        "advice": followed, "trial": trial, "seconds": seconds, "trial_s": doc["timing"].get("trial_s"),
        "rule_here": {"strategy": rec["strategy"] if not trial["decided"] else None},
        "rule_pick": trial["rule"], "per_class": per_class,
    }  # fmt: skip


def full_runs(n: int) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """(mean final accuracy, its std over seeds) per condition, and the committed auto's options."""
    by: dict[str, list[float]] = {}
    for f in (ROOT / "benchmarks" / "results" / f"scenario{n}").glob("*__seed*.json"):
        r = json.loads(f.read_text())
        by.setdefault(r["condition"], []).append(r["final"])
    result = json.loads((ROOT / "benchmarks" / "results" / f"scenario{n}" / "result.json").read_text())
    rec = result["report"]["recommendation"] or {}
    auto = rec.get("options", {}) if rec.get("action") == "reinit" else {}
    means = {k: statistics.mean(v) for k, v in by.items()}
    stds = {k: statistics.stdev(v) if len(v) > 1 else 0.0 for k, v in by.items()}
    return means, stds, auto


def _pick(trial: dict[str, Any], name: str) -> dict[str, Any]:
    c = next(c for c in trial["candidates"] if c["name"] == name)
    return {"strategy": c["strategy"], "options": c["options"], "lr_scale": c["lr_scale"]}


def _cell(xs: list[float]) -> str:
    if not xs:
        return "-"
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs) if len(xs) > 1 else 0.0:.1f}"


FIRST = range(1, 12)  # the first design's evaluation
SECOND = range(12, 15)  # the second design's (pre-registered 2026-12-06): its winner is its advice
ALL = range(1, 15)  # the 40-per-class evaluation (pre-registered 2026-12-06, fourth session)
KINDS = ("winner", "advice", "rule_here", "auto", "finetune")


def scenario_regrets(n: int, out: Path) -> dict[str, Any] | None:
    """One scenario's trials in ``out`` against its full runs: the regret (points) per trial seed of the
    trial's winner (design 2), the advice after the trial (design 1: the winner when it decided, else the
    rule's pick) and the rule's pick at the fine-tuning size; the committed `auto`'s and plain
    fine-tuning's; the conditions picked, full conditions never run, how often design 1 decided, cost."""
    runs = [json.loads(p.read_text()) for p in sorted(out.glob(f"scenario{n}_seed*.json"))]
    if not runs:
        return None
    means, _stds, auto = full_runs(n)
    # the best start a user could choose: the random-ranking controls (random layers that happened to
    # do well) are left out, as in issue 29's table
    best_name = max((k for k in means if not k.startswith("random-")), key=lambda k: means[k])
    best = means[best_name]
    regret: dict[str, list[float]] = {k: [] for k in KINDS}
    shown: dict[str, list[str]] = {"winner": [], "advice": [], "rule_here": []}
    missing: list[str] = []
    for r in runs:
        trial = r["trial"]
        picks = {"winner": _pick(trial, trial["winner"]), "advice": r["advice"],
                 "rule_here": _pick(trial, trial["rule"])}  # fmt: skip
        for kind, pick in picks.items():
            cond = condition_of(pick, auto)
            shown[kind].append(cond)
            if cond in means:
                regret[kind].append(100 * (best - means[cond]))
            else:
                missing.append(f"{n}:{cond}")
    regret["auto"] = [100 * (best - means["auto"])]
    regret["finetune"] = [100 * (best - means["finetune"])]
    complete = {k for k in KINDS if regret[k] and len(regret[k]) == (len(runs) if k in shown else 1)}
    cost = statistics.mean(r["trial"]["steps_trained"] * r["trial"]["recipe"]["batch_size"] for r in runs)
    return {
        "best_name": best_name, "best": best, "regret": regret, "shown": shown, "missing": missing,
        "complete": complete, "decided": sum(r["decided"] for r in runs), "runs": len(runs),
        "cost": cost / (SCENARIOS[n]["epochs"] * TRAIN_IMAGES),
        "secs": statistics.mean(r["trial_s"] for r in runs),
    }  # fmt: skip


def _means(per: dict[str, dict[int, float]], kinds: tuple[str, ...], label: str, scenarios: range) -> str:
    def mean(kind: str) -> str:
        xs = [v for n, v in per[kind].items() if n in scenarios]
        return f"{statistics.mean(xs):.2f} (max {max(xs):.1f}, {len(xs)} scenarios)" if xs else "-"

    return f"- {label}: " + "; ".join(f"{k.replace('_', ' ')} {mean(k)}" for k in kinds) + "."


def summary(scenarios: range = FIRST) -> tuple[str, list[str]]:
    """The table of the 20-per-class trials: per scenario, the regret of the trial's winner (design 2's
    advice), of design 1's advice, of the rule's pick measured at the fine-tuning size, of the committed
    `auto` and of plain fine-tuning; and the trial's cost."""
    rows = []
    missing: list[str] = []
    per: dict[str, dict[int, float]] = {k: {} for k in KINDS}
    for n in (n for n in sorted(SCENARIOS) if n in scenarios):
        s = scenario_regrets(n, OUT)
        if s is None:
            continue
        regret, shown = s["regret"], s["shown"]
        missing += s["missing"]
        for k in s["complete"]:
            per[k][n] = statistics.mean(regret[k])
        rows.append(
            f"| {n} | {s['best_name']} {100 * s['best']:.1f} | {', '.join(shown['winner'])} | "
            f"{_cell(regret['winner'])} | {s['decided']}/{s['runs']}: {_cell(regret['advice'])} | "
            f"{', '.join(sorted(set(shown['rule_here'])))}: "
            f"{_cell(regret['rule_here'])} | {regret['auto'][0]:.1f} | {regret['finetune'][0]:.1f} | "
            f"{s['cost']:.2f} ({s['secs']:.0f} s) |"
        )
    head = [
        "| scenario | best full-run condition, accuracy | trial's winner per seed | winner's regret | "
        "decided / advice's regret | rule's pick at the fine-tuning size: regret | "
        "committed `auto`'s regret | fine-tune's regret | trial cost / one full run (trial time) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    foot = ["", "Mean regret, points (mean over seeds first):"]
    groups = (
        (("scenarios 1-11", FIRST), ("scenarios 7-11", range(7, 12)))
        if scenarios == FIRST
        else ((f"scenarios {scenarios.start}-{scenarios.stop - 1}", scenarios),)
    )
    foot += [_means(per, KINDS, label, rng) for label, rng in groups]
    foot.append(f"\nMachine: {machine_line('1 per trial (pre-registered)')}.")
    return "\n".join(head + rows + foot), missing


def summary_counts(per_class: int, scenarios: range = ALL) -> tuple[str, list[str]]:
    """The table of the third pre-registration: designs 1 and 2 with ``per_class`` labelled images per
    class beside the same designs with 20 (the committed trials), the rule's pick, `auto`, fine-tuning."""
    rows = []
    missing: list[str] = []
    cols = ("advice", "advice20", "winner", "winner20", "rule_here", "auto", "finetune")
    per: dict[str, dict[int, float]] = {k: {} for k in cols}
    for n in (n for n in sorted(SCENARIOS) if n in scenarios):
        s, s20 = scenario_regrets(n, out_dir(per_class)), scenario_regrets(n, OUT)
        if s is None or s20 is None:
            continue
        missing += s["missing"]
        for k in s["complete"]:
            per[k][n] = statistics.mean(s["regret"][k])
        for k in ("advice", "winner"):
            if k in s20["complete"]:
                per[k + "20"][n] = statistics.mean(s20["regret"][k])
        r, r20 = s["regret"], s20["regret"]
        rows.append(
            f"| {n} | {s['best_name']} {100 * s['best']:.1f} | {s['decided']}/{s['runs']}: "
            f"{_cell(r['advice'])} | {s20['decided']}/{s20['runs']}: {_cell(r20['advice'])} | "
            f"{', '.join(s['shown']['winner'])}: {_cell(r['winner'])} | {_cell(r20['winner'])} | "
            f"{_cell(r['rule_here'])} | {r['auto'][0]:.1f} | {r['finetune'][0]:.1f} | "
            f"{s['cost']:.2f} ({s['secs']:.0f} s) |"
        )
    head = [
        f"| scenario | best full-run condition, accuracy | design 1 ({per_class}/class): decided, regret | "
        f"design 1 (20/class) | design 2 ({per_class}/class): winner per seed, regret | "
        "design 2 (20/class) | "
        "rule's pick at the fine-tuning size | committed `auto` | fine-tune | trial cost / one full run "
        "(trial time) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    foot = ["", "Mean regret, points (mean over seeds first):"]
    label = f"scenarios {scenarios.start}-{scenarios.stop - 1}"
    foot.append(_means(per, cols, label, scenarios).replace("advice20", "advice at 20/class")
                .replace("winner20", "winner at 20/class"))  # fmt: skip
    foot.append(f"\nMachine: {machine_line('1 per trial (pre-registered)')}.")
    return "\n".join(head + rows + foot), missing


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenarios", default=",".join(str(n) for n in sorted(SCENARIOS)))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--per-class", type=int, default=PER_CLASS, help="labelled images per class")
    parser.add_argument("--write", action="store_true", help="summarise the saved trials into BENCHMARKS.md")
    args = parser.parse_args()
    if args.write:
        for section, scenarios in (("trial", FIRST), ("trial2", SECOND)):
            text, missing = summary(scenarios)
            if missing:
                print("full runs missing for: " + ", ".join(sorted(set(missing))), file=sys.stderr)
            print(text)
            replace_section(ROOT / "BENCHMARKS.md", section, text)
        if any(out_dir(40).glob("*.json")):
            text, missing = summary_counts(40)
            if missing:
                print("full runs missing for: " + ", ".join(sorted(set(missing))), file=sys.stderr)
            print(text)
            replace_section(ROOT / "BENCHMARKS.md", "trial40", text)
        return
    out = out_dir(args.per_class)
    out.mkdir(parents=True, exist_ok=True)
    for n in (int(s) for s in args.scenarios.split(",")):
        for seed in (int(s) for s in args.seeds.split(",")):
            path = out / f"scenario{n}_seed{seed}.json"
            if path.exists():
                continue
            res = run_one(n, seed, args.per_class)
            path.write_text(json.dumps(res, indent=1) + "\n")
            print(f"scenario {n} seed {seed}: {res['winner']} decided={res['decided']} "
                  f"advice={res['advice']} ({res['seconds']:.0f} s)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
