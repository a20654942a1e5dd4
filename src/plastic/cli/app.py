"""The ``plastic`` command. Each command parses options, calls one library function and renders it.

Imports of the library (and so of torch and timm) happen inside the commands, so that ``--help`` and
header-only ``inspect`` of a safetensors file stay fast.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from plastic import __version__
from plastic.cli import parse
from plastic.measure.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MAX_IMAGES, DEFAULT_TAU, DiagnoseOptions
from plastic.reinit.options import Options, Unit, Utility, Value

DEFAULT_OPTIONS = Options()

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
    html = "html"  # diagnose only: one self-contained page


class ResultFormat(str, Enum):
    """inspect's and reinit's formats: what their --help offers is what they accept (no html)."""

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


def _resolve_format(fmt: OutputFormat | ResultFormat, as_json: bool) -> OutputFormat:
    return OutputFormat.json if as_json else OutputFormat(fmt.value)


def _emit(
    doc: Mapping[str, Any],
    fmt: OutputFormat,
    markdown: Callable[[Any], str],
    table: Callable[[Any, Any], None],
    html: Callable[[Any], str] | None = None,
) -> None:
    """The one place results reach stdout: a JSON document, markdown, HTML, or a rich table."""
    from plastic.cli import console, render

    if fmt is OutputFormat.json:
        sys.stdout.write(render.dump_json(doc) + "\n")
        return
    shown = render.for_people(doc)  # names and paths with control and bidi characters escaped
    if fmt is OutputFormat.markdown:
        sys.stdout.write(markdown(shown))
    elif fmt is OutputFormat.html and html is not None:
        sys.stdout.write(html(shown))
    else:
        table(console.out(), shown)


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
ArchOpt = Annotated[
    str | None,
    typer.Option("--arch", help="timm name, torchvision:NAME or transformers:CLASS (overrides the file's)."),
]
InChansOpt = Annotated[
    int | None,
    typer.Option("--in-chans", help="Input channels (1: grayscale); default: config.json, else the stem's."),
]
FormatOpt = Annotated[OutputFormat, typer.Option("--format", "-f", help="Output format on stdout.")]
ResultFormatOpt = Annotated[ResultFormat, typer.Option("--format", "-f", help="Output format on stdout.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Shortcut for --format json.")]
WideOpt = Annotated[bool, typer.Option("--wide", help="Table: every column, whatever the terminal's width.")]


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
    stable_rank: Annotated[
        bool,
        typer.Option("--stable-rank", help="Also compute weight_stable_rank (~6x the other metrics' cost)."),
    ] = False,
    fmt: ResultFormatOpt = ResultFormat.table,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Show the tensors, layers, dtypes, parameter counts and weight statistics of a checkpoint."""
    from plastic.cli import console, render
    from plastic.pipelines.inspect import inspect_checkpoint

    with console.byte_progress("reading tensors") as progress:
        report = inspect_checkpoint(
            checkpoint,
            key=key,
            arch=arch,
            stats=stats,
            layer_filter=layer_filter,
            skip=skip or (),
            progress=progress,
            stable_rank=stable_rank,
        )
    doc = report.to_dict()
    _emit(
        doc,
        _resolve_format(fmt, as_json),
        lambda d: render.inspect_markdown(d),
        lambda c, d: render.inspect_table(c, d, wide),
    )


@app.command()
def strategies() -> None:
    """List the re-initialization strategies, one line each."""
    import plastic.reinit.strategies as registry

    for info in registry.list_strategies():
        sys.stdout.write(f"{info.name:15s} {info.help}\n")


@app.command()
def reinit(
    checkpoint: Annotated[
        Path | None,
        typer.Argument(
            help="Checkpoint to re-initialize; omit to take it from the diagnose report.", show_default=False
        ),
    ] = None,
    strategy: Annotated[
        str, typer.Option("--strategy", "-s", help="See `plastic strategies`.")
    ] = "topk-layers",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output .safetensors or .pt file.")
    ] = None,
    report: Annotated[
        Path | None, typer.Option("--report", help="A `diagnose --json` report file (- for stdin).")
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option("--data", "-d", help="Calibration folder: run the diagnosis here when needed."),
    ] = None,
    key: KeyOpt = None,
    arch: ArchOpt = None,
    in_chans: InChansOpt = None,
    value: Annotated[
        Value, typer.Option("--value", help="New value: the architecture's init, or its mean.")
    ] = DEFAULT_OPTIONS.value,
    k: Annotated[
        int, typer.Option("--k", help="topk-layers: how many layers or blocks.")
    ] = DEFAULT_OPTIONS.k,
    unit: Annotated[
        Unit, typer.Option("--unit", help="topk-layers: rank single layers or timm blocks.")
    ] = DEFAULT_OPTIONS.unit,
    layers: Annotated[
        list[str] | None,
        typer.Option(
            "--layers", help="Glob over tensor names (repeatable): layers, weights, shrink-perturb."
        ),
    ] = None,
    from_block: Annotated[
        str | None, typer.Option("--from", help="from-block: first block, e.g. stages.2.")
    ] = None,
    fraction: Annotated[
        float, typer.Option("--fraction", help="weights: fraction of each tensor.")
    ] = DEFAULT_OPTIONS.fraction,
    utility: Annotated[
        Utility, typer.Option("--utility", help="weights: which weights count as least useful.")
    ] = DEFAULT_OPTIONS.utility,
    shrink: Annotated[
        float, typer.Option("--shrink", help="shrink-perturb: lambda.")
    ] = DEFAULT_OPTIONS.shrink,
    perturb: Annotated[
        float, typer.Option("--perturb", help="shrink-perturb: sigma.")
    ] = DEFAULT_OPTIONS.perturb,
    include_head: Annotated[
        bool, typer.Option("--include-head", help="Let the classifier be selected too.")
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the new values.")] = DEFAULT_OPTIONS.seed,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would change; write nothing.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite an existing output (or the input).")
    ] = False,
    keep_extra: Annotated[
        bool, typer.Option("--keep-extra", help="PyTorch containers: keep optimizer state and other entries.")
    ] = False,
    device: Annotated[
        str, typer.Option("--device", help="For a diagnosis run here: auto, cuda or cpu.")
    ] = "auto",
    max_images: Annotated[
        int, typer.Option("--max-images", help="For a diagnosis run here.")
    ] = DEFAULT_MAX_IMAGES,
    workers: Annotated[
        int, typer.Option("--workers", "-j", help="For a diagnosis or gradient probe run here: decoders.")
    ] = 0,
    tau: Annotated[
        float, typer.Option("--tau", help="For a diagnosis run here: dormant threshold.")
    ] = DEFAULT_TAU,
    fmt: ResultFormatOpt = ResultFormat.table,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Write a new checkpoint with the strategy's layers, units or weights re-initialized."""
    from plastic.cli import console, render

    options = Options(
        value=value, k=k, unit=unit, layers=layers or [], from_block=from_block,
        fraction=fraction, utility=utility, shrink=shrink, perturb=perturb,
        include_head=include_head, seed=seed,
    )  # fmt: skip
    wants = False
    if checkpoint is not None and report is None and data is None and parse.stdin_is_piped():
        from plastic.reinit.options import Need
        from plastic.reinit.strategies import get_strategy

        wants = get_strategy(strategy).wants(Need.REPORT, options)  # `diagnose m --json | reinit m -s auto`
    doc_in = parse.read_report(report, checkpoint, wants, data)  # a bad report fails before the model
    from plastic.pipelines.reinit import reinit as run_reinit

    with console.image_progress() as progress:  # a diagnosis or gradient pass run here shows its images
        result = run_reinit(
            checkpoint, strategy=strategy, output=output, options=options, report=doc_in, data=data,
            key=key, arch=arch, force=force, dry_run=dry_run, keep_extra=keep_extra,
            diagnose_options=DiagnoseOptions(device=device, max_images=max_images, tau=tau, workers=workers),
            inputs=[report] if report is not None and str(report) != "-" else [], in_chans=in_chans,
            progress=progress,
        )  # fmt: skip
    doc = result.to_dict()
    err = console.err()
    for note in result.notes:
        err.print(f"note: {printable(note)}", markup=False, soft_wrap=True)  # never hard-wrapped
    for what, why in result.skipped:
        err.print(printable(f"skipped {what}: {why}"), markup=False, soft_wrap=True)
    _emit(
        doc,
        _resolve_format(fmt, as_json),
        lambda d: render.reinit_markdown(d),
        lambda c, d: render.reinit_table(c, d, wide),
    )


@app.command()
def diagnose(
    checkpoint: CkptArg,
    data: Annotated[
        Path,
        typer.Option("--data", "-d", help="Folder of calibration images (class subfolders give labels)."),
    ],
    key: KeyOpt = None,
    arch: ArchOpt = None,
    in_chans: InChansOpt = None,
    device: Annotated[
        str, typer.Option("--device", help="auto (CUDA when available), cuda or cpu.")
    ] = "auto",
    amp: Annotated[bool, typer.Option("--amp", help="bf16 autocast on CUDA.")] = False,
    reference: Annotated[
        bool,
        typer.Option(
            "--reference/--no-reference",
            help="Measure the architecture freshly initialised (seeded) in the same pass and score each "
            "layer by its excess over that fresh layer, beyond the layer's own spread over three fresh "
            "draws on 16 images (the default); --no-reference: absolute scores, one model pass instead "
            "of two.",
        ),
    ] = True,
    reference_images: Annotated[
        int | None,
        typer.Option(
            "--reference-images",
            help="Measure the fresh reference on this many of the images (seeded, spread over the "
            "classes; default: all): most of its cost saved.",
        ),
    ] = None,
    cache: Annotated[
        bool,
        typer.Option(
            "--cache/--no-cache",
            help="Reuse the fresh reference's metrics from an earlier run on the same architecture, images "
            "and settings ($PLASTIC_CACHE_DIR, else ~/.cache/plastic); --no-cache neither reads nor writes.",
        ),
    ] = True,
    max_images: Annotated[
        int, typer.Option("--max-images", help="Use at most this many images.")
    ] = DEFAULT_MAX_IMAGES,
    batch_size: Annotated[
        int, typer.Option("--batch-size", "-b", help="Images per forward pass.")
    ] = DEFAULT_BATCH_SIZE,
    workers: Annotated[int, typer.Option("--workers", "-j", help="DataLoader worker processes.")] = 0,
    tau: Annotated[
        float, typer.Option("--tau", help="Dormant threshold of the ReDo unit score.")
    ] = DEFAULT_TAU,
    seed: Annotated[
        int, typer.Option("--seed", help="Seed for sampling, random labels and the probe head.")
    ] = 0,
    input_size: Annotated[
        str | None, typer.Option("--input-size", help="Override the input size: S, H,W or C,H,W.")
    ] = None,
    mean: Annotated[
        str | None, typer.Option("--mean", help="Override normalisation mean, e.g. 0.5,0.5,0.5.")
    ] = None,
    std: Annotated[str | None, typer.Option("--std", help="Override normalisation std.")] = None,
    trial: Annotated[
        bool,
        typer.Option(
            "--trial",
            help="After the statistics, race the candidate starts (fine-tune, the rule's pick, the top "
            "stage, one stage deeper) at 1x and 3x the rate in short fine-tuning runs on the labelled "
            "images, and follow the winner when it is clearly better (docs/commands.md: The trial).",
        ),
    ] = False,
    trial_data: Annotated[
        Path | None,
        typer.Option(
            "--trial-data", help="Labelled images (class subfolders) for the trial; implies --trial."
        ),
    ] = None,
    trial_budget: Annotated[
        int | None,
        typer.Option(
            "--trial-budget",
            help="Optimizer steps per candidate (default: 4 passes over its images, 40-400).",
        ),
    ] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Show every layer, not only the top ones.")] = False,
    fail_on: Annotated[
        list[str] | None,
        typer.Option("--fail-on", help="Exit 1 when a layer meets METRIC>VALUE (or >=, <, <=); repeatable."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Also write the JSON report to this .json file.")
    ] = None,
    plot: Annotated[
        Path | None,
        typer.Option("--plot", help="Also draw the scores in model order to this .png, .svg or .pdf file."),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Name every skipped image.")] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="With --json: no summary and recommendation on stderr.")
    ] = False,
    fmt: FormatOpt = OutputFormat.table,
    as_json: JsonOpt = False,
    wide: WideOpt = False,
) -> None:
    """Run calibration images through the model and report per-layer loss-of-plasticity statistics."""
    from plastic.cli import console, render
    from plastic.files.checkpoint import checkpoint_files

    conditions = parse.conditions(fail_on or [])
    sizes = parse.input_size(input_size)
    means, stds = (
        parse.channels(parse.floats(mean, "--mean"), "--mean"),
        parse.channels(parse.floats(std, "--std"), "--std"),
    )
    images = [*parse.image_files(data), *(parse.image_files(trial_data) if trial_data is not None else [])]
    parse.check_outputs(out, plot, [*checkpoint_files(checkpoint), *images])
    from plastic.pipelines.diagnose import diagnose as run_diagnose

    with console.image_progress() as progress:
        report = run_diagnose(
            checkpoint, data, key=key, arch=arch, device=device, amp=amp, max_images=max_images,
            batch_size=batch_size, workers=workers, tau=tau, seed=seed, input_size=sizes, mean=means,
            std=stds, progress=progress, in_chans=in_chans, reference=reference, trial=trial,
            trial_data=trial_data, trial_budget=trial_budget, reference_images=reference_images, cache=cache,
        )  # fmt: skip
    doc = report.to_dict()
    doc["findings"] = parse.findings(doc, conditions)  # the why of exit 1, in every format (with --fail-on)
    err = console.err()
    for note in report.notes:
        err.print(f"note: {printable(note)}", markup=False, soft_wrap=True)  # never hard-wrapped
    if report.calibration.skipped:
        err.print(
            f"note: skipped {len(report.calibration.skipped)} unreadable image(s)",
            markup=False,
            soft_wrap=True,
        )
        if verbose:
            for path, why in report.calibration.skipped:
                err.print(printable(f"  skipped {path}: {why}"), markup=False, soft_wrap=True)
    if out is not None:
        from plastic.files.atomic import write_text

        inputs = [*report.checkpoint.input_files, *images]
        parse.check_report_target(out, inputs)
        write_text(out, render.dump_json(doc) + "\n")
    if plot is not None:
        from plastic.cli.plot import plot_bytes
        from plastic.files.atomic import atomic_writer

        with atomic_writer(plot) as f:
            f.write(plot_bytes(doc, plot.suffix.lower().lstrip(".")))
    chosen = _resolve_format(fmt, as_json)
    _emit(
        doc,
        chosen,
        lambda d: render.diagnose_markdown(d, show_all),
        lambda c, d: render.diagnose_table(c, d, show_all, wide),
        lambda d: render.diagnose_html(d, show_all, parse.plot_svg(d)),
    )
    if chosen is OutputFormat.json and not quiet:  # the answer stays visible when stdout goes to a pipe
        for line in render.diagnose_brief(doc, err.width):
            err.print(printable(line), markup=False, soft_wrap=True)  # wrapped where it may be, not commands
    parse.gate(doc, conditions)


def printable(text: str) -> str:
    """Control and bidi characters (from file names, say) escaped: a message cannot drive the terminal."""
    from plastic.cli.render import printable as escape

    return escape(text)
