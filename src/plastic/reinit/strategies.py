"""The built-in re-initialization strategies: *selections* (which tensors, units or weights change).

Each is one function registered with :func:`~plastic.reinit.registry.register_strategy`; it returns a
:class:`~plastic.reinit.registry.Plan` of ``Change`` entries, and :mod:`plastic.pipelines.reinit`
supplies the new values and writes the file (``--value resample|mean``, or ``shrink-perturb``'s mix).
Adding a strategy is one function here (or in a plug-in). The registry's names are re-exported here,
where callers have always found them.
"""

from __future__ import annotations

import torch

from plastic.errors import UsageError
from plastic.model.init_values import tensor_generator
from plastic.model.structure import Structure
from plastic.reinit.options import Fill, Kind, Need, Options, Unit, Utility
from plastic.reinit.registry import (
    OPTION_FLAGS,
    Change,
    Context,
    Plan,
    Strategy,
    StrategyInfo,
    get_strategy,
    list_strategies,
    register_strategy,
)

__all__ = [  # the registry's names and Options, where callers have always imported them from
    "OPTION_FLAGS", "Change", "Context", "Options", "Plan", "Strategy", "StrategyInfo", "get_strategy",
    "list_strategies", "register_strategy",
]  # fmt: skip


# --- shared pieces ----------------------------------------------------------------------------------------


def reset_layers(ctx: Context, plan: Plan, layers: list[str]) -> None:
    """Every tensor of these modules gets the new value; the norm that follows each is reset."""
    value = ctx.options.value
    seen = {c.tensor for c in plan.changes}
    for layer in layers:
        for t in ctx.tensors_of(layer):
            if t not in seen:
                plan.changes.append(Change(t, Kind.TENSOR, Fill(value)))
                seen.add(t)
        norm = ctx.structure.norm_after.get(layer) if ctx.structure is not None else None
        if norm is not None:
            for t in ctx.tensors_of(norm):
                if t not in seen:
                    plan.changes.append(Change(t, Kind.NORM_RESET, Fill.MEAN))
                    seen.add(t)
    if ctx.structure is None and layers:
        plan.notes.append("no architecture: norms after the re-initialized layers were not located or reset")


def reset_modules(ctx: Context, plan: Plan, modules: list[str]) -> None:
    """Every tensor under these modules (parameters and buffers) gets the new value."""
    seen = {c.tensor for c in plan.changes}
    for m in modules:
        for t in ctx.tensors_of(m) or ctx.under(m):
            if t not in seen:
                plan.changes.append(Change(t, Kind.TENSOR, Fill(ctx.options.value)))
                seen.add(t)


def group_of_layers(structure: Structure, layers: list[str]) -> list[str]:
    """All modules of the timm groups that contain any of ``layers``."""
    out: list[str] = []
    for members in structure.groups.values():
        if any(la in members for la in layers):
            out += members
    return out


def weight_tensors(ctx: Context) -> list[str]:
    """Conv/linear weights (>= 2-D ``weight``), classifier excluded unless --include-head, or --layers."""
    if ctx.options.layers:
        return ctx.matching(ctx.options.layers)
    heads = set(ctx.classifier_modules())
    shapes = {t.name: t.shape for t in ctx.ckpt.tensors}
    return [
        n
        for n in ctx.names
        if n.endswith(".weight")
        and len(shapes[n]) >= 2
        and (ctx.options.include_head or n.rpartition(".")[0] not in heads)
    ]


# --- the strategies ---------------------------------------------------------------------------------------


@register_strategy(
    "topk-layers",
    "the k layers (or blocks, --unit block) with the highest saturation score",
    uses=("value", "k", "unit", "include_head"),
    needs=(Need.REPORT,),
)
def topk_layers(ctx: Context) -> Plan:
    report = ctx.need_report("topk-layers")
    plan, k = Plan(), ctx.options.k
    if ctx.options.unit == Unit.BLOCK:
        ranked = sorted((b["rank"], b["name"]) for b in report["blocks"] if b["rank"] is not None)
        positive = {b["name"] for b in report["blocks"] if (b.get("score") or 0) > 0}  # 0s have no order
        names = set([name for _, name in ranked if name in positive][:k])
        _note_ties(plan, len(names), k, len(ranked), "blocks")
        chosen = [b for b in report["blocks"] if b["name"] in names]
        chosen.sort(key=lambda b: b["rank"] or 0)
        if ctx.options.include_head:  # the classifier's group is not ranked: --include-head adds it
            chosen += [b for b in report["blocks"] if b.get("rank") is None and b["layers"]]
        structure = ctx.need_structure("topk-layers --unit block")
        modules = group_of_layers(structure, [la for b in chosen for la in b["layers"]])
        reset_modules(ctx, plan, modules)
        if chosen:
            plan.notes.append(f"blocks: {', '.join(b['name'] for b in chosen)}")
        return plan
    scored = [
        (-score, la["name"])
        for la in report["layers"]
        if (score := la.get("score")) is not None and (ctx.options.include_head or not la.get("classifier"))
    ]
    # a score of 0 says "no worse than a fresh layer": zeros carry no ranking, so none is picked by name
    top = [name for neg, name in sorted(scored) if neg < 0][:k]
    _note_ties(plan, len(top), k, len(scored), "layers")
    reset_layers(ctx, plan, top)
    if top:
        plan.notes.append(f"layers: {', '.join(top)}")
    return plan


def _note_ties(plan: Plan, picked: int, k: int, ranked: int, what: str) -> None:
    """Say when fewer than --k were picked because the rest score 0 (nothing to rank them by)."""
    if picked == 0 and ranked:
        plan.notes.append(
            f"topk-layers: every one of the {ranked} {what} scores 0 (none worse than a freshly "
            "initialised one): nothing selected, the output equals the input; fine-tune as is, or name "
            "what to re-initialize with --strategy layers"
        )
    elif picked < k and picked == ranked and ranked:
        plan.notes.append(
            f"topk-layers: --k {k} asks for more than the {ranked} {what} the report ranks: all {picked} "
            "were selected"
        )
    elif picked < k and picked < ranked:
        plan.notes.append(
            f"topk-layers: only {picked} of the {ranked} {what} score above 0, so {picked} (not --k {k}) "
            "were selected: the rest tie at 0 and have no order"
        )


@register_strategy(
    "auto",
    "follow diagnose's recommendation: its top segment (from-block), its layers, or nothing",
    needs=(Need.REPORT,),
)
def auto(ctx: Context) -> Plan:
    """What ``diagnose`` recommended (from the report, else recomputed from its scores and stages)."""
    from plastic.decide.recommend import recommend, recommendation_dict

    report = ctx.need_report("auto")
    rec = report.get("recommendation")
    if not isinstance(rec, dict) or not isinstance(rec.get("layers"), list):  # an older report
        rec = recommendation_dict(recommend(report["layers"], report.get("stages") or []))
    plan = Plan()  # one short note of what auto did: diagnose already printed the recommendation's why
    if rec.get("action") != "reinit" or not rec["layers"]:
        plan.notes.append("auto: the report recommends to fine-tune as is; nothing re-initialized")
        return plan  # nothing to do: reinit writes the checkpoint unchanged and says so
    start = (rec.get("options") or {}).get("from_block")
    if rec.get("strategy") == "from-block" and isinstance(start, str):
        reset_modules(ctx, plan, _from_block_modules(ctx, start))
        plan.notes.append(f"auto: from block {start} up, as the report recommends")
        plan.options["from_block"] = start
        return plan
    reset_layers(ctx, plan, [str(x) for x in rec["layers"]])
    plan.notes.append(f"auto: layers {', '.join(rec['layers'])}, as the report recommends")
    plan.options["layers"] = [str(x) for x in rec["layers"]]  # what auto chose, not --k's default
    return plan


@register_strategy("layers", "tensors whose names match --layers GLOB (repeatable)", uses=("value", "layers"))
def layers_by_glob(ctx: Context) -> Plan:
    if not ctx.options.layers:
        raise UsageError("--strategy layers needs at least one --layers GLOB, e.g. --layers 'stages.3.*'")
    plan = Plan()
    matched = ctx.matching(ctx.options.layers)
    if not matched:
        raise UsageError(f"--layers {ctx.options.layers} match no tensor")
    for n in matched:
        plan.changes.append(Change(n, Kind.TENSOR, Fill(ctx.options.value)))
    if ctx.structure is not None:  # a fully re-initialized conv/linear also resets the norm after it
        whole = [la for la in ctx.structure.layers if f"{la}.weight" in matched]
        reset_layers(ctx, plan, whole)
    return plan


@register_strategy("head", "the classifier (the model family's own head)")
def head(ctx: Context) -> Plan:
    modules = ctx.classifier_modules()
    if not modules and ctx.structure is not None:  # the architecture is known and has no head
        groups = [block_start(members) for _, members in sorted(ctx.structure.groups.items())]
        blocks = [g for g in groups if g.rpartition(".")[2].isdigit()] or groups  # the trunk's, numbered
        top = f"; to re-initialize its top block, --strategy from-block --from {blocks[-1]}" if blocks else ""
        model = ctx.structure.model
        name = type(model).__name__ if model is not None else "this model"
        raise UsageError(
            f"{name} has no classifier (a backbone or vision encoder without "
            "a head): there is nothing for --strategy head to re-initialize; the head your fine-tuning adds "
            f"is new already{top}"
        )
    if not modules:
        raise UsageError(
            "cannot tell which tensors are the classifier: pass --arch (or use --strategy layers)"
            + ctx.why_unknown()
        )
    plan = Plan()
    reset_modules(ctx, plan, modules)
    return plan


@register_strategy(
    "from-block",
    "every layer from block --from NAME up, head included (the model's stage order)",
    uses=("value", "from_block"),
)
def from_block(ctx: Context) -> Plan:
    start = ctx.options.from_block
    if not start:
        raise UsageError(
            "--strategy from-block needs --from BLOCK, e.g. --from stages.2 (or layer3, blocks.9)"
        )
    plan = Plan()
    reset_modules(ctx, plan, _from_block_modules(ctx, start))
    return plan


def _from_block_modules(ctx: Context, start: str) -> list[str]:
    """Every module of timm's groups from the one holding ``start`` up (the head group included).

    ``start`` is a module as diagnose names it (the model's names) or as the file names it: a
    transformers file keeps ``vit.encoder.layer.3`` where the model says ``vit.layers.3``, and inspect,
    --layers and the file itself show the former.
    """
    structure = ctx.need_structure("from-block")
    groups = sorted(structure.groups.items())

    def holds(members: list[str], module: str) -> bool:
        return any(m == module or m.startswith(module + ".") or module.startswith(m + ".") for m in members)

    gid = next(
        (g for g, members in groups if any(m == start or m.startswith(start + ".") for m in members)), None
    )
    if gid is None:  # the file's name for it: the model's names of the tensors stored under it
        named = [t.name.rpartition(".")[0] for t in ctx.ckpt.tensors if t.key.startswith(start + ".")]
        named += [t.name.rpartition(".")[0] for t in ctx.ckpt.tensors if t.name.startswith(start + ".")]
        gid = min((g for g, members in groups for m in named if holds(members, m)), default=None)
    if gid is None:
        starts = [block_start(members) for _, members in groups]
        shown = starts if len(starts) <= 8 else [*starts[:4], "...", *starts[-3:]]
        raise UsageError(
            f"--from {start!r} names no module of the architecture's blocks; its {len(starts)} blocks start "
            f"at {', '.join(shown)} (diagnose's stages and blocks tables, and its --json, list them)",
            choices=starts,
        )
    return [m for g, members in structure.groups.items() if g >= gid for m in members]


def block_start(members: list[str]) -> str:
    """The shortest name that selects a group: the common module path of its members."""
    from plastic.model.build import common_components

    return ".".join(common_components(members)) or members[0]


@register_strategy(
    "dormant-units",
    "ReDo: tau-dormant units re-initialized, their outgoing weights zeroed",
    uses=("value", "include_head"),
    needs=(Need.REPORT, Need.LOADED),  # completeness is checked on the real weights
)
def dormant_units(ctx: Context) -> Plan:
    report = ctx.need_report("dormant-units")
    structure = ctx.need_structure("dormant-units")
    plan = Plan()
    for la in report["layers"]:
        units = la.get("dormant_units") or []
        if not units or (la.get("classifier") and not ctx.options.include_head):
            continue
        name = la["name"]
        if name not in structure.layers:
            plan.skipped.append((name, "not a layer of this architecture"))
            continue
        if not structure.complete(name, units):
            why = (
                "no conv/linear reads its units directly"
                if not structure.consumers.get(name)
                else ("its output also reaches the model by another path (residual add, channel-mixing norm)")
            )
            plan.skipped.append((f"{name} ({len(units)} units)", why))
            continue
        idx = torch.tensor(units, dtype=torch.long)
        for t in ctx.tensors_of(name):
            leaf = t.rpartition(".")[2]
            value = Fill.ZERO if leaf == "bias" else Fill(ctx.options.value)
            plan.changes.append(Change(t, Kind.UNITS, value, index=idx, dim=0))
        norm = structure.norm_after.get(name)
        if norm is not None:
            for t in ctx.tensors_of(norm):
                if t.rpartition(".")[2] != "num_batches_tracked":
                    plan.changes.append(Change(t, Kind.UNITS, Fill.MEAN, index=idx, dim=0))
        for consumer in structure.consumers[name]:
            plan.changes.append(Change(f"{consumer}.weight", Kind.ZERO_OUTGOING, Fill.ZERO, index=idx, dim=1))
    return plan


@register_strategy(
    "weights",
    "per tensor, the --fraction of weights with the lowest --utility",
    uses=("value", "fraction", "utility", "include_head", "layers"),
    needs=(Need.GRADIENTS,),
)
def weights(ctx: Context) -> Plan:
    opts = ctx.options
    if not 0.0 < opts.fraction <= 1.0:
        raise UsageError("--fraction must be in (0, 1]")
    plan = Plan()
    grads = ctx.gradients() if opts.utility == Utility.GRADIENT and ctx.gradients is not None else None
    if opts.utility == Utility.GRADIENT and grads is None:
        raise UsageError(
            "--utility gradient needs --data DIR (or a diagnose report naming its calibration folder)"
        )
    for name in weight_tensors(ctx):
        dtype = ctx.ckpt.by_name[name].dtype
        if dtype.startswith("complex") or dtype == "bool":  # refused before a utility is even computed
            raise UsageError(f"{name} is {dtype}: plastic has no initial value for it; exclude it (--layers)")
        w = ctx.ckpt.tensor(name).detach().float()
        if opts.utility == Utility.MAGNITUDE:
            utility = w.abs()
        elif opts.utility == Utility.GRADIENT:
            assert grads is not None
            g = grads.get(name)
            if g is None:
                plan.skipped.append((name, "no gradient reached it"))
                continue
            utility = (w * g.float()).abs()
        elif opts.utility == Utility.RANDOM:
            utility = torch.rand(w.shape, generator=tensor_generator(opts.seed, f"utility:{name}"))
        else:
            raise UsageError(f"--utility must be magnitude, gradient or random, not {str(opts.utility)!r}")
        n = w.numel()
        k = round(opts.fraction * n)
        if k == 0:
            continue
        order = torch.sort(utility.reshape(-1), stable=True).indices[
            :k
        ]  # lowest utility first; ties by position
        mask = torch.zeros(n, dtype=torch.bool)
        mask[order] = True
        plan.changes.append(Change(name, Kind.WEIGHTS, Fill(opts.value), mask=mask.view(w.shape)))
    return plan


@register_strategy(
    "shrink-perturb",
    "every parameter: shrink * theta + perturb * theta_init",
    values=(),
    uses=("shrink", "perturb", "layers"),
)
def shrink_perturb(ctx: Context) -> Plan:
    plan = Plan()
    infos = {t.name: t for t in ctx.ckpt.tensors}
    patterns = ctx.options.layers
    selected = set(ctx.matching(patterns))
    for name, info in infos.items():
        if not info.is_parameter:
            continue  # running statistics and integer buffers are not shrunk
        if patterns and name not in selected:
            continue
        plan.changes.append(Change(name, Kind.SHRINK_PERTURB, Fill.SHRINK_PERTURB))
    return plan
