"""Rendering reports for people: rich tables and markdown (a JSON document is rendered by json.dumps)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text


@dataclass(frozen=True)
class Column:
    """One table column: the title shown, whether it holds names (left-aligned, the only cells that may
    fold), and its priority when the terminal is narrow (1 is kept longest; ties keep table order)."""

    title: str
    name: bool = False
    priority: int = 100


def _columns(titles: list[str], names: set[str], priority: list[str] | None = None) -> list[Column]:
    """Columns from their titles: ``names`` are the name columns, ``priority`` lists titles most
    important first (default: left to right)."""
    order = priority or titles
    return [Column(t, t in names, order.index(t) + 1 if t in order else len(order) + 1) for t in titles]


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


def printable(text: str) -> str:
    """Control, format (bidi overrides such as U+202E) and other unprintable characters as escapes, so
    that a tensor name, a path or a metadata value cannot drive the terminal or reorder what is shown."""
    return "".join(
        c if c.isprintable() or c == " " else c.encode("unicode_escape").decode("ascii") for c in text
    )


def for_people(doc: Any) -> Any:
    """A copy of a document with every string (keys too) made printable: what tables, markdown and HTML
    show. ``--json`` prints the document itself, exact."""
    if isinstance(doc, str):
        return printable(doc)
    if isinstance(doc, Mapping):
        return {for_people(k): for_people(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [for_people(v) for v in doc]
    return doc


def fmt_num(v: float | None) -> str:
    """Three significant digits: compact, and wide enough to rank and compare."""
    if v is None:
        return "-"
    if v == 0:
        return "0"
    return f"{v:.3g}"


def fmt_int(n: int) -> str:
    return f"{n:,}"


def fmt_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def dump_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, allow_nan=False)


def _shape_cell(layer: Mapping[str, Any]) -> str:
    tensors = layer["tensors"]
    main = next((t for t in tensors if t["name"] == layer.get("stats_tensor")), tensors[0])
    shape = "x".join(map(str, main["shape"])) or "scalar"
    extra = len(tensors) - 1
    return f"{shape} (+{extra})" if extra else shape


def _layer_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    with_stats = any(la["metrics"] is not None for la in doc["layers"])
    header = ["layer", "shape", "params", "dtype"]
    columns = list(WEIGHT_COLUMNS)
    if any((la["metrics"] or {}).get("nonfinite") for la in doc["layers"]):
        columns.append(("nonfinite", "nonfinite"))  # only when a layer holds inf or NaN
    if with_stats:
        header += [title for _, title in columns]
    rows = []
    for la in doc["layers"]:
        dtypes = sorted({t["dtype"] for t in la["tensors"]})
        row = [la["name"], _shape_cell(la), fmt_int(la["params"]), ",".join(dtypes)]
        if with_stats:
            m = la["metrics"] or {}
            row += [fmt_num(m.get(code)) for code, _ in columns]
        rows.append(row)
    return header, rows


ARCH_ORIGINS = {
    "option": "from --arch",
    "config.json": "from config.json",
    "metadata": "from the file's metadata",
    "checkpoint": "from the file's arch entry",
    "detected": "recognised by its tensors",
}


def arch_origin(source: str) -> str:
    """How the architecture was decided, in words (a report's ``arch.source``)."""
    return ARCH_ORIGINS.get(source, f"from {source}")


def _summary_lines(doc: Mapping[str, Any]) -> list[str]:
    ck, tot, arch = doc["checkpoint"], doc["totals"], doc["arch"]
    dtypes = ", ".join(f"{k}: {v}" for k, v in tot["dtypes"].items())
    lines = [
        f"file: {ck['path']} ({ck['format']}, {fmt_bytes(ck['size_bytes'])})",
        f"tensors: {fmt_int(tot['tensors'])}   parameters: {fmt_int(tot['parameters'])}   "
        f"data: {fmt_bytes(tot['bytes'])}   dtypes: {dtypes}",
        f"arch: {arch['name'] or ', '.join(arch.get('candidates') or []) or 'unknown'}"
        + (f" ({arch_origin(arch['source'])})" if arch["source"] else "")
        + (f": {arch['certainty']}" if arch.get("certainty") else ""),
    ]
    if ck["container_key"]:
        lines.append(f"weights taken from entry: {ck['container_key']!r}")
    if ck["stripped_prefixes"]:
        lines.append(f"stripped prefixes: {', '.join(ck['stripped_prefixes'])}")
    for k, v in ck["metadata"].items():
        lines.append(f"metadata {k}: {v if len(v) <= 120 else v[:117] + '...'}")
    if doc.get("filter"):
        lines.append(f"layers shown: {len(doc['layers'])} matching {doc['filter']!r}")
    bad = [(la["name"], n) for la in doc["layers"] if (n := (la["metrics"] or {}).get("nonfinite"))]
    if bad:
        named = ", ".join(f"{name} ({n:.0f})" for name, n in bad[:5]) + (" ..." if len(bad) > 5 else "")
        lines.append(f"non-finite values (inf or NaN) in {len(bad)} layer(s): {named}")
    return lines


def inspect_table(console: Console, doc: Mapping[str, Any], wide: bool = False) -> None:
    header, rows = _layer_rows(doc)
    _table(console, f"{doc['checkpoint']['path']}", _columns(header, {"layer", "shape", "dtype"}), rows, wide)
    for line in _summary_lines(doc):
        console.print(line, markup=False, soft_wrap=True)  # never break a command or a path


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(cell: str) -> str:
        return cell.replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def inspect_markdown(doc: Mapping[str, Any]) -> str:
    header, rows = _layer_rows(doc)
    summary = "\n".join(f"- {line}" for line in _summary_lines(doc))
    return (
        f"### plastic inspect `{doc['checkpoint']['path']}`\n\n{summary}\n\n{markdown_table(header, rows)}\n"
    )


# --- diagnose ----------------------------------------------------------------------------------------------

DIAG_COLUMNS = [
    ("dormant_frac", "dormant"),
    ("dead_frac", "dead"),
    ("saturated_frac", "saturated"),
    ("feature_erank", "erank"),
    ("feature_srank99", "srank99"),
    ("grad_ratio", "grad_ratio"),
    ("attn_entropy", "attn_ent"),
]
DEFAULT_TOP = 15


def _diag_rows(doc: Mapping[str, Any], show_all: bool) -> tuple[list[str], list[list[str]]]:
    layers = doc["layers"]
    ranked = sorted((la for la in layers if la["rank"] is not None), key=lambda la: la["rank"])
    if show_all:
        unranked = [la for la in layers if la["rank"] is None]
        chosen = ranked + unranked
    else:
        chosen = ranked[:DEFAULT_TOP]
    header = ["rank", "layer", "type", "units", "score", "why", *[t for _, t in DIAG_COLUMNS], "block"]
    rows = []
    for la in chosen:
        m = la["metrics"]
        rank = str(la["rank"]) if la["rank"] is not None else ("head" if la["classifier"] else "-")
        rows.append(
            [rank, la["name"], la["type"], str(la["units"]), fmt_num(la["score"]), _why(la)]
            + [fmt_num(m.get(code)) for code, _ in DIAG_COLUMNS]
            + [la["block"] or "-"]
        )
    return header, rows


def _why(layer: Mapping[str, Any]) -> str:
    """The score's two largest components, compactly: ``saturated 0.57 starved 0.19``."""
    parts = sorted(
        ((v, k) for k, v in (layer.get("components") or {}).items() if v and k != "collapse"), reverse=True
    )
    short = {"collapsed_attention": "attention"}
    return " ".join(f"{short.get(k, k)} {v:.2f}" for v, k in parts[:2]) or "-"


# The diagnose table's columns, most important first: dropped from the end when the terminal is narrow.
DIAG_PRIORITY = [
    "rank", "layer", "score", "why", "units", "dormant", "saturated", "grad_ratio", "type", "block", "dead",
    "attn_ent", "erank", "srank99",
]  # fmt: skip
DIAG_NAMES = {"layer", "type", "why", "block"}  # left-aligned; the only cells that may fold


def _diag_columns(header: list[str]) -> list[Column]:
    return _columns(header, DIAG_NAMES, DIAG_PRIORITY)


def _block_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    header = ["rank", "block", "layers", "score"]
    rows = [
        [
            str(b["rank"]) if b["rank"] is not None else "-",
            b["name"],
            str(len(b["layers"])),
            fmt_num(b["score"]),
        ]
        for b in sorted(doc["blocks"], key=lambda b: (b["rank"] is None, b["rank"] or 0))
    ]
    return header, rows


def _timing_line(t: dict[str, float], reference: bool, reference_images: int | None = None) -> str:
    """Where the time went; older reports (two passes) have no ``pass_s``, nor ``threads``."""
    if "pass_s" not in t:
        return f"stats pass {t['stats_s']:.2f} s, gradient pass {t['gradients_s']:.2f} s"
    what = "checkpoint + fresh reference" if reference else "checkpoint"
    if reference and reference_images:
        what += f" on <= {reference_images} images"
    if t.get("reference_cached"):
        what = "checkpoint; the fresh reference from the cache"
    threads = f", {t['threads']:g} torch threads" if "threads" in t else ""
    # the reference's seed-to-seed spread: three fresh draws on a few images (none from the cache)
    spread = f", reference spread {t['spread_s']:.2f} s" if t.get("spread_s") else ""
    return (
        f"time: build {t['build_s']:.2f} s, one pass ({what}: forward + backward) {t['pass_s']:.2f} s "
        f"({t['images_per_s']:.1f} images/s){spread}, metrics {t['metrics_s']:.2f} s, total "
        f"{t['total_s']:.2f} s" + threads
    )


VERDICT_WIDTH = 100  # the verdict line is read first, and whole, at any terminal width


def verdict(rec: Mapping[str, Any], trial: Mapping[str, Any] | None = None) -> str:
    """One line of at most VERDICT_WIDTH characters: the action, what it touches, the rate when a trial
    ran, the confidence."""
    low = " (low confidence)" if rec.get("confidence") == "low" else ""  # the notes above say why
    if trial is not None:  # the rate is part of the advice only when the trial tried rates
        low = f" at {float(rec.get('lr_scale') or 1.0):g}x the trial's rate" + low
    layers = [str(x) for x in rec.get("layers") or []]
    start = (rec.get("options") or {}).get("from_block")
    if rec.get("action") != "reinit" or not layers:
        text = "fine-tune as is; nothing needs re-initializing"
    elif rec.get("strategy") == "from-block" and start:
        text = f"re-initialize from {start} up (head included), then fine-tune"
    else:
        shown = layers[0] + (f" and {len(layers) - 1} more layer(s)" if len(layers) > 1 else "")
        text = f"re-initialize {shown}, then fine-tune"
    room = VERDICT_WIDTH - len("verdict: ") - len(low)  # the confidence is never the part cut
    return f"verdict: {text if len(text) <= room else text[: room - 3] + '...'}{low}"


def _fitted(text: str, width: int | None, first: str = "", rest: str = "  ") -> list[str]:
    """``first + text`` as lines of at most ``width``, continuations indented by ``rest`` (a path or a
    number is never split); one line when ``width`` is None (markdown and HTML)."""
    import textwrap

    if width is None:
        return [first + text]
    return textwrap.wrap(
        text, width=max(width, 40), initial_indent=first, subsequent_indent=rest,
        break_long_words=False, break_on_hyphens=False,
    )  # fmt: skip


def _wrapped(label: str, text: str, width: int | None) -> list[str]:
    """``  label: text`` as lines of at most ``width`` (None: one line, for markdown and HTML)."""
    return _fitted(text, width, first=f"  {label}: ", rest="    ")


def _diag_summary(doc: Mapping[str, Any], show_all: bool, width: int | None = None) -> list[str]:
    cal, arch, cfg = doc["calibration"], doc["arch"], doc["data_config"]
    ranked = sum(1 for la in doc["layers"] if la["rank"] is not None)
    lines = [
        f"model: {arch['name']} ({arch_origin(arch['source'])}) on {doc['device']}"
        + (" with bf16 autocast" if doc["amp"] else ""),
        *_fitted(
            f"calibration: {cal['images_used']} images from {cal['path']} "
            f"({cal['images_skipped']} skipped, labels: {cal['labels']}), "
            f"input {'x'.join(map(str, cfg['input_size']))}",
            width,
        ),
        *_fitted(
            _timing_line(
                doc["timing"], bool(doc["options"].get("reference")), doc["options"].get("reference_images")
            ),
            width,
        ),
    ]
    if not show_all and ranked > DEFAULT_TOP:
        lines.append(f"showing the top {DEFAULT_TOP} of {ranked} ranked layers; --all shows every layer")
    for f in doc.get("findings") or []:
        lines.append(f"fail-on {f['rule']}: {f['layer']} = {f['value']:.4g}")
    rec = doc.get("recommendation")
    if rec:
        lines.append(verdict(rec, doc.get("trial")))  # then why and evidence, wrapped; commands whole
        lines += _wrapped("why", str(rec["reason"]), width)
        if rec.get("evidence"):
            lines += _wrapped("evidence", str(rec["evidence"]), width)
        commands = rec.get("commands") or []
        if commands:  # the command on a line of its own, whole: it runs when pasted
            lines.append("  to carry it out, run:")
            lines.append(f"  {commands[0]}")
            pipe = "pipe `plastic diagnose ... --json` into `plastic reinit -s auto -o OUT`"
            lines += _wrapped("or", pipe, width)
        for alt, command in zip(rec.get("alternatives", []), commands[1:] or [None], strict=False):
            lines.append(f"  or: {alt}")
            if command:
                lines.append(f"  {command}")
    if doc.get("trial"):
        lines += race_lines(doc["trial"], width)
    return lines


def race_lines(trial: Mapping[str, Any], width: int | None = None) -> list[str]:
    """The trial as a short table: each candidate's validation accuracy at every rung it reached, best
    first, the winner marked; then its verdict."""
    data, recipe = trial["data"], trial["recipe"]
    rungs = [int(s) for s in recipe["rungs"]]
    lines = [
        f"trial: {len(data['classes'])} classes, {data['train_images']} images to train, "
        f"{data['validation_images']} to validate; {recipe['optimizer']} at {recipe['lr']:g} x the rate, "
        f"batch {recipe['batch_size']}, {recipe['budget_steps']} steps; validation accuracy at step:"
    ]
    name_w = min(36, max(len(c["name"]) for c in trial["candidates"]))
    lines.append("  " + "candidate".ljust(name_w) + "".join(f"{s:>8}" for s in rungs))

    def key(c: Mapping[str, Any]) -> tuple[int, float]:
        last = c["rungs"][-1] if c["rungs"] else {"accuracy": 0.0}
        return (-len(c["rungs"]), -float(last["accuracy"]))

    for c in sorted(trial["candidates"], key=key):
        cells = [f"{100 * r['accuracy']:7.1f}%" for r in c["rungs"]] + ["       -"] * (
            len(rungs) - len(c["rungs"])
        )
        mark = (
            "  winner" if c["name"] == trial["winner"] else ("  rule" if c["name"] == trial["rule"] else "")
        )
        name = c["name"] if len(c["name"]) <= name_w else c["name"][: name_w - 3] + "..."
        lines.append("  " + name.ljust(name_w) + "".join(cells) + mark)
    lines += _wrapped("trial", str(trial["verdict"]), width)
    return lines


def _table(
    console: Console,
    title: str,
    columns: list[Column],
    rows: list[list[str]],
    wide: bool = False,
) -> None:
    """A rich table that fits the console: columns are dropped, least important first (their
    ``priority``), until the rest fit, unless ``wide``. Numbers never wrap; only the name columns
    may fold."""
    header = [c.title for c in columns]
    keep = list(range(len(header)))
    widths = [max([len(h), *(len(r[i]) for r in rows)]) + 3 for i, h in enumerate(header)]  # + padding, rule
    if not wide:
        order = sorted(keep, key=lambda i: (columns[i].priority, i))
        chosen: list[int] = []
        for i in order:
            if sum(widths[j] for j in chosen) + widths[i] + 1 <= console.width or len(chosen) < 2:
                chosen.append(i)
        keep = sorted(chosen)
    table = Table(title=Text(title), title_justify="left")  # Text: names are never read as markup
    for i in keep:
        folds = columns[i].name
        table.add_column(
            header[i],
            justify="left" if folds else "right",
            overflow="fold" if folds else "ellipsis",  # "ignore" would also drop the justification
            no_wrap=not folds,
        )
    for row in rows:
        table.add_row(*(Text(row[i]) for i in keep))
    # --wide: as wide as the columns need (the terminal wraps it), never squeezed into folded headers
    saved = console.width
    if wide:
        console.width = max(saved, sum(widths) + 1)
    try:
        console.print(table)
    finally:
        console.width = saved
    if len(keep) < len(header):
        dropped = ", ".join(header[i] for i in range(len(header)) if i not in keep)
        console.print(
            f"(not shown at {console.width} columns: {dropped}; --wide or --json for all)", markup=False
        )


def diagnose_table(console: Console, doc: Mapping[str, Any], show_all: bool, wide: bool = False) -> None:
    header, rows = _diag_rows(doc, show_all)
    _table(
        console, f"Layers by saturation score: {doc['checkpoint']['path']}", _diag_columns(header), rows, wide
    )
    if doc["blocks"]:
        bh, br = _block_rows(doc)
        _table(console, "Blocks", _columns(bh, {"block"}), br, wide)
    for line in _diag_summary(doc, show_all, console.width):
        console.print(line, markup=False, soft_wrap=True)  # wrapped above where it may be; never a command


def diagnose_brief(doc: Mapping[str, Any], width: int | None = None) -> list[str]:
    """What a person in front of a pipe needs from diagnose --json: the model and the recommendation
    (printed on stderr, so stdout stays one JSON document), laid out as the table's summary is."""
    lines = _diag_summary(doc, show_all=True, width=width)
    start = next((i for i, ln in enumerate(lines) if ln.startswith(("fail-on", "verdict:"))), len(lines))
    return [lines[0], *lines[start:]]


def diagnose_markdown(doc: Mapping[str, Any], show_all: bool) -> str:
    header, rows = _diag_rows(doc, show_all)
    summary = "\n".join(f"- {line}" for line in _diag_summary(doc, show_all))
    text = (
        f"### plastic diagnose `{doc['checkpoint']['path']}`\n\n{summary}\n\n{markdown_table(header, rows)}\n"
    )
    if doc["blocks"]:
        bh, br = _block_rows(doc)
        text += f"\n{markdown_table(bh, br)}\n"
    if doc.get("findings"):
        rows = [
            [f"`{f['layer']}`", f["metric"], f"{f['value']:.4g}", f"`{f['rule']}`"] for f in doc["findings"]
        ]
        text += f"\n**{len(rows)} finding(s) over --fail-on** (the job fails on them):\n\n"
        text += markdown_table(["layer", "metric", "value", "rule"], rows) + "\n"
    return text


# --- reinit ------------------------------------------------------------------------------------------------


def _reinit_rows(doc: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    from plastic.pipelines.inspect import natural_key

    header = ["tensor", "kind", "fraction"]
    changed = sorted(doc["changed"], key=lambda c: natural_key(c["tensor"]))  # model order, not file order
    return header, [[c["tensor"], c["kind"], f"{c['fraction']:.3f}"] for c in changed]


def _reinit_summary(doc: Mapping[str, Any]) -> list[str]:
    where = "dry run: nothing written" if doc["dry_run"] else f"wrote {doc['output']}"
    return [
        f"{where} ({doc['strategy']}, seed {doc['seed']}) from {doc['input']}",
        f"{'would change' if doc['dry_run'] else 'changed'} {len(doc['changed'])} tensors, "
        f"{doc['unchanged_tensors']} unchanged (bit-identical)",
        f"new values: {doc['init_source']}",
    ]


def reinit_table(console: Console, doc: Mapping[str, Any], wide: bool = False) -> None:
    header, rows = _reinit_rows(doc)
    _table(console, "Re-initialized tensors", _columns(header, {"tensor", "kind"}), rows, wide)
    for line in _reinit_summary(doc):
        console.print(line, markup=False, soft_wrap=True)  # never break a command or a path


def reinit_markdown(doc: Mapping[str, Any]) -> str:
    header, rows = _reinit_rows(doc)
    summary = "\n".join(f"- {line}" for line in _reinit_summary(doc))
    return f"### plastic reinit `{doc['input']}`\n\n{summary}\n\n{markdown_table(header, rows)}\n"


# --- html --------------------------------------------------------------------------------------------------

HTML_STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 96em;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.3em; } h2 { font-size: 1.1em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: .5em 0; font-size: 13px; }
th, td { border-bottom: 1px solid #ddd; padding: .25em .6em; text-align: right; }
th { background: #f4f4f4; } td.name, th.name { text-align: left; font-family: ui-monospace, monospace; }
td, th { white-space: nowrap; } .scroll { overflow-x: auto; }
tr.chosen td { background: #fdecec; font-weight: 600; }
pre { background: #f6f6f6; padding: .6em .8em; overflow-x: auto; }
.verdict { font-size: 1.05em; padding: .6em .8em; border-left: 4px solid #c44e52; background: #fbf3f3; }
.fail { border-left-color: #b00020; } .muted { color: #666; } svg { max-width: 100%; height: auto; }
"""


def _html_table(header: list[str], rows: list[list[str]], names: set[int], chosen_rows: set[int]) -> str:
    from html import escape

    head = "".join(f'<th class="name">{escape(h)}</th>' if i in names else f"<th>{escape(h)}</th>"
                   for i, h in enumerate(header))  # fmt: skip
    body = []
    for r, row in enumerate(rows):
        cells = "".join(f'<td class="name">{escape(c)}</td>' if i in names else f"<td>{escape(c)}</td>"
                        for i, c in enumerate(row))  # fmt: skip
        body.append(f'<tr class="chosen">{cells}</tr>' if r in chosen_rows else f"<tr>{cells}</tr>")
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"
    return f'<div class="scroll">{table}</div>'


def diagnose_html(doc: Mapping[str, Any], show_all: bool, plot_svg: str | None) -> str:
    """One self-contained HTML page (no external file or script): the verdict and the commands that
    carry it out, the --fail-on findings, the score plot inline, the layer and block tables."""
    from html import escape

    rec = doc.get("recommendation") or {}
    chosen = set(rec.get("layers") or [])
    header, rows = _diag_rows(doc, show_all)
    name_col = header.index("layer") if "layer" in header else 1
    chosen_rows = {i for i, r in enumerate(rows) if r[name_col] in chosen}
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>plastic diagnose {escape(str(doc['checkpoint']['path']))}</title>",
        f"<style>{HTML_STYLE}</style></head><body>",
        f"<h1>plastic diagnose <code>{escape(str(doc['checkpoint']['path']))}</code></h1>",
    ]
    if rec:
        line = verdict(rec, doc.get("trial"))
        parts.append(f'<p class="verdict">{escape(line)}</p><p>{escape(str(rec["reason"]))}</p>')
        if rec.get("evidence"):
            parts.append(f"<p>Evidence: {escape(str(rec['evidence']))}</p>")
        commands = rec.get("commands") or []
        if commands:
            parts.append("<p>To carry it out:</p><pre>" + escape("\n".join(commands)) + "</pre>")
    findings = doc.get("findings") or []
    if findings:
        frows = [[f["layer"], f["metric"], f"{f['value']:.4g}", f["rule"]] for f in findings]
        parts.append(
            f'<p class="verdict fail">{len(findings)} finding(s) over --fail-on: the job fails on them.</p>'
        )
        parts.append(_html_table(["layer", "metric", "value", "rule"], frows, {0, 3}, set()))
    facts = [ln for ln in _diag_summary(doc, show_all) if not ln.startswith(("verdict:", "  ", "fail-on"))]
    parts.append("<ul>" + "".join(f"<li>{escape(line)}</li>" for line in facts) + "</ul>")
    if plot_svg is not None:
        start = plot_svg.find("<svg")
        parts.append("<h2>Scores in model order</h2>" + (plot_svg[start:] if start >= 0 else plot_svg))
    else:
        parts.append(
            '<p class="muted">No plot: matplotlib is not installed '
            "(pip install 'plastic-reinit[plot]').</p>"
        )
    parts.append("<h2>Layers by saturation score</h2>")
    names = {i for i, h in enumerate(header) if h in ("layer", "type", "why")}  # block: right, as before
    parts.append(_html_table(header, rows, names, chosen_rows))
    if doc.get("blocks"):
        bh, br = _block_rows(doc)
        parts.append("<h2>Blocks</h2>" + _html_table(bh, br, {1}, set()))
    parts.append(f'<p class="muted">schema_version {doc["schema_version"]}; '
                 "the same document as <code>--json</code> is in the comment below.</p>")  # fmt: skip
    parts.append("<!-- plastic diagnose --json\n" + dump_json(doc).replace("--", "- -") + "\n-->")
    parts.append("</body></html>\n")
    return "\n".join(parts)
