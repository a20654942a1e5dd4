"""The null set behind the score's noise floors: fresh models against a fresh reference, layer by layer.

    python scripts/noise_null.py collect timm|torchvision|transformers SEEDS OUT.jsonl [NAME,...] [IMAGES]
    python scripts/noise_null.py grid NULL.jsonl[,NULL2.jsonl] SLACKS ZS                # e.g. 0.25,0.5 2,3
    python scripts/noise_null.py scenario-spreads OUT.json          # each scenario source's spread
    python scripts/noise_null.py spread NULL.jsonl[,...] ZS [SPREADS.json]               # e.g. 0,0.5,1
    python scripts/noise_null.py negligible NULL.jsonl[,...] VALUES SPREADS.json         # e.g. 0,1e-6

``collect`` initialises every model of ``scripts/sweep_families.py``'s list for the family with each seed
and runs ``diagnose`` against the seed-0 reference on 16 and on 32 calibration images; every layer's
metrics, reference metrics, units and score go to OUT (one JSON line per layer). ``grid`` rescores the
stored layers under each (``STARVED_SLACK``, ``NOISE_Z``) pair with the shipped formulas
(``plastic.decide.score``) and prints, per variant, the runs that flag a layer (score >= 0.10), and the
shipped rule's pick on every committed transfer scenario with its regret (``benchmarks/loso.py``'s), from
the rescored reports. At the shipped constants rescoring reproduces every committed score exactly.
BENCHMARKS.md, "Pre-registered: a noise floor", says how the variants were chosen and judged.

``scenario-spreads`` diagnoses each transfer scenario's source checkpoint on its calibration folder (80
images, as ``benchmarks/reference_images.py`` rebuilds them) and keeps every layer's
``reference_spread``. ``spread`` rescores the null set (whose runs carry their spread since it was
measured) and, with SPREADS.json, the committed scenario reports under each ``SPREAD_Z`` (0: the score
before the spread), as BENCHMARKS.md, "Pre-registered: the seed-to-seed spread", says.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "scripts"), str(ROOT / "benchmarks")]


def _make(family: str, name: str, folder: Path) -> tuple[Path, int | None]:
    """Save one fresh model of ``family`` as the family sweep does (the global seed already set); its
    input size when the sweep fixes one."""
    import sweep_families

    maker = {"timm": sweep_families._timm, "torchvision": sweep_families._torchvision}.get(family)
    path, _check = (maker or sweep_families._transformers)(name, folder)
    return path, sweep_families.TIMM.get(name) if family == "timm" else None


def collect(
    family: str, seeds: Sequence[int], out: Path, only: Sequence[str] = (), counts: Sequence[int] = (16, 32)
) -> None:
    import torch
    from sweep_families import CALIB, TIMM, TORCHVISION, transformers_models

    import plastic

    names = (
        list(only)
        or {"timm": list(TIMM), "torchvision": TORCHVISION}.get(family)
        or list(transformers_models())
    )
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp, out.open("a") as sink:
        for name in names:
            for seed in seeds:
                t0 = time.perf_counter()
                torch.manual_seed(seed)  # the reference is drawn with seed 0
                src, size = _make(family, name, Path(tmp))
                for images in counts:
                    report = plastic.diagnose_checkpoint(
                        src, CALIB, device="cpu", max_images=images, arch=name if family == "timm" else None,
                        input_size=(3, size, size) if size else None,
                    )  # fmt: skip
                    run = {"family": family, "model": name, "seed": seed, "images": images}
                    doc = report.to_dict()
                    stages = [{k: st[k] for k in ("name", "start", "layers")} for st in doc["stages"]]
                    sink.write(
                        json.dumps({**run, "stages": stages, "action": doc["recommendation"]["action"]})
                        + "\n"
                    )
                    for la in report.layers:
                        row = {**run, "name": la.name, "units": la.units, "classifier": la.classifier,
                               "metrics": la.metrics, "reference": la.reference,
                               "reference_spread": la.reference_spread}  # fmt: skip
                        sink.write(json.dumps(row) + "\n")
                    sink.flush()
                print(f"{name} seed {seed}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)


def rescore(layers: Iterable[Mapping[str, Any]], images: int) -> list[dict[str, Any]]:
    """The layers with components and score recomputed by diagnose's own ``score_rows``."""
    from plastic.pipelines.diagnose import LayerDiagnosis, score_rows

    given = list(layers)
    rows = [
        LayerDiagnosis(la["name"], "", la["units"], 0, "", None, la["classifier"], la["metrics"],
                       reference=la.get("reference") or {}, reference_spread=la.get("reference_spread") or {})
        for la in given
    ]  # fmt: skip
    score_rows(rows, images)
    return [{**la, "components": r.components, "score": r.score} for la, r in zip(given, rows, strict=True)]


def null_flags(paths: Sequence[Path]) -> tuple[int, dict[tuple[Any, ...], str]]:
    """(runs, run -> its worst flagged layer) over the null set's runs."""
    import loso

    from plastic.decide.recommend import RECOMMEND_AT

    runs: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    stages: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for path in paths:
        for line in path.open():
            row = json.loads(line)
            key = (row["family"], row["model"], row["seed"], row["images"])
            if "stages" in row:
                stages[key] = [{"name": st["start"], **st} for st in row["stages"]]
            else:
                runs[key].append(row)
    flagged = {}
    for key, layers in runs.items():
        rows = rescore(layers, key[3])
        bad = [la for la in rows if not la["classifier"] and (la["score"] or 0.0) >= RECOMMEND_AT]
        if bad:
            worst = max(bad, key=lambda la: la["score"])
            parts = ", ".join(f"{k} {v:.2f}" for k, v in worst["components"].items() if v)
            advice = (
                loso.pick({"layers": rows, "stages": stages[key]}, loso.SHIPPED) if key in stages else "?"
            )
            flagged[key] = f"{worst['name']} {worst['score']:.2f} ({parts}); advice: {advice}"
    return len(runs), flagged


def scenario_picks(spreads: Mapping[str, Any] | None = None) -> dict[int, tuple[str, float | None]]:
    """Scenario -> (the shipped rule's pick from its rescored report, regret in points or None); with
    ``spreads`` (scenario -> layer -> spread), each layer rescored with its seed-to-seed spread."""
    import loso

    picks = {}
    for n, sc in sorted(loso.load(design_only=False).items()):
        report = sc["report"]
        given = report["layers"]
        if spreads is not None:
            table = spreads[str(n)]  # "_timing": what the spread cost in each run
            given = [{**la, "reference_spread": table.get(la["name"]) or {}} for la in given]
        layers = rescore(given, report["calibration"]["images_used"])
        chosen = loso.pick({**report, "layers": layers}, loso.SHIPPED)
        got = loso.regret(sc, chosen)
        picks[n] = (chosen, None if got is None else got * 100)
    return picks


def print_null(label: str, paths: Sequence[Path], *, family: bool) -> None:
    """The null runs that flag a layer under the score's current constants, one line each."""
    runs, flagged = null_flags(paths)
    models = sorted({k[1] for k in flagged})
    advised = sum(1 for worst in flagged.values() if not worst.endswith("advice: finetune"))
    print(f"{label}: {len(flagged)} of {runs} null runs flag a layer ({len(models)} models); "
          f"the advice is not 'fine-tune as is' in {advised}")  # fmt: skip
    for key, worst in sorted(flagged.items()):
        print(f"    {key[0] + ' ' if family else ''}{key[1]} seed {key[2]} {key[3]} images: {worst}")


def print_picks(picks: Mapping[int, tuple[str, float | None]]) -> None:
    """The rule's pick and regret in every scenario, with their mean and worst, on one line."""
    regrets = [r for _, r in picks.values() if r is not None]
    cells = ", ".join(f"{n}: {c} {'not run' if r is None else f'{r:.2f}'}" for n, (c, r) in picks.items())
    print(f"    scenarios: mean regret {statistics.mean(regrets):.2f}, max {max(regrets):.2f}; {cells}")


def grid(paths: Sequence[Path], slacks: Sequence[float], zs: Sequence[float]) -> None:
    from plastic.decide import score

    shipped = score.STARVED_SLACK, score.NOISE_Z
    try:
        for slack in slacks:
            for z in zs:
                score.STARVED_SLACK, score.NOISE_Z = slack, z
                print_null(f"slack {slack} z {z}", paths, family=False)
                print_picks(scenario_picks())
    finally:
        score.STARVED_SLACK, score.NOISE_Z = shipped


def scenario_spreads(out: Path) -> None:
    """Each scenario's source diagnosed on its calibration folder: scenario -> layer -> spread."""
    import torch
    from reference_images import cases

    import plastic

    torch.set_num_threads(1)
    table: dict[str, dict[str, Any]] = {}
    os.environ["PLASTIC_CACHE_DIR"] = tempfile.mkdtemp()  # measured, not read from an earlier run
    with tempfile.TemporaryDirectory() as tmp:
        for _set, label, ckpt, calib, n, arch in cases(Path(tmp), "S"):
            t0 = time.perf_counter()
            report = plastic.diagnose_checkpoint(ckpt, calib, device="cpu", max_images=n, seed=0, arch=arch)
            n_sc, times = label.split()[-1], report.timing
            table[n_sc] = {la.name: la.reference_spread for la in report.layers}
            table.setdefault("_timing", {})[n_sc] = {k: times[k] for k in ("spread_s", "total_s")}
            print(f"{label}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    out.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


def scenario_scores(table: Mapping[str, Any], z: float) -> None:
    """Per scenario: the layer scores the spread lowers at ``z`` (against z = 0), the flagged layers
    before and after, and the spread's share of the run's time."""
    import loso

    from plastic.decide import score

    shipped, shares = score.SPREAD_Z, []
    try:
        for n, sc in sorted(loso.load(design_only=False).items()):
            report, spread = sc["report"], table[str(n)]
            images = report["calibration"]["images_used"]
            score.SPREAD_Z = 0.0
            before = rescore(report["layers"], images)
            score.SPREAD_Z = z
            after = rescore(
                [{**la, "reference_spread": spread.get(la["name"]) or {}} for la in report["layers"]], images
            )
            moved = [(a["name"], a["score"], b["score"]) for a, b in zip(before, after, strict=True)
                     if a["score"] is not None and abs(a["score"] - b["score"]) > 1e-9]  # fmt: skip
            flagged = [sum(1 for la in rows if not la["classifier"] and (la["score"] or 0) >= 0.10)
                       for rows in (before, after)]  # fmt: skip
            big = max(moved, key=lambda m: m[1] - m[2], default=None)
            drop = f"{big[0]} {big[1]:.3f} -> {big[2]:.3f}" if big else "none"
            t = table["_timing"][str(n)]
            shares.append(t["spread_s"] / t["total_s"])
            cost = f"spread {t['spread_s']:.1f} s of {t['total_s']:.1f} s"
            print(f"    scenario {n}: {len(moved)} of {len(before)} layer scores lower; "
                  f"flagged {flagged[0]} -> {flagged[1]}; largest drop {drop}; {cost}")  # fmt: skip
        middle, most = statistics.median(shares), max(shares)
        print(f"    the spread's share of diagnose's time: median {middle:.2f}, max {most:.2f}")
    finally:
        score.SPREAD_Z = shipped


def spread_grid(paths: Sequence[Path], zs: Sequence[float], spreads: Path | None) -> None:
    from plastic.decide import score

    shipped = score.SPREAD_Z
    table = json.loads(spreads.read_text()) if spreads is not None else None
    try:
        for z in zs:
            score.SPREAD_Z = z
            print_null(f"spread z {z}", paths, family=True)
            if table is not None:
                print_picks(scenario_picks(table))
                if z:
                    scenario_scores(table, z)
    finally:
        score.SPREAD_Z = shipped


def negligible_grid(paths: Sequence[Path], values: Sequence[float], spreads: Path) -> None:
    """The null set's flags and the scenarios' picks under each ``NEGLIGIBLE`` (0: the score before it),
    the spread at its shipped ``SPREAD_Z``."""
    from plastic.decide import score

    shipped = score.NEGLIGIBLE
    table = json.loads(spreads.read_text())
    try:
        for v in values:
            score.NEGLIGIBLE = v
            print_null(f"negligible {v:g}", paths, family=True)
            print_picks(scenario_picks(table))
    finally:
        score.NEGLIGIBLE = shipped


def main() -> None:
    if len(sys.argv) in (5, 6, 7) and sys.argv[1] == "collect":
        only = sys.argv[5].split(",") if len(sys.argv) >= 6 and sys.argv[5] else []
        counts = [int(n) for n in sys.argv[6].split(",")] if len(sys.argv) == 7 else [16, 32]
        collect(sys.argv[2], [int(s) for s in sys.argv[3].split(",")], Path(sys.argv[4]), only, counts)
    elif len(sys.argv) == 5 and sys.argv[1] == "grid":
        paths = [Path(p) for p in sys.argv[2].split(",")]
        grid(paths, [float(x) for x in sys.argv[3].split(",")], [float(x) for x in sys.argv[4].split(",")])
    elif len(sys.argv) == 3 and sys.argv[1] == "scenario-spreads":
        scenario_spreads(Path(sys.argv[2]))
    elif len(sys.argv) in (4, 5) and sys.argv[1] == "spread":
        paths = [Path(p) for p in sys.argv[2].split(",")]
        spreads = Path(sys.argv[4]) if len(sys.argv) == 5 else None
        spread_grid(paths, [float(x) for x in sys.argv[3].split(",")], spreads)
    elif len(sys.argv) == 5 and sys.argv[1] == "negligible":
        paths = [Path(p) for p in sys.argv[2].split(",")]
        negligible_grid(paths, [float(x) for x in sys.argv[3].split(",")], Path(sys.argv[4]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
