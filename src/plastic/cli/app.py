"""The ``plastic`` command. Each command parses options, calls one library function and renders it.

Imports of the library (and so of torch and timm) happen inside the commands, so that ``--help`` and
header-only ``inspect`` of a safetensors file stay fast.
"""

from __future__ import annotations

import os
import sys
import traceback
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from plastic import __version__
from plastic.errors import PlasticError

app = typer.Typer(
    name="plastic",
    help="Find where a pretrained image model has lost plasticity and re-initialize exactly that.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"plastic {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Find where a pretrained image model has lost plasticity and re-initialize exactly that."""


def _resolve_format(fmt: OutputFormat, as_json: bool) -> OutputFormat:
    return OutputFormat.json if as_json else fmt


CkptArg = Annotated[
    Path,
    typer.Argument(
        help="Checkpoint: .safetensors, *.safetensors.index.json (or its folder), "
        ".pt/.pth/.pth.tar/.bin/.ckpt.",
        show_default=False,
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option("--key", help="Entry of a training checkpoint to read (state_dict, model_ema, ...)."),
]
ArchOpt = Annotated[str | None, typer.Option("--arch", help="timm architecture name (overrides the file's).")]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format on stdout.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Shortcut for --format json.")]


@app.command()
def inspect(
    checkpoint: CkptArg,
    key: KeyOpt = None,
    arch: ArchOpt = None,
    stats: Annotated[
        bool, typer.Option("--stats/--no-stats", help="Compute data-free weight statistics (reads all data).")
    ] = True,
    layer_filter: Annotated[
        str | None, typer.Option("--filter", help="Only layers whose name (or a tensor's) matches this glob.")
    ] = None,
    skip: Annotated[
        list[str] | None,
        typer.Option("--skip", help="A metric not to compute (repeatable), e.g. weight_stable_rank."),
    ] = None,
    fmt: FormatOpt = OutputFormat.table,
    as_json: JsonOpt = False,
) -> None:
    """Show the tensors, layers, dtypes, parameter counts and weight statistics of a checkpoint."""
    from plastic.cli import console, render
    from plastic.inspection import inspect_checkpoint
    from plastic.reports import inspect_dict

    with console.byte_progress("reading tensors") as progress:
        report = inspect_checkpoint(
            checkpoint,
            key=key,
            arch=arch,
            stats=stats,
            layer_filter=layer_filter,
            skip=skip or (),
            progress=progress,
        )
    doc = inspect_dict(report)
    fmt = _resolve_format(fmt, as_json)
    if fmt is OutputFormat.json:
        sys.stdout.write(render.dump_json(doc) + "\n")
    elif fmt is OutputFormat.markdown:
        sys.stdout.write(render.inspect_markdown(doc))
    else:
        render.inspect_table(console.out(), doc)


def _fail(message: str) -> None:
    if os.environ.get("PLASTIC_DEBUG") == "1":
        traceback.print_exc(file=sys.stderr)
    sys.stderr.write(f"Error: {message}\n")
    sys.stderr.flush()


def main() -> None:
    """Entry point: every PlasticError becomes one ``Error:`` line and exit 2.

    ``PLASTIC_DEBUG=1`` prints the traceback as well.
    """
    try:
        app(prog_name="plastic")
    except PlasticError as e:
        _fail(str(e))
        sys.exit(2)
    except OSError as e:  # unreadable file, permission denied, disk full: input/output problems
        _fail(f"{e.strerror or e.__class__.__name__}: {e.filename or ''}".rstrip(": "))
        sys.exit(2)
    except KeyboardInterrupt:
        sys.stderr.write("Interrupted.\n")
        sys.exit(130)
    except Exception as e:  # a bug: still one line, but say so
        _fail(f"internal error ({e.__class__.__name__}: {e}); rerun with PLASTIC_DEBUG=1 and report it")
        sys.exit(2)
