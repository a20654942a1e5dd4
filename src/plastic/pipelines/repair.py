"""A checkpoint with NaN or inf weights: which layers hold them, what the report says, and a verdict that
repairs them before anything else (fine-tuning such a model spreads NaN through every gradient)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from plastic.decide.recommend import Recommendation
from plastic.model.modules import layers_of


def nonfinite_layers(model: nn.Module) -> list[str]:
    """The layers whose own weights or buffers hold inf or NaN."""
    return [
        name
        for name, m in layers_of(model).items()
        if any(not bool(torch.isfinite(t).all()) for t in (*m.parameters(False), *m.buffers(False)))
    ]


def repair_first(
    rec: Recommendation, bad: list[str], commands: Callable[[Recommendation], list[str]]
) -> Recommendation:
    """A checkpoint with NaN or inf weights is never told to fine-tune as is: fine-tuning it spreads
    NaN through every gradient. The verdict becomes "re-initialize those layers" (low confidence: the
    statistics downstream of them measured nothing finite); the statistics' own verdict stays as an
    alternative, to revisit with diagnose on the repaired file."""
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    start = rec.options.get("from_block") or ", ".join(rec.layers[:3])
    was = f"re-initialize {start}" if rec.action == "reinit" else "fine-tune as is"
    fixed = Recommendation(
        "reinit", "layers", {"layers": list(bad)}, list(bad), rec.threshold,
        f"{len(bad)} layer(s) hold non-finite weights (inf or NaN): {shown}; fine-tuning would spread NaN "
        "through every gradient, so re-initialize them first (or repair the checkpoint), then run "
        f"diagnose again on the repaired file: the statistics of the rest ({was}) measured a broken model",
        confidence="low", evidence="",
    )  # fmt: skip
    fixed.commands = commands(fixed)
    return fixed


def nonfinite_note(model: nn.Module, layers: Sequence[Any]) -> str | None:
    """Which layers hold inf or NaN weights, and how many measured nothing finite: the report says so."""
    bad = nonfinite_layers(model)
    blank = [r.name for r in layers if not r.classifier and r.score is None]
    if not bad:
        return None
    shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
    return (
        f"non-finite weights (inf or NaN) in {len(bad)} layer(s): {shown}; {len(blank)} layer(s) measured "
        "no finite activations and are left unscored; repair the checkpoint, or re-initialize those "
        "layers (plastic reinit --strategy layers --layers NAME.*)"
    )
