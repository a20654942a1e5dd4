"""``diagnose --trial``: decide by trying. A short seeded fine-tuning race among starts and rates on the
user's own labelled images, after the statistics pass; the advice follows it when its winner is clearly
better than the rule's pick.

The design is the one pre-registered in BENCHMARKS.md ("Pre-registered: the trial"), frozen before any
trial ran: candidates (fine-tune as is, the rule's pick, the top stage alone, one stage deeper, each at
1x and 3x the recipe's rate), a stratified seeded split (a quarter of each class validates), the recipe
of :mod:`plastic.measure.finetune`, successive halving (:mod:`plastic.decide.race`) and a paired
bootstrap for the margins. Nothing is written: every candidate lives in memory, so Ctrl-C leaves nothing.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from plastic.decide.race import Margin, Score, default_budget, keep_count, margin, rungs, standing, survivors
from plastic.decide.recommend import Recommendation
from plastic.errors import DataError, UsageError
from plastic.measure.calib import CalibSet, scan_folder
from plastic.measure.finetune import (
    MIN_PER_CLASS,
    Candidate,
    LabelledImages,
    Recipe,
    batch_order,
    stratified_split,
)
from plastic.measure.onepass import Progress
from plastic.model.heads import replace_heads
from plastic.pipelines.report import DiagnoseReport, RungResult, Start, TrialCandidate, TrialResult

RATES = (1.0, 3.0)  # multipliers of the recipe's rate; 10x was not pre-registered (no run supported it)
MAX_TRIAL_IMAGES = 4000  # the 400-step budget's 4 passes never read more than 3,200 training images


def candidate_starts(rec: Recommendation, stages: list[Any], heads: set[str]) -> list[Start]:
    """Fine-tune as is; the rule's pick; the top stage alone; one stage deeper than the rule's pick
    (than the top stage when the rule does not start at a stage). Duplicates merged, roles kept."""
    body = [st for st in stages[1:] if any(n not in heads for n in st.layers)]  # above the stem
    starts: list[Start] = [Start("fine-tune", None, {}, ("fine-tune",))]
    if rec.action == "reinit" and rec.strategy is not None:
        starts.append(
            Start(_start_name(rec.strategy, rec.options), rec.strategy, dict(rec.options), ("rule",))
        )
    else:
        starts[0] = Start("fine-tune", None, {}, ("fine-tune", "rule"))
    starts_at = [st.start for st in body]
    if body:
        starts.append(Start(f"from-block {starts_at[-1]}", "from-block", {"from_block": starts_at[-1]},
                            ("top stage",)))  # fmt: skip
        ruled = rec.options.get("from_block") if rec.strategy == "from-block" else None
        at = starts_at.index(ruled) if ruled in starts_at else len(starts_at) - 1
        if at >= 1:
            deeper = starts_at[at - 1]
            starts.append(Start(f"from-block {deeper}", "from-block", {"from_block": deeper},
                                ("one stage deeper",)))  # fmt: skip
    merged: dict[tuple[str | None, str], Start] = {}
    for s in starts:
        key = (s.strategy, repr(sorted(s.options.items())))
        if key in merged:
            old = merged[key]
            merged[key] = dataclasses.replace(old, roles=old.roles + s.roles)
        else:
            merged[key] = s
    return list(merged.values())


def _start_name(strategy: str, options: dict[str, Any]) -> str:
    if strategy == "from-block":
        return f"from-block {options['from_block']}"
    shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return f"{strategy} {shown}".strip()


@contextlib.contextmanager
def _threads(device: torch.device) -> Iterator[int | None]:
    """One torch thread on the CPU during the race (pre-registered: the same arithmetic on any machine,
    so the same seed gives the same report); restored after."""
    if device.type != "cpu":
        yield None
        return
    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield 1
    finally:
        torch.set_num_threads(saved)


def trial_folder(calib: CalibSet, data: str | Path | None, budget: int | None, seed: int) -> CalibSet:
    """The trial's images (``--trial-data``, else the calibration folder), checked before the statistics
    pass so that a folder the trial cannot use is refused at once: labels (class subfolders), at least 2
    classes, at least 4 images in each (2 to train, 2 to validate)."""
    check_budget(budget)
    folder = calib if data is None else scan_folder(data, max_images=MAX_TRIAL_IMAGES, seed=seed)
    flag = "--data" if data is None else "--trial-data"
    if folder.labels is None:
        raise DataError(
            f"{folder.root}: the trial needs labelled images, one subfolder per class, and {flag} has none "
            "(a flat folder)" + ("; pass --trial-data DIR with class subfolders" if data is None else "")
        )
    counts = Counter(folder.labels)
    if len(counts) < 2:
        raise DataError(
            f"{folder.root}: the trial needs at least 2 classes to tell starts apart; {flag} has 1"
        )
    few = sorted((n, folder.class_names[c]) for c, n in counts.items() if n < MIN_PER_CLASS)
    if few:
        shown = ", ".join(f"{name!r} ({n})" for n, name in few[:3]) + (" ..." if len(few) > 3 else "")
        raise DataError(
            f"{folder.root}: the trial needs at least {MIN_PER_CLASS} images per class (2 to train, 2 to "
            f"validate); {len(few)} class(es) have fewer: {shown}"
            + (
                f"; raise --max-images (now {len(folder.files)}) or"
                if folder.found > len(folder.files)
                else ";"
            )
            + " add images, or pass --trial-data DIR"
        )
    return folder


def check_budget(budget: int | None) -> None:
    if budget is not None and (isinstance(budget, bool) or not isinstance(budget, int) or budget < 4):
        raise UsageError(f"--trial-budget takes a whole number of steps, at least 4; got {budget!r}")


def trial_step(
    report: DiagnoseReport, model: nn.Module, images: LabelledImages, *, source: Path, seed: int,
    budget: int | None, device: torch.device, progress: Progress | None,
    commands: Callable[[Recommendation], list[str]] | None,
) -> None:  # fmt: skip
    """Run the race and put it in the report: its ``trial`` section, and the advice that follows it."""
    t0 = time.perf_counter()
    result = run_trial(report, model, images, source=source, seed=seed, budget=budget, device=device,
                       progress=progress)  # fmt: skip
    assert report.recommendation is not None
    heads = {la.name for la in report.layers if la.classifier}
    rec = follow(report.recommendation, result, report.stages, heads)
    rec.commands = commands(rec) if commands is not None else []
    report.recommendation, report.trial = rec, result
    report.timing["trial_s"] = time.perf_counter() - t0
    report.timing["total_s"] = report.timing.get("total_s", 0.0) + report.timing["trial_s"]


def run_trial(
    report: DiagnoseReport,
    model: nn.Module,
    images: LabelledImages,
    *,
    source: Path,
    seed: int = 0,
    budget: int | None = None,
    device: torch.device | None = None,
    progress: Progress | None = None,
) -> TrialResult:
    """Race the candidates on ``images`` and return the result (the report is not changed here).

    Args:
        report: The diagnosis whose recommendation and stages define the candidates.
        model: The checkpoint's model with its weights (left as it is: candidates are copies).
        images: Labelled images (``load_trial_images``).
        source: Where the images came from (for the report).
        seed: Seeds the split, the batch order, the new head and the re-initialized values.
        budget: S, the full budget in optimizer steps (default: 4 passes over the training part,
            40 to 400 steps).
        device: Where to train (default: the model's).
        progress: Called with ("trial", steps done, steps in all).
    """
    check_budget(budget)
    rec = report.recommendation
    assert rec is not None
    dev = device or next(model.parameters()).device
    train, val = stratified_split(images.labels, images.class_names, seed)
    recipe = Recipe()
    steps = budget if budget is not None else default_budget(len(train), recipe.batch_size)
    points = rungs(steps)
    heads = {la.name for la in report.layers if la.classifier}
    starts = candidate_starts(rec, report.stages, heads)
    order = batch_order(train, steps, recipe.batch_size, seed)
    n_classes = len(images.class_names)
    entries = [TrialCandidate(start, scale, 0) for start in starts for scale in RATES]
    with _threads(dev) as threads:
        total = _total_steps(len(entries), points)
        done = [0]

        def tick() -> None:
            done[0] += 1
            if progress is not None:
                progress("trial", done[0], total)

        running: dict[int, Candidate] = {}  # built when first trained, dropped as soon as it is out
        alive = list(range(len(entries)))
        correct: dict[tuple[int, int], list[bool]] = {}  # (candidate, rung steps) -> per-image correctness
        for r, at in enumerate(points):
            last = r == len(points) - 1
            keep = len(alive) if last else keep_count(len(alive))
            scores: dict[int, Score] = {}
            for c in alive:
                if c not in running:
                    running[c] = _build(entries[c], report, model, n_classes, seed, steps, recipe, dev)
                running[c].train_to(at, images, order, dev, seed, tick)
                right, loss = running[c].evaluate(images, val, dev, recipe.batch_size)
                correct[(c, at)] = right
                scores[c] = Score(sum(right) / len(right), loss)
                entries[c].rungs.append(RungResult(at, scores[c].accuracy, loss))
                # memory: whoever is outside the best `keep` so far can never come back (a total order)
                for out in standing(scores, list(scores))[keep:]:
                    if out in running:
                        running.pop(out).release()
            alive = standing(scores, alive) if last else sorted(survivors(scores, alive))
        for c in list(running):
            running.pop(c).release()
    return _decide(entries, alive, correct, points, seed, dict(
        path=source, classes=list(images.class_names), train_images=len(train), validation_images=len(val),
        skipped=images.skipped, recipe=recipe, budget=steps, rungs=points, seed=seed, threads=threads,
        steps_trained=done[0],
    ))  # fmt: skip


def _total_steps(n: int, points: list[int]) -> int:
    total, alive, prev = 0, n, 0
    for r, at in enumerate(points):
        total += alive * (at - prev)
        prev = at
        if r < len(points) - 1:
            alive = keep_count(alive)
    return total


def _build(
    entry: TrialCandidate, report: DiagnoseReport, model: nn.Module, n_classes: int, seed: int, steps: int,
    recipe: Recipe, dev: torch.device,
) -> Candidate:  # fmt: skip
    """One candidate: a copy of the model, re-initialized as ``plastic reinit`` would (same seed: the two
    rates of a start get the same values), with the new head, on ``dev``."""
    from plastic.pipelines.live_reinit import reinit_model
    from plastic.reinit.options import Options

    net = copy.deepcopy(model)
    for p in net.parameters():
        p.grad = None  # the statistics pass left its gradients
    start = entry.start
    if start.strategy is not None:
        done = reinit_model(net, start.strategy, report=report, arch=report.arch,
                            options=Options(seed=seed, **start.options))  # fmt: skip
        entry.changed_tensors = len(done.changed)
    replace_heads(net, n_classes, seed)
    return Candidate(net.to(dev), recipe.lr * entry.lr_scale, steps, recipe)


def _decide(
    entries: list[TrialCandidate], final: list[int], correct: dict[tuple[int, int], list[bool]],
    points: list[int], seed: int, fields: dict[str, Any],
) -> TrialResult:  # fmt: skip
    """The winner (best at the last rung), its margins, and whether the advice follows it: only when it
    is clearly better than the rule's pick at 1x, compared at the last rung both were scored at."""
    winner, runner = final[0], final[1]
    rule = next(i for i, e in enumerate(entries) if "rule" in e.start.roles and e.lr_scale == 1.0)

    def paired(a: int, b: int) -> Margin:
        at = max(s for s in points if (a, s) in correct and (b, s) in correct)
        return margin(correct[(a, at)], correct[(b, at)], seed, at)

    over_runner = paired(winner, runner)
    over_rule = paired(winner, rule) if winner != rule else None
    decided = over_rule is not None and over_rule.clear
    w, r = entries[winner], entries[rule]

    def pts(x: Margin) -> str:
        return f"{x.difference * 100:+.1f} points (90% interval {x.low * 100:+.1f} to {x.high * 100:+.1f})"

    if over_rule is None:
        verdict = (
            f"the trial agrees with the rule: {w.name} won ({pts(over_runner)} over {entries[runner].name})"
        )
    elif decided:
        verdict = f"the trial decided: {w.name}, {pts(over_rule)} over the rule's pick ({r.name})"
    else:
        verdict = (
            f"the trial did not decide: its winner {w.name} is not clearly better than the rule's pick "
            f"({r.name}): {pts(over_rule)}; the rule's choice stands"
        )
    return TrialResult(
        candidates=entries, winner=winner, runner_up=runner, over_runner_up=over_runner, over_rule=over_rule,
        rule=rule, decided=decided, verdict=verdict, **fields,
    )  # fmt: skip


def follow(rec: Recommendation, result: TrialResult, stages: list[Any], heads: set[str]) -> Recommendation:
    """The advice after the race: the winner's start and rate when the trial decided, else the rule's
    choice at the recipe's rate, with the race's verdict in the reason either way."""
    if not result.decided:
        return dataclasses.replace(rec, reason=f"{rec.reason}. Trial: {result.verdict}", lr_scale=1.0)
    w = result.candidates[result.winner]
    was = f"the rule's pick was {result.candidates[result.rule].start.name}: {rec.reason}"
    reason = f"Trial: {result.verdict}"
    if w.start.strategy is None:
        return Recommendation("finetune", None, {}, [], rec.threshold, reason, [was], lr_scale=w.lr_scale,
                              evidence="")  # fmt: skip
    if w.start.strategy == "from-block":
        begin = w.start.options["from_block"]
        at = next(i for i, st in enumerate(stages) if st.start == begin)
        layers = [n for st in reversed(stages[at:]) for n in st.layers if n not in heads]
        return Recommendation("reinit", "from-block", {"from_block": begin}, layers, rec.threshold, reason,
                              [was], lr_scale=w.lr_scale, evidence="")  # fmt: skip
    return dataclasses.replace(rec, reason=f"{reason} ({rec.reason})", lr_scale=w.lr_scale)
