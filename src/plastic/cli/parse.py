"""What the user typed, parsed and checked for the commands in :mod:`plastic.cli.app`: number lists,
input sizes, --fail-on conditions and their findings, report and output paths."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from plastic.documents.schema import DiagnoseDoc


def read_report(
    report: Path | None, checkpoint: Path | None, wants_report: bool = False, data: Path | None = None
) -> DiagnoseDoc | None:
    """The diagnose document: --report FILE (or -), else stdin when it is a pipe or a file.

    Without CKPT a piped stdin is the report (and names the checkpoint). With CKPT named, stdin is read
    only when the strategy needs a report (``wants_report``) and no ``--data`` runs the diagnosis here:
    ``diagnose m --json | reinit m -s auto`` then works, while a strategy that needs no report never
    waits on a stdin that a wrapper (a CI runner, ``docker -i``) holds open. reinit's identity check
    (size and SHA-256) refuses a piped report made for another file.
    """
    from plastic.documents.reports import parse_report, read_report_text
    from plastic.errors import UsageError

    if report is not None and str(report) != "-":
        try:
            with open(report, "rb") as f:
                text = read_report_text(f, f"--report {report}")
        except OSError as e:
            raise UsageError(f"--report {report}: {e.strerror}") from None
        return parse_report(text, base=report.parent, what=f"--report {report}")
    if report is not None and sys.stdin is None:
        raise UsageError("--report -: standard input is closed; pipe `plastic diagnose --json` into reinit")
    if report is not None or (checkpoint is None and stdin_is_piped()):
        return parse_report(read_report_text(sys.stdin.buffer, "stdin"), what="the report on stdin")
    if checkpoint is not None and wants_report and data is None and stdin_is_piped():
        text = read_report_text(sys.stdin.buffer, "stdin")
        if not text or text.isspace():  # piped, but nothing came: never "pipe a report" to one who did
            raise UsageError(
                "the report on stdin is empty (when a command before the pipe failed, its own error is the "
                "line above); or give --report FILE, or --data DIR to run the diagnosis now"
            )
        return parse_report(text, what="the report on stdin")
    return None


def stdin_is_piped() -> bool:
    """Is stdin something to read a report from: a pipe or a file, not a terminal, closed, or /dev/null?"""
    import os
    import stat

    if sys.stdin is None:
        return False
    try:
        if sys.stdin.isatty():
            return False
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError, AttributeError):  # no descriptor (a test's captured stream): not a pipe
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode) or stat.S_ISSOCK(mode)


def floats(text: str | None, what: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        vals = tuple(float(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise typer.BadParameter(f"{what} takes comma-separated numbers, not {text!r}") from None
    if not vals:
        raise typer.BadParameter(f"{what} is empty")
    return vals


def input_size(text: str | None) -> tuple[int, int, int] | None:
    vals = floats(text, "--input-size")
    if vals is None:
        return None
    size = [int(v) for v in vals]
    if len(size) == 1:
        size = [0, size[0], size[0]]  # channel 0: the model's own (3, or --in-chans / the stem's)
    elif len(size) == 2:
        size = [0, *size]
    if len(size) != 3 or min(size[1:]) < 1 or size[0] < 0:
        raise typer.BadParameter("--input-size takes S, H,W or C,H,W")
    return size[0], size[1], size[2]


def channels(vals: tuple[float, ...] | None, what: str) -> tuple[float, ...] | None:
    if vals is not None and len(vals) not in (1, 3):
        raise typer.BadParameter(f"{what} takes 1 or 3 values")
    return vals * 3 if vals is not None and len(vals) == 1 else vals


def plot_svg(doc: Mapping[str, Any]) -> str | None:
    """The score plot as inline SVG for --format html; None (the page says why) without matplotlib."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return None
    from plastic.cli.plot import plot_bytes

    return plot_bytes(doc, "svg").decode("utf-8")


def check_report_target(out: Path, inputs: list[Path]) -> None:
    """``diagnose --out`` writes JSON: never over an input (there is no --force), never a checkpoint name."""
    from plastic.files.atomic import check_target

    check_target(out, inputs=inputs, exist_ok=True, force_flag=None)


def check_outputs(out: Path | None, plot: Path | None, inputs: list[Path]) -> None:
    """diagnose's files: ``--out`` a ``.json`` report, ``--plot`` a picture, never the same file, never
    an input."""
    from plastic.errors import UsageError
    from plastic.files.atomic import check_distinct

    if out is not None:
        check_report_target(out, inputs)  # first: "refusing to overwrite the input" says the most
        if out.suffix.lower() != ".json":
            raise UsageError(f"--out {out}: the report is JSON; give a .json file name")
    if plot is not None:
        from plastic.cli.plot import check_plot_path

        check_plot_path(plot)
        check_report_target(plot, inputs)
    check_distinct([(flag, p) for flag, p in (("--out", out), ("--plot", plot)) if p is not None])


def image_files(data: Path) -> list[Path]:
    """The calibration images, so that --out cannot name one of them (cheap: one folder walk)."""
    from plastic.measure.calib import IMAGE_EXTENSIONS

    if not data.is_dir():
        return []
    return [p for p in data.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS]


def conditions(texts: list[str]) -> list[Any]:
    if not texts:
        return []
    from plastic.decide.gates import parse_condition
    from plastic.measure.data_metrics import DATA_METRICS

    return [parse_condition(t, [*DATA_METRICS, "score"]) for t in texts]


def findings(doc: Mapping[str, Any], conditions: list[Any]) -> list[dict[str, Any]]:
    from plastic.decide.gates import findings

    return findings(doc["layers"], conditions) if conditions else []


def gate(doc: Mapping[str, Any], conditions: list[Any]) -> None:
    """Exit 1 (after the report is out) when a layer meets a --fail-on condition; list them on stderr."""
    hits = doc.get("findings") or []
    if hits:
        sys.stdout.flush()
        for hit in hits:
            sys.stderr.write(f"fail-on {hit['rule']}: {hit['layer']} = {hit['value']:.4g}\n")
        sys.stderr.write(f"{len(hits)} finding(s) over the --fail-on threshold(s)\n")
        raise typer.Exit(1)
