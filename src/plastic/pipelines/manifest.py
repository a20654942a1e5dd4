"""What a re-initialization did, as the ``reinit --json`` manifest and the output's ``plastic.*``
metadata: which tensors changed and how much of each, the options that applied, where the new values
came from; and the checks the file and the live path both run before a plan is made (the report and
the names belong to this model)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from plastic import __version__
from plastic.documents.schema import SCHEMA_VERSION, ChangedDoc, DiagnoseDoc, ReinitDoc
from plastic.errors import ArchitectureError, UsageError
from plastic.files.checkpoint import Checkpoint
from plastic.model.backends import ArchSpec
from plastic.model.init_values import InitSource
from plastic.reinit.options import Kind, Options
from plastic.reinit.strategies import Change, Plan, get_strategy
from plastic.reinit.values import needs_init


@dataclass
class ReinitResult:
    """What ``reinit_checkpoint`` and ``reinit_model`` return; ``to_dict()`` is ``reinit --json``.
    ``changed`` holds one ``{"tensor", "kind", "fraction"}`` entry per changed tensor, in file order."""

    input: Path
    output: Path | None
    strategy: str
    options: dict[str, Any]
    seed: int
    init_source: str
    changed: list[ChangedDoc]
    unchanged_tensors: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)
    dry_run: bool = False

    def to_dict(self) -> ReinitDoc:
        """The ``plastic reinit --json`` manifest."""
        return {
            "schema_version": SCHEMA_VERSION,
            "command": "reinit",
            "input": str(self.input),
            "output": str(self.output) if self.output is not None and not self.dry_run else None,
            "dry_run": self.dry_run,
            "strategy": self.strategy,
            "options": self.options,
            "seed": self.seed,
            "init_source": self.init_source,
            "changed": self.changed,
            "unchanged_tensors": self.unchanged_tensors,
            "skipped": [{"what": w, "why": y} for w, y in self.skipped],
            "notes": self.notes,
            "metadata": self.metadata,
        }


def _touched(c: Change, shape: tuple[int, ...]) -> torch.Tensor:
    if c.kind in (Kind.UNITS, Kind.ZERO_OUTGOING):
        assert c.index is not None
        m = torch.zeros(shape, dtype=torch.bool)
        m.index_fill_(c.dim, c.index, True)
        return m
    if c.kind == Kind.WEIGHTS:
        assert c.mask is not None
        return c.mask
    return torch.ones(shape, dtype=torch.bool)


def manifest(
    ckpt: Checkpoint, plan: Plan, source: InitSource, options: Options, strategy: str,
    out: Path | None, notes: list[str], dry_run: bool,
) -> ReinitResult:  # fmt: skip
    """What the plan changes, how and with which options: the manifest ``--json`` prints and the
    output's ``plastic.*`` metadata record."""
    infos = {t.name: t for t in ckpt.tensors}
    by_tensor: dict[str, list[Change]] = {}
    for c in plan.changes:
        by_tensor.setdefault(c.tensor, []).append(c)
    changed: list[ChangedDoc] = []
    for name in [t.name for t in ckpt.tensors if t.name in by_tensor]:
        changes, info = by_tensor[name], infos[name]
        mask = torch.zeros(info.shape, dtype=torch.bool)
        for c in changes:
            mask |= _touched(c, info.shape)
        kinds = sorted({c.kind for c in changes})
        frac = float(mask.float().mean()) if mask.numel() else 0.0
        changed.append({"tensor": info.key, "kind": "+".join(kinds), "fraction": frac})
    uses = get_strategy(strategy).uses
    opts = {k: v for k, v in asdict(options).items() if k in uses}  # only what this strategy reads
    opts.update(plan.options)
    return ReinitResult(
        input=ckpt.path,
        output=out,
        strategy=strategy,
        options=opts,
        seed=options.seed,
        init_source=(
            source.description
            if needs_init(plan)
            else "none needed (mean values only)"
            if plan.changes
            else "none (nothing changed)"
        ),
        changed=changed,
        unchanged_tensors=len(ckpt.tensors) - len(changed),
        skipped=plan.skipped,
        notes=notes + plan.notes,
        dry_run=dry_run,
    )


SOURCE_SHA256 = "plastic.source_sha256"


def metadata(ckpt: Checkpoint, result: ReinitResult, options: Options) -> dict[str, str]:
    """The input's metadata plus ``plastic.*`` keys but the source's SHA-256 (the writer adds it); all
    strings, lists JSON-encoded."""
    meta = dict(ckpt.metadata)
    meta.update(
        {
            "plastic.version": __version__,
            "plastic.strategy": result.strategy,
            "plastic.options": json.dumps(result.options, sort_keys=True),
            "plastic.seed": str(options.seed),
            "plastic.init_source": result.init_source,
            "plastic.source_file": ckpt.path.name,
            "plastic.changed": json.dumps([c["tensor"] for c in result.changed]),
        }
    )
    return meta


def check_names(model: torch.nn.Module, ckpt: Checkpoint, spec: ArchSpec) -> None:
    from plastic.model.build import compare_names, mismatch_message

    missing, unexpected, shaped = compare_names(model, ckpt)
    if missing or unexpected or shaped:
        raise ArchitectureError(
            mismatch_message(spec.label, missing, unexpected, shaped)
            + f"; reinit writes tensors under their own names, so they must follow {spec.family}'s naming"
        )


def check_report_layers(report: DiagnoseDoc, ckpt: Checkpoint) -> None:
    """Every layer the report names must be a module of this checkpoint (or live model)."""
    modules = {t.name.rpartition(".")[0] for t in ckpt.tensors}
    foreign = [la["name"] for la in report.get("layers", []) if la["name"] not in modules]
    if foreign:
        raise UsageError(
            f"the report's layers are not in {ckpt.path} (e.g. {foreign[0]}): "
            "was it made for another checkpoint?"
        )
