"""Rendering reports for people: rich tables and markdown (a JSON document is rendered by json.dumps)."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

# Short column titles for the data-free metrics, in display order.
WEIGHT_COLUMNS = [
    ("abs_mean", "abs_mean"),
    ("std", "std"),
    ("l2", "l2"),
    ("abs_max", "abs_max"),
    ("near_zero", "near_zero"),
    ("weight_stable_rank", "w_srank"),
    ("dead_norm_channels", "dead_gain"),
]


def fmt_num(v: float | None) -> str:
    if v is None:
        return "-"
    if v == 0:
        return "0"
    return f"{v:.4g}"


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def dump_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, allow_nan=False)


def _shape_cell(layer: dict[str, Any]) -> str:
    tensors = layer["tensors"]
    main = next((t for t in tensors if t["name"] == layer.get("stats_tensor")), tensors[0])
    shape = "x".join(map(str, main["shape"])) or "scalar"
    extra = len(tensors) - 1
    return f"{shape} (+{extra})" if extra else shape


def _layer_rows(doc: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    with_stats = any(la["metrics"] is not None for la in doc["layers"])
    header = ["layer", "shape", "params", "dtype"]
    if with_stats:
        header += [title for _, title in WEIGHT_COLUMNS]
    rows = []
    for la in doc["layers"]:
        dtypes = sorted({t["dtype"] for t in la["tensors"]})
        row = [la["name"], _shape_cell(la), fmt_int(la["params"]), ",".join(dtypes)]
        if with_stats:
            m = la["metrics"] or {}
            row += [fmt_num(m.get(code)) for code, _ in WEIGHT_COLUMNS]
        rows.append(row)
    return header, rows


def _summary_lines(doc: dict[str, Any]) -> list[str]:
    ck, tot, arch = doc["checkpoint"], doc["totals"], doc["arch"]
    dtypes = ", ".join(f"{k}: {v}" for k, v in tot["dtypes"].items())
    lines = [
        f"file: {ck['path']} ({ck['format']}, {fmt_bytes(ck['size_bytes'])})",
        f"tensors: {fmt_int(tot['tensors'])}   parameters: {fmt_int(tot['parameters'])}   "
        f"data: {fmt_bytes(tot['bytes'])}   dtypes: {dtypes}",
        f"arch: {arch['name'] or 'unknown'}" + (f" (from {arch['source']})" if arch["source"] else ""),
    ]
    if ck["container_key"]:
        lines.append(f"weights taken from entry: {ck['container_key']!r}")
    if ck["stripped_prefixes"]:
        lines.append(f"stripped prefixes: {', '.join(ck['stripped_prefixes'])}")
    for k, v in ck["metadata"].items():
        lines.append(f"metadata {k}: {v if len(v) <= 120 else v[:117] + '...'}")
    if doc.get("filter"):
        lines.append(f"layers shown: {len(doc['layers'])} matching {doc['filter']!r}")
    return lines


def inspect_table(console: Console, doc: dict[str, Any]) -> None:
    header, rows = _layer_rows(doc)
    table = Table(title=f"{doc['checkpoint']['path']}", title_justify="left", show_lines=False)
    for i, h in enumerate(header):
        table.add_column(h, justify="left" if i in (0, 1, 3) else "right", overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for line in _summary_lines(doc):
        console.print(line, markup=False)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def inspect_markdown(doc: dict[str, Any]) -> str:
    header, rows = _layer_rows(doc)
    summary = "\n".join(f"- {line}" for line in _summary_lines(doc))
    return (
        f"### plastic inspect `{doc['checkpoint']['path']}`\n\n{summary}\n\n{markdown_table(header, rows)}\n"
    )
