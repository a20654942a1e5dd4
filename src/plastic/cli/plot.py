"""``diagnose --plot``: the per-layer saturation score in model order, as a picture.

Each bar is one layer's score split into what each component adds to the weighted mean (so the stack
is the score), the recommendation's threshold is a dashed line, the layers it selects are marked, and
block boundaries are thin vertical lines. matplotlib is an optional extra (``pip install
'plastic-reinit[plot]'``); it is imported only here, only when a plot is asked for.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from plastic.decide.score import WEIGHTS
from plastic.errors import UsageError

PLOT_SUFFIXES = (".png", ".svg", ".pdf")
COLORS = {  # one color per component, in stacking order
    "dormant": "#4c72b0",
    "saturated": "#dd8452",
    "starved": "#55a868",
    "collapsed_attention": "#8172b3",
}


def check_plot_path(path: Path) -> None:
    if path.suffix.lower() not in PLOT_SUFFIXES:
        raise UsageError(f"--plot {path}: use a {', '.join(PLOT_SUFFIXES)} file name")


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise UsageError(
            "--plot and --format html need matplotlib: pip install 'plastic-reinit[plot]'"
        ) from None
    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    return plt


def contributions(layer: Mapping[str, Any]) -> dict[str, float]:
    """What each component adds to the layer's score (the weighted mean): the stack sums to the score."""
    parts = {k: float(v) for k, v in (layer.get("components") or {}).items() if v is not None}
    total = sum(WEIGHTS.get(k, 0.0) for k in parts)
    if total == 0:
        return {}
    return {k: WEIGHTS.get(k, 0.0) * v / total for k, v in parts.items() if WEIGHTS.get(k, 0.0) > 0}


def score_figure(doc: Mapping[str, Any]) -> Any:
    """A matplotlib Figure of the diagnose document's scores (layers without a score are left out)."""
    plt = _pyplot()
    layers = [la for la in doc["layers"] if la.get("score") is not None]
    rec = doc.get("recommendation") or {}
    chosen = set(rec.get("layers") or [])
    threshold = rec.get("threshold")
    n = len(layers)
    trial = doc.get("trial")
    size = (min(max(8.0, 0.18 * n + 2.0), 40.0), 5.6 + (3.6 if trial else 0.0))
    fig, axes = plt.subplots(2 if trial else 1, 1, figsize=size, dpi=110, squeeze=False,
                             gridspec_kw={"height_ratios": [5.6, 3.6] if trial else [1.0]})  # fmt: skip
    ax = axes[0][0]
    if trial:
        race_axes(axes[1][0], trial)
    bottoms = [0.0] * n
    for comp, color in COLORS.items():
        heights = [contributions(la).get(comp, 0.0) for la in layers]
        if any(heights):
            ax.bar(range(n), heights, bottom=bottoms, color=color, width=0.8, label=comp, linewidth=0)
            bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    for i, la in enumerate(layers):
        if la["name"] in chosen:  # the recommended selection: outlined, and marked above the bar
            ax.bar(i, la["score"], width=0.8, fill=False, edgecolor="#c44e52", linewidth=1.6)
            ax.plot(i, la["score"] + 0.01, marker="v", color="#c44e52", markersize=5)
    previous = None
    for i, la in enumerate(layers):  # block boundaries
        block = la.get("block")
        if previous is not None and block != previous:
            ax.axvline(i - 0.5, color="#999999", linewidth=0.5, alpha=0.6)
        previous = block
    if threshold is not None:
        ax.axhline(
            threshold, color="#c44e52", linestyle="--", linewidth=1.0, label=f"threshold {threshold:g}"
        )
    ax.set_xticks(range(n))
    ax.set_xticklabels([la["name"] for la in layers], rotation=90, fontsize=6 if n > 40 else 8)
    for label, la in zip(ax.get_xticklabels(), layers, strict=True):
        if la["name"] in chosen:
            label.set_color("#c44e52")
            label.set_fontweight("bold")
    ax.set_xlim(-0.6, n - 0.4)
    top = max([la["score"] for la in layers] + [threshold or 0.0, 0.05])
    ax.set_ylim(0, min(1.0, top * 1.15 + 0.02))
    ax.set_ylabel("saturation score")
    arch = (doc.get("arch") or {}).get("name") or "model"
    verdict = f"re-initialize {len(chosen)}" if chosen else "fine-tune as is"
    ax.set_title(f"plastic diagnose: {arch}, {n} layers in model order ({verdict})", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", frameon=False, ncol=5)
    ax.spines[["top", "right"]].set_visible(False)
    fig.tight_layout()
    return fig


def race_axes(ax: Any, trial: Mapping[str, Any]) -> None:
    """The trial's race: each candidate's validation accuracy at the rungs it reached (the winner bold,
    the rule's pick dashed); a line that stops is a candidate dropped at that rung."""
    for c in trial["candidates"]:
        steps = [r["steps"] for r in c["rungs"]]
        accs = [100 * r["accuracy"] for r in c["rungs"]]
        win = c["name"] == trial["winner"]
        style = "--" if c["name"] == trial["rule"] else "-"
        ax.plot(steps, accs, style, marker="o", markersize=3, linewidth=2.4 if win else 1.1, label=c["name"])
    ax.set_xticks([int(s) for s in trial["recipe"]["rungs"]])
    ax.set_xlabel("optimizer steps (rungs of the race)")
    ax.set_ylabel("validation accuracy (%)")
    verdict = "decided" if trial.get("decided") else "did not decide"
    ax.set_title(f"the trial ({verdict}): winner {trial['winner']}", fontsize=10)
    ax.legend(fontsize=7, loc="lower right", frameon=False, ncol=2)
    ax.spines[["top", "right"]].set_visible(False)


def plot_bytes(doc: Mapping[str, Any], fmt: str) -> bytes:
    """The figure encoded as ``png``, ``svg`` or ``pdf``."""
    plt = _pyplot()
    fig = score_figure(doc)
    buf = io.BytesIO()
    # a fixed date and no software tag: the same report gives the same bytes
    meta: dict[str, Any] = {"png": {"Software": None}, "svg": {"Date": None},
                            "pdf": {"CreationDate": None, "Producer": None}}.get(fmt, {})  # fmt: skip
    if fmt == "svg":
        import matplotlib

        matplotlib.rcParams["svg.hashsalt"] = "plastic"  # element ids stable from run to run
    fig.savefig(buf, format=fmt, metadata=meta, bbox_inches="tight")  # the rotated names never cut off
    plt.close(fig)
    return buf.getvalue()
