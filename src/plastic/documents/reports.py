"""Reading a diagnose report back: the one place a document from outside (``--report FILE``, stdin, a
dict a library caller passes) is size-capped, parsed and validated field by field into a typed
``DiagnoseDoc``. Building one is each result's ``to_dict()`` (:mod:`plastic.pipelines.report`).

Each document carries ``schema_version``; a key is never renamed or removed without bumping it, so
shell pipelines and CI gates can rely on them.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, cast

from plastic.documents.schema import READABLE_VERSIONS, DiagnoseDoc
from plastic.errors import UsageError

# A report is read back by reinit; anything larger than this is not one (and /dev/zero never ends). The
# largest real ones (every unit of a ViT-g dormant, one index per line) are under 10 MiB; parsed, a report
# costs about 2.5x its size on top of the ~0.65 GB that importing torch takes.
MAX_REPORT_BYTES = 32 << 20


def read_report_text(stream: Any, what: str) -> bytes:
    """At most MAX_REPORT_BYTES from a binary ``stream``; more is a UsageError. Kept as bytes: the JSON
    parser reads UTF-8 bytes directly, so no decoded copy of a large report is ever made."""
    raw = stream.read(MAX_REPORT_BYTES + 1)
    if len(raw) > MAX_REPORT_BYTES:
        raise UsageError(f"{what}: larger than {MAX_REPORT_BYTES >> 20} MiB; not a diagnose report")
    return bytes(raw)


def parse_report(text: str | bytes, *, base: Path | None = None, what: str = "the report") -> DiagnoseDoc:
    """Parse and validate a ``diagnose --json`` document: the one place reports are checked.

    Relative paths in it (checkpoint, calibration folder) are as diagnose was given them, so they are
    resolved against the current folder first; where nothing is there, against ``base``, the folder of
    the report file (None: stdin), so that a report kept beside its checkpoint still works after both
    moved. The checkpoint's SHA-256 in the report then confirms that the file found is the one measured.
    """
    if not text or text.isspace():
        upstream = (
            " (when a command before the pipe failed, its own error is the line above)"
            if "stdin" in what
            else ""
        )
        raise UsageError(f"{what} is empty{upstream}: pipe `plastic diagnose ... --json` or give CKPT")
    try:
        doc = json.loads(text)
    except UnicodeDecodeError:
        raise UsageError(f"{what}: not UTF-8 text; not a diagnose report") from None
    except (json.JSONDecodeError, RecursionError) as e:
        msg = f"{e.msg} at line {e.lineno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
        raise UsageError(f"{what} is not JSON ({msg}); did diagnose run with --json?") from None
    report = validate_report(doc, what=what)
    if base is not None:
        for section in ("checkpoint", "calibration"):
            path = (doc.get(section) or {}).get("path")
            if not isinstance(path, str) or not path or Path(path).is_absolute():
                continue
            if not Path(path).exists() and (base / path).exists():
                doc[section]["path"] = str(base / path)
    return report


MAX_UNITS = 1 << 31  # no layer has more output units; dormant unit indices stay below a layer's ``units``


class _Check:
    """Field checks for one document: each failure is a UsageError naming the report and the field."""

    def __init__(self, what: str) -> None:
        self.what = what

    def fail(self, field: str, expected: str, value: Any) -> UsageError:
        from plastic.documents.validation import describe

        return UsageError(f"{self.what}: '{field}' must be {expected}, not {describe(value)}")

    def obj(self, parent: dict[str, Any], key: str, field: str, *, required: bool = False) -> dict[str, Any]:
        """An object (``{}`` when absent or null and not required)."""
        value = parent.get(key)
        if value is None and not required:
            return {}
        if not isinstance(value, dict):
            raise self.fail(field, "an object", value)
        return value

    def items(self, parent: dict[str, Any], key: str, field: str) -> list[Any]:
        value = parent.get(key, [])
        if not isinstance(value, list):
            raise self.fail(field, "a list", value)
        return value

    def text(
        self, parent: dict[str, Any], key: str, field: str, *, null: bool = True, empty: bool = True
    ) -> None:
        value = parent.get(key)
        if value is None and null:
            return
        if not isinstance(value, str) or (not empty and not value):
            raise self.fail(
                field, "a string" + ("" if empty else " (not empty)") + (" or null" if null else ""), value
            )

    def integer(
        self, parent: dict[str, Any], key: str, field: str, low: int = 0, high: int = MAX_UNITS
    ) -> None:
        value = parent.get(key)
        if value is not None and not (_is_int(value) and low <= value <= high):
            raise self.fail(field, f"an integer in {low}..{high} or null", value)

    def number(self, value: Any, field: str) -> None:
        if value is not None and not _finite(value):
            raise self.fail(field, "a finite number or null", value)

    def flag(self, parent: dict[str, Any], key: str, field: str) -> None:
        value = parent.get(key)
        if value is not None and not isinstance(value, bool):
            raise self.fail(field, "true, false or null", value)

    def names(self, values: list[Any], field: str, known: set[str]) -> None:
        """Layer names, each one of the report's own layers."""
        for i, name in enumerate(values):
            if not isinstance(name, str):
                raise self.fail(f"{field}[{i}]", "a layer name (a string)", name)
            if name not in known:
                raise UsageError(
                    f"{self.what}: '{field}[{i}]' names {name[:120]!r}, not a layer of the report"
                )


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    """A JSON number that is a finite float (an integer of 400 digits is not)."""
    if isinstance(v, bool) or not isinstance(v, int | float):
        return False
    try:
        return math.isfinite(float(v))
    except OverflowError:
        return False


def validate_report(doc: Any, *, what: str = "the report") -> DiagnoseDoc:
    """Every field reinit reads, by type and range; a report that fails is a UsageError naming the
    field. The one place a document read from outside becomes a typed ``DiagnoseDoc``: layer names in
    blocks, stages and the recommendation must be layers of the report (the checkpoint's modules are
    checked against them when it is opened)."""
    from plastic.documents.validation import describe, field_problem

    c = _Check(what)
    if not isinstance(doc, dict) or doc.get("command") != "diagnose":
        raise UsageError(f"{what} is not a `plastic diagnose --json` document")
    version = doc.get("schema_version")
    if not _is_int(version) or version not in READABLE_VERSIONS:
        raise UsageError(
            f"{what} has schema_version {version!r}; this plastic reads "
            + " and ".join(str(v) for v in READABLE_VERSIONS)
        )
    ckpt = c.obj(doc, "checkpoint", "checkpoint", required=True)
    c.text(ckpt, "path", "checkpoint.path", null=False, empty=False)
    c.text(ckpt, "container_key", "checkpoint.container_key")
    c.text(ckpt, "sha256", "checkpoint.sha256")
    c.integer(ckpt, "size_bytes", "checkpoint.size_bytes", high=1 << 62)
    c.text(c.obj(doc, "arch", "arch"), "name", "arch.name")
    c.text(c.obj(doc, "calibration", "calibration"), "path", "calibration.path")
    c.obj(doc, "options", "options")
    config = c.obj(doc, "data_config", "data_config")
    for key in ("input_size", "mean", "std"):
        problem = field_problem(key, config[key]) if config.get(key) is not None else None
        if problem:
            raise UsageError(f"{what}: 'data_config.{key}' {problem}, not {describe(config[key])}")
    layers = c.items(doc, "layers", "layers")
    known: set[str] = set()
    for i, la in enumerate(layers):
        where = f"layers[{i}]"
        if not isinstance(la, dict):
            raise c.fail(where, "an object", la)
        c.text(la, "name", f"{where}.name", null=False, empty=False)
        known.add(la["name"])
        c.flag(la, "classifier", f"{where}.classifier")
        c.number(la.get("score"), f"{where}.score")
        c.integer(la, "units", f"{where}.units")
        c.integer(la, "rank", f"{where}.rank")
        for part in ("metrics", "components", "reference", "reference_spread"):  # absent in older reports
            for k, v in c.obj(la, part, f"{where}.{part}").items():
                c.number(v, f"{where}.{part}.{k}")
        units = c.items(la, "dormant_units", f"{where}.dormant_units")
        limit = la["units"] if _is_int(la.get("units")) else MAX_UNITS
        for j, u in enumerate(units):
            if not (_is_int(u) and 0 <= u < limit):
                raise c.fail(f"{where}.dormant_units[{j}]", f"a unit index in 0..{limit - 1}", u)
    for i, b in enumerate(c.items(doc, "blocks", "blocks")):  # topk-layers --unit block reads them
        if not isinstance(b, dict):
            raise c.fail(f"blocks[{i}]", "an object", b)
        c.text(b, "name", f"blocks[{i}].name", null=False, empty=False)
        c.integer(b, "rank", f"blocks[{i}].rank")
        c.number(b.get("score"), f"blocks[{i}].score")
        c.names(c.items(b, "layers", f"blocks[{i}].layers"), f"blocks[{i}].layers", known)
        b.setdefault("layers", [])
        b.setdefault("rank", None)
    doc.setdefault("blocks", [])
    for i, st in enumerate(c.items(doc, "stages", "stages")):  # auto's recomputed recommendation reads them
        if not isinstance(st, dict):
            raise c.fail(f"stages[{i}]", "an object", st)
        c.text(st, "name", f"stages[{i}].name", null=False, empty=False)
        c.text(st, "start", f"stages[{i}].start", null=False, empty=False)
        c.number(st.get("score"), f"stages[{i}].score")
        if not isinstance(st.get("layers"), list):
            raise c.fail(f"stages[{i}].layers", "a list", st.get("layers"))
        c.names(st["layers"], f"stages[{i}].layers", known)
    doc.setdefault("stages", [])
    rec = doc.get("recommendation")
    if rec is not None:
        if not isinstance(rec, dict):
            raise c.fail("recommendation", "an object or null", rec)
        for key in ("action", "strategy", "reason"):
            c.text(rec, key, f"recommendation.{key}")
        c.names(c.items(rec, "layers", "recommendation.layers"), "recommendation.layers", known)
        options = c.obj(rec, "options", "recommendation.options")
        c.text(options, "from_block", "recommendation.options.from_block", empty=False)
        if rec.get("strategy") == "from-block" and not isinstance(options.get("from_block"), str):
            raise UsageError(f"{what}: a from-block recommendation needs options.from_block (a block name)")
        scale = rec.setdefault("lr_scale", 1.0)  # version 1 had no rate
        if not (_finite(scale) and 0 < scale <= 1000):
            raise c.fail("recommendation.lr_scale", "a number in (0, 1000]", scale)
    _check_trial(c, doc.setdefault("trial", None))
    return cast(DiagnoseDoc, doc)


def _check_trial(c: _Check, trial: Any) -> None:
    """The ``trial`` section: read for display and kept as it is; its fields by type."""
    if trial is None:
        return
    if not isinstance(trial, dict):
        raise c.fail("trial", "an object or null", trial)
    for key in ("winner", "runner_up", "rule", "verdict"):
        c.text(trial, key, f"trial.{key}", null=False)
    c.flag(trial, "decided", "trial.decided")
    c.obj(trial, "recipe", "trial.recipe", required=True)
    c.obj(trial, "data", "trial.data", required=True)
    names = set()
    for i, cand in enumerate(c.items(trial, "candidates", "trial.candidates")):
        where = f"trial.candidates[{i}]"
        if not isinstance(cand, dict):
            raise c.fail(where, "an object", cand)
        c.text(cand, "name", f"{where}.name", null=False, empty=False)
        names.add(cand["name"])
        c.number(cand.get("lr_scale"), f"{where}.lr_scale")
        for j, rung in enumerate(c.items(cand, "rungs", f"{where}.rungs")):
            if not isinstance(rung, dict):
                raise c.fail(f"{where}.rungs[{j}]", "an object", rung)
            for key in ("steps", "accuracy", "loss"):
                if key != "loss" or rung.get(key) is not None:
                    c.number(rung.get(key), f"{where}.rungs[{j}].{key}")
    for key in ("winner", "runner_up", "rule"):
        if trial[key] not in names:
            raise c.fail(f"trial.{key}", "the name of one of trial.candidates", trial[key])
    for key in ("margin_over_runner_up", "margin_over_rule"):
        m = trial.get(key)
        if m is not None:
            if not isinstance(m, dict):
                raise c.fail(f"trial.{key}", "an object or null", m)
            for part in ("difference", "low", "high"):
                c.number(m.get(part), f"trial.{key}.{part}")
