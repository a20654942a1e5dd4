"""``--fail-on METRIC>VALUE``: the CI gate over a diagnose report."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from plastic.errors import UsageError

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
}
_PATTERN = re.compile(r"^\s*([A-Za-z_][\w]*)\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


@dataclass(frozen=True)
class Condition:
    metric: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.value:g}"

    def holds(self, x: float) -> bool:
        return _OPS[self.op](x, self.value)


def parse_condition(text: str, known: Iterable[str]) -> Condition:
    m = _PATTERN.match(text)
    if not m:
        raise UsageError(f"--fail-on {text!r}: expected METRIC>VALUE (or >=, <, <=), e.g. dormant_frac>0.2")
    metric, op, value = m.group(1), m.group(2), float(m.group(3))
    names = sorted(set(known))
    if metric not in names:
        raise UsageError(f"--fail-on {text!r}: unknown metric {metric!r}; choose from {', '.join(names)}")
    return Condition(metric, op, value)


def failing_layers(
    layers: Iterable[Mapping[str, Any]], conditions: Iterable[Condition]
) -> list[tuple[str, Condition, float]]:
    """(layer, condition, value) for every layer whose metric (or ``score``) meets a condition."""
    hits = []
    for cond in conditions:
        for la in layers:
            value = la.get("score") if cond.metric == "score" else la.get("metrics", {}).get(cond.metric)
            if value is not None and cond.holds(float(value)):
                hits.append((str(la["name"]), cond, float(value)))
    return hits


def findings(layers: Iterable[Mapping[str, Any]], conditions: Iterable[Condition]) -> list[dict[str, Any]]:
    """The ``findings`` of a report: each layer that meets a ``--fail-on`` rule, as JSON-ready rows."""
    return [
        {"layer": layer, "metric": cond.metric, "value": value, "rule": str(cond)}
        for layer, cond, value in failing_layers(layers, conditions)
    ]
