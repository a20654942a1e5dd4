"""Consoles: results go to stdout, everything else (progress, warnings, notes) to stderr.

rich already honours ``NO_COLOR`` and drops colour and live displays when a stream is not a terminal;
for a pipe we also widen tables, since 80 columns would wrap a checkpoint's layer names.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

from plastic.cli import StdoutClosed

PIPE_WIDTH = 200


def _width(stream: object) -> int | None:
    if os.environ.get("COLUMNS") or getattr(stream, "isatty", lambda: False)():
        return None  # let rich ask the terminal
    return PIPE_WIDTH


class _Results(Console):
    def on_broken_pipe(self) -> None:
        """rich's own handling (quiet, stdout pointed at devnull), but not its exit 1, which a pipeline
        would read as ``--fail-on`` findings."""
        try:
            super().on_broken_pipe()
        except SystemExit:
            raise StdoutClosed from None


def out() -> Console:
    return _Results(file=sys.stdout, width=_width(sys.stdout), highlight=False, soft_wrap=False)


def err() -> Console:
    return Console(file=sys.stderr, width=_width(sys.stderr), highlight=False, stderr=True)


@contextmanager
def byte_progress(description: str) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr when it is a terminal; ``None`` (no callback) otherwise."""
    console = err()
    if not console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@contextmanager
def image_progress() -> Iterator[Callable[[str, int, int], None] | None]:
    """Per-phase image counters on stderr when it is a terminal."""
    console = err()
    if not console.is_terminal:
        yield None
        return
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[unit]}"),
        console=console,
        transient=True,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                unit = "steps" if phase == "trial" else "images"  # the trial counts optimizer steps
                tasks[phase] = bar.add_task(phase, total=total, unit=unit)
            bar.update(tasks[phase], completed=done, total=total)

        yield update
