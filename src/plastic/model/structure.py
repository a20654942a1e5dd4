"""What reinit needs to know about an architecture: which norm follows a layer, who reads its units,
and timm's block groups. Learned from one probe forward of the fresh model on a tiny random input.

- A norm *follows* a layer when it is the next module called and its input shares the layer output's
  storage (``bn(conv(x))``, or a permuted view as in ConvNeXt); a norm after a residual add does not.
- A layer's *consumers* are the conv/linear layers whose input shares the storage of the layer's
  activation-site output. They are *complete* when nothing else uses that output: checked by perturbing
  it with the consumers' weights zeroed and seeing the model's output not move. Only then can
  ``dormant-units`` zero outgoing weights and keep the function (ReDo).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from plastic.model.modules import find_act_sites, is_layer, layers_of, output_tensor, probe_forward, units_of

NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass
class Probed:
    norm_after: dict[str, str]  # layer -> the norm that directly normalises its output
    act_sites: dict[str, str]  # layer -> activation module measured
    consumers: dict[str, list[str]]  # layer -> conv/linear layers reading its (activated) output


@dataclass
class Structure:
    """Groups and classifier come from the module tree; the rest needs a probe forward, run on first use."""

    layers: dict[str, nn.Module]  # conv/linear layers by name
    groups: dict[int, list[str]] = field(default_factory=dict)  # timm group id -> module names
    classifier: list[str] = field(default_factory=list)  # classifier module names
    model: nn.Module | None = None
    materialise: Callable[[], nn.Module] | None = None  # a real model for the probe when ``model`` is meta
    _probed: Probed | None = None
    _probe: torch.Tensor | None = None
    _complete: dict[tuple[str, tuple[int, ...]], bool] = field(default_factory=dict)

    def _run(self) -> Probed:
        if self._probed is None:
            assert self.model is not None, "the probe model was released"
            self._probe = _probe_input(self.model)
            try:  # who feeds whom needs shapes and storages, not values: meta runs it at no cost
                self._probed = _probe(self.model, self._probe)
            except Exception:
                if self.materialise is None or not self._probe.is_meta:
                    raise
                self.model = self.materialise().eval()  # an op without a meta kernel: draw the model
                self._probe = _probe_input(self.model)
                self._probed = _probe(self.model, self._probe)
        return self._probed

    @property
    def norm_after(self) -> dict[str, str]:
        return self._run().norm_after

    @property
    def consumers(self) -> dict[str, list[str]]:
        return self._run().consumers

    def release(self) -> None:
        """Drop the model, its modules and the probe input once planning is done."""
        self.model = None
        self._probe = None
        self.layers = {}

    def complete(self, layer: str, units: list[int]) -> bool:
        """Do ``units`` of ``layer`` reach the output only through its consumers? (two forwards, cached)"""
        key = (layer, tuple(units))
        if key not in self._complete:
            probed = self._run()
            assert self.model is not None and self._probe is not None
            if self._probe.is_meta:  # the completeness check compares output values
                assert self.materialise is not None, "a meta structure needs a way to materialise"
                self.model = self.materialise().eval()
                self._probe = _probe_input(self.model)
            self._complete[key] = _consumers_complete(
                self.model, self._probe, layer, units, probed.act_sites, probed.consumers.get(layer, [])
            )
        return self._complete[key]


def _storage(t: Any) -> int | None:
    """The identity of the storage under ``t`` (views share it); meta tensors have one too."""
    if isinstance(t, torch.Tensor):
        return int(t.untyped_storage()._cdata)
    return None


def _probe_input(model: nn.Module) -> torch.Tensor:
    from plastic.model.backends import backend_of_model

    size = tuple(backend_of_model(model).data_defaults(model)["input_size"])
    if any(p.is_meta for p in model.parameters()):
        return torch.empty(1, input_channels(model), *size[1:], device="meta")
    return torch.randn(1, input_channels(model), *size[1:], generator=torch.Generator().manual_seed(0))


def _rgb_stem_channels(arch: str, stem: str) -> int | None:
    """The channels timm's ``arch`` stem convolution reads when built for RGB: its weight's shape in
    the one cached meta build per architecture (``model/build.py``)."""
    if not arch:
        return None
    from plastic.model.backends import ArchSpec
    from plastic.model.build import meta_model

    try:
        shape = meta_model(ArchSpec("timm", arch), "")[0].get(f"{stem}.weight")
    except Exception:  # not a timm name this timm builds: the live stem alone decides
        return None
    return shape[1] if shape is not None and len(shape) >= 2 else None


def input_channels(model: nn.Module) -> int:
    """The channels the model's first convolution reads (a 1-channel stem reads 1); 3 without one.

    A timm model names its stem in ``pretrained_cfg["first_conv"]``: that convolution, when it names one;
    none (``[]``: CSATv2's stem is a DCT of the pixels, its first convolution reads 64 coefficients)
    means the model reads RGB images."""
    cfg = getattr(model, "pretrained_cfg", None)
    if isinstance(cfg, dict) and "first_conv" in cfg:
        first = cfg["first_conv"]
        listed = isinstance(first, list | tuple) and len(first) > 0
        name = first if isinstance(first, str) else first[0] if listed else ""
        if not name:
            return 3
        stem = dict(model.named_modules()).get(str(name).removesuffix(".weight"))
        if isinstance(stem, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            # against the same stem built for RGB: TResNet's space-to-depth stem reads 48 = 3 x 16
            rgb = _rgb_stem_channels(str(cfg.get("architecture") or ""), str(name).removesuffix(".weight"))
            live = int(stem.in_channels)
            if rgb is not None and live != rgb and (live * 3) % rgb == 0:
                return live * 3 // rgb
            return 3 if rgb == live else live
    for m in model.modules():
        if isinstance(m, nn.Conv1d | nn.Conv2d | nn.Conv3d):
            return int(m.in_channels)
    return 3


def analyse(model: nn.Module, materialise: Callable[[], nn.Module] | None = None) -> Structure:
    """Describe ``model`` (kept on the CPU, eval mode); the probe forward waits until it is needed.

    ``model`` may live on the meta device: the module tree is all most strategies read; a probe
    forward then runs on ``materialise()``.
    """
    model.eval()
    from plastic.model.backends import model_groups

    return Structure(layers_of(model), model_groups(model), _classifier(model), model, materialise)


def _probe(model: nn.Module, x: torch.Tensor) -> Probed:
    """One forward of ``x`` with hooks that record which module's output feeds which."""
    layers = layers_of(model)
    modules = dict(model.named_modules())
    act_sites = find_act_sites(model, x)
    norms = {n: m for n, m in modules.items() if n and isinstance(m, NORM_TYPES)}
    calls: list[tuple[str, int | None, int | None]] = []  # (module, input storage, output storage)
    alive: list[Any] = []  # every tensor seen stays referenced: a freed storage's address can be reused

    def hook(name: str):  # type: ignore[no-untyped-def]
        def fn(_m: nn.Module, inputs: tuple[Any, ...], out: Any) -> None:
            alive.append((inputs, out))
            calls.append((name, _storage(inputs[0]) if inputs else None, _storage(out)))

        return fn

    watched = {**layers, **norms, **{a: modules[a] for a in act_sites.values()}}
    probe_forward(model, x, {m: hook(name) for name, m in watched.items()})
    alive.clear()

    norm_after: dict[str, str] = {}
    last_layer: tuple[str, int | None] | None = None
    site_out: dict[str, int | None] = {}
    for name, inp, out in calls:
        if name in layers:
            last_layer = (name, out)
            site_out.setdefault(name, out)
        elif name in norms and last_layer is not None:
            layer, out_ptr = last_layer
            if out_ptr is not None and inp == out_ptr and layer not in norm_after:
                norm_after[layer] = name
            last_layer = None
    act_layer = {a: la for la, a in act_sites.items()}
    for name, _inp, out in calls:  # the unit-carrying tensor is the activation's output when there is one
        if name in act_layer:
            site_out[act_layer[name]] = out
        elif name in norms:
            owner = next((la for la, n in norm_after.items() if n == name), None)
            if owner is not None and owner not in act_sites:
                site_out[owner] = out
    consumers: dict[str, list[str]] = {name: [] for name in layers}
    by_ptr: dict[int, list[str]] = {}
    for layer, ptr in site_out.items():
        if ptr is not None:
            by_ptr.setdefault(ptr, []).append(layer)
    for name, inp, _out in calls:
        if name in layers and inp is not None:
            for producer in by_ptr.get(inp, []):
                if (
                    producer != name
                    and name not in consumers[producer]
                    and _reads_units(layers[name], layers[producer])
                ):
                    consumers[producer].append(name)
    return Probed(norm_after, act_sites, consumers)


def _reads_units(consumer: nn.Module, producer: nn.Module) -> bool:
    """A dense reader of every producer unit: linear, or conv with groups=1, with matching inputs."""
    units = units_of(producer)
    if isinstance(consumer, nn.Linear):
        return consumer.in_features == units
    return (
        isinstance(consumer, nn.modules.conv._ConvNd)
        and consumer.groups == 1
        and consumer.in_channels == units
    )


def _consumers_complete(
    model: nn.Module,
    x: torch.Tensor,
    layer: str,
    units: list[int],
    act_sites: dict[str, str],
    consumers: list[str],
) -> bool:
    """Perturb ``units`` at the layer's site output with the consumers' weights for them zeroed: does
    the model's output stay put? (A residual add, a channel-mixing norm or any unseen reader moves it.)"""
    if not consumers or not units:
        return False
    modules = dict(model.named_modules())
    site = modules[act_sites.get(layer, layer)]
    channels_last = isinstance(modules[layer], nn.Linear)
    idx = torch.tensor(units)
    saved = {c: modules[c].weight.detach().clone() for c in consumers}  # type: ignore[union-attr]

    def perturb(_m: nn.Module, _i: object, out: torch.Tensor) -> torch.Tensor:
        noise = torch.zeros_like(out)
        dim = out.dim() - 1 if channels_last else 1
        shape = [1] * out.dim()
        shape[dim] = len(units)
        bump = 10.0 + torch.rand(shape, generator=torch.Generator().manual_seed(1))
        noise.index_add_(
            dim, idx, bump.expand(*[s if d != dim else len(units) for d, s in enumerate(out.shape)])
        )
        return out + noise

    def run(perturbed: bool) -> torch.Tensor:
        handle = site.register_forward_hook(perturb) if perturbed else None
        try:
            return output_tensor(model(x))
        finally:
            if handle is not None:
                handle.remove()

    calls: list[int] = []
    counter = site.register_forward_hook(lambda _m, _i, _o: calls.append(1))
    try:
        with torch.no_grad():
            model(x)
    finally:
        counter.remove()
    if len(calls) != 1:  # a module called on several tensors (DLA's shared ReLU): which one is the layer's?
        return False
    try:
        with torch.no_grad():
            control = float((run(True) - run(False)).abs().max())  # the units must matter at all
            for c in consumers:
                modules[c].weight[:, idx] = 0.0  # type: ignore[index]
            leak = float((run(True) - run(False)).abs().max())
        # zeroed consumer weights make the blocked path bit-identical; anything else leaks
        return control > 0.0 and leak <= 1e-7 * control
    finally:
        with torch.no_grad():
            for c, w in saved.items():
                modules[c].weight.copy_(w)  # type: ignore[operator,union-attr]


def timm_groups(model: nn.Module, coarse: bool = False) -> dict[int, list[str]]:
    """{group id: module names} from timm's ``group_matcher`` (coarse: stem / stages / head; fine: each
    block too); for a model without one (timm's MetaFormer family: PoolFormerV2, ConvFormer, CAFormer),
    or whose matcher does not fit its modules, from its trunk list (``model/backends/tree.py``)."""
    from plastic.model.backends.tree import trunk_groups

    matcher = getattr(model, "group_matcher", None)
    if matcher is None:
        return trunk_groups(model, coarse)
    from timm.models import group_modules

    try:
        return {int(k): list(v) for k, v in group_modules(model, matcher(coarse=coarse)).items()}
    except Exception:  # a matcher that does not fit the model: the trunk's groups
        return trunk_groups(model, coarse)


def _classifier(model: nn.Module) -> list[str]:
    from plastic.model.backends import classifier_names

    modules = dict(model.named_modules())
    return [
        n
        for n in classifier_names(model)
        if is_layer(modules[n]) or any(True for _ in modules[n].parameters())
    ]
