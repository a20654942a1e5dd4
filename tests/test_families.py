"""torchvision and Hugging Face transformers checkpoints beside timm's (issue 22): recognised without
--arch, diagnosed with their own fresh reference, re-initialized into files their own library loads.

Every model here is the real library's, built offline from its constructor or a small config.
"""

from __future__ import annotations

import functools
import json
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

import plastic
from plastic import Options
from tests.conftest import CALIB

torchvision = pytest.importorskip("torchvision")
FAST = {"device": "cpu", "max_images": 8}


def _tv(name: str, num_classes: int = 1000, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torchvision.models.get_model(name, weights=None, num_classes=num_classes).eval()  # type: ignore[no-any-return]


def _save(model: torch.nn.Module, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path


# --- torchvision ---------------------------------------------------------------------------------


def test_every_torchvision_classifier_is_in_the_index_and_recognised_from_its_own_signature() -> None:
    """All of list_models(module=torchvision.models): each one's tensors (at 1000 and at 7 classes)
    detect it, and only look-alikes that share every tensor come with it."""
    from plastic.model.backends import backend
    from plastic.model.backends.torchvision_family import load_index

    b = backend("torchvision")
    _version, index = load_index()
    names = torchvision.models.list_models(module=torchvision.models)
    assert set(names) <= set(index)
    for name in names:
        entry = index[name]
        shapes = dict(entry.shapes)
        found = b.detect(shapes)
        assert found is not None and name in found.candidates, name
        resized = {
            k: ((7, *v[1:]) if k in entry.classifier and v and v[0] == 1000 else v) for k, v in shapes.items()
        }
        assert name in b.detect(resized).candidates, name  # type: ignore[union-attr]


def test_torchvision_state_dict_recognised_diagnosed_and_fresh_is_healthy(tmp_path: Path) -> None:
    """A torchvision mobilenet_v3_small .pth (10 classes): no --arch; its fresh init is healthy."""
    src = _save(_tv("mobilenet_v3_small", 10, seed=1234), tmp_path / "m.pth")  # reference: seed 0
    report = plastic.diagnose_checkpoint(src, CALIB, **FAST)
    doc = report.to_dict()
    assert doc["arch"]["name"] == "torchvision:mobilenet_v3_small" and doc["arch"]["source"] == "detected"
    assert doc["arch"]["family"] == "torchvision"
    assert report.recommendation is not None and report.recommendation.action == "finetune"
    assert all((la["score"] or 0) < 0.10 for la in doc["layers"] if not la["classifier"])
    assert [s["start"] for s in doc["stages"]][:2] == ["features.0.0", "features.1.block"]


@functools.cache
def _fresh_tv_report(name: str) -> dict[str, Any]:
    """diagnose's report of ``name`` drawn with seed 1234 against its seed-0 reference (the same seed
    would make the model its own reference: a test that could not fail, as this one was until issue
    29's sweep). Cached: two tests read it."""
    with tempfile.TemporaryDirectory() as tmp:
        src = _save(_tv(name, 5, seed=1234), Path(tmp) / f"{name}.safetensors")
        # Swin at 112 px (its windows pad): a quarter of the 224 px cost, the same null case
        size = {"input_size": (3, 112, 112)} if name == "swin_t" else {}
        return plastic.diagnose_checkpoint(src, CALIB, **FAST, **size).to_dict()  # type: ignore[return-value]


FRESH_TV = ["shufflenet_v2_x0_5", "regnet_y_400mf", "swin_t"]  # and mobilenet_v3_small above


@pytest.mark.parametrize("name", FRESH_TV)
def test_fresh_torchvision_models_are_told_to_fine_tune_as_is(name: str) -> None:
    doc = _fresh_tv_report(name)
    assert doc["arch"]["name"] == f"torchvision:{name}"
    assert doc["recommendation"]["action"] == "finetune"


@pytest.mark.parametrize("name", FRESH_TV)
def test_fresh_torchvision_layers_stay_under_the_threshold(name: str) -> None:
    """ShuffleNetV2's stage2.0.branch2 layers scored 0.11-0.32 here from seed noise alone until each layer
    had its own seed-to-seed spread (issue 29 item 5; BENCHMARKS.md, "the seed-to-seed spread")."""
    doc = _fresh_tv_report(name)
    flagged = [la["name"] for la in doc["layers"] if not la["classifier"] and (la["score"] or 0) >= 0.10]
    assert not flagged


STRATEGIES: list[tuple[str, dict[str, Any]]] = [
    ("auto", {}),
    ("head", {}),
    ("topk-layers", {}),
    ("from-block", {"from_block": "features.9"}),
    ("dormant-units", {}),
    ("weights", {}),
    ("shrink-perturb", {}),
    ("layers", {"layers": ["features.0.0.*"]}),
]


def test_every_strategy_writes_a_file_torchvision_loads_strictly(tmp_path: Path) -> None:
    model = _tv("mobilenet_v3_small", 10, seed=1)  # not reinit's seed 0: new values differ from the old
    with torch.no_grad():  # a dead unit (its BN gives 0 before the hardswish): dormant, known answer
        model.features[0][1].weight[3] = 0.0
        model.features[0][1].bias[3] = -5.0
    src = _save(model, tmp_path / "m.pth")
    report = plastic.diagnose_checkpoint(src, CALIB, **FAST)
    stem = next(la for la in report.layers if la.name == "features.0.0")
    assert 3 in stem.dormant_units
    before = torch.load(src)
    for strategy, opts in STRATEGIES:
        out = tmp_path / f"{strategy}.pth"
        plastic.reinit_checkpoint(src, strategy, out, report=report, options=Options(**opts))
        after = torch.load(out)
        _tv("mobilenet_v3_small", 10).load_state_dict(after, strict=True)
        changed = {k for k in before if not torch.equal(before[k], after[k])}
        if strategy in ("head", "layers", "from-block"):
            assert changed, strategy
        if strategy == "head":
            assert changed <= {"classifier.3.weight", "classifier.3.bias"}
        for k in set(before) - changed:
            assert torch.equal(before[k], after[k])  # untouched tensors bit-identical


def test_module_versions_reach_the_model_and_the_output(tmp_path: Path) -> None:
    """torchvision's MNASNet loads only a state dict that carries module versions (``_metadata``, which
    torch.save(model.state_dict()) keeps and safetensors cannot hold): both files are diagnosed, the
    .pth output keeps the input's versions (it loads into the constructor as the input does), and the
    safetensors output loads once the versions are given, as for the input."""
    model = _tv("mnasnet0_5", 6)
    pth = tmp_path / "mnas.pth"
    torch.save(model.state_dict(), pth)  # an OrderedDict with _metadata, as users save
    st = _save(model, tmp_path / "mnas.safetensors")
    # the file without versions is the one that needs the installed library's: it builds and measures
    report = plastic.diagnose_checkpoint(st, CALIB, device="cpu", max_images=4, input_size=(3, 64, 64))
    assert report.arch == "torchvision:mnasnet0_5" and report.recommendation is not None
    for src in (pth, st):
        out = tmp_path / f"out{src.suffix}"
        plastic.reinit_checkpoint(src, strategy="head", output=out)
        fresh = _tv("mnasnet0_5", 6)
        if src is pth:
            after = torch.load(out)
            assert after._metadata == torch.load(pth)._metadata
        else:
            after = load_file(out)
            with pytest.raises(ValueError, match="version"):  # torchvision's own refusal, input alike
                fresh.load_state_dict(after)
            after = type(model.state_dict())(after)
            after._metadata = model.state_dict()._metadata  # type: ignore[attr-defined]
        fresh.load_state_dict(after, strict=True)
    # a plain dict in, a plain dict out (no versions invented for the file)
    plain = tmp_path / "plain.pth"
    torch.save(dict(model.state_dict()), plain)
    plastic.reinit_checkpoint(plain, strategy="head", output=tmp_path / "p.pth")
    assert type(torch.load(tmp_path / "p.pth")) is dict


def test_torchvision_and_timm_resnet18_give_the_same_per_layer_metrics() -> None:
    """One set of weights in two families that share its names, the same images: the same measurements
    layer by layer. (From files, each family's own preprocessing applies: timm's resnet18 resizes
    bicubic, torchvision's bilinear, so there the images differ.)"""
    import timm

    tv = _tv("resnet18", 6)
    tm = timm.create_model("resnet18", num_classes=6).eval()
    tm.load_state_dict(tv.state_dict(), strict=True)
    x = torch.randn(16, 3, 96, 96, generator=torch.Generator().manual_seed(1))
    a = plastic.diagnose_model(tm, x, reference=False)
    b = plastic.diagnose_model(tv, x, reference=False)
    assert b.arch == "torchvision:resnet18" and a.arch == "resnet18"
    assert [la.name for la in a.layers] == [la.name for la in b.layers]
    for p, q in zip(a.layers, b.layers, strict=True):
        for key, value in p.metrics.items():
            other = q.metrics[key]
            assert (value is None) == (other is None), (p.name, key)
            if value is not None and other is not None:
                assert other == pytest.approx(value, rel=1e-4, abs=1e-6), (p.name, key)


def test_a_plain_resnet18_from_either_library_needs_no_arch(tmp_path: Path) -> None:
    """timm's and torchvision's resnet18 (fresh, and lightly trained): resnet18 is assumed among its
    look-alikes, said in arch.certainty, and the run goes on."""
    import timm

    from plastic.files.checkpoint import open_checkpoint
    from plastic.model.build import resolve_arch

    torch.manual_seed(0)
    trained = _tv("resnet18", 4)
    opt = torch.optim.SGD(trained.parameters(), lr=0.01)
    trained.train()
    for _ in range(2):  # a few steps: running statistics and weights move off their init
        opt.zero_grad()
        trained(torch.randn(4, 3, 64, 64)).sum().backward()
        opt.step()
    models = {
        "timm": timm.create_model("resnet18", num_classes=4),
        "tv": _tv("resnet18", 4),
        "trained": trained,
    }
    for label, model in models.items():
        src = _save(model, tmp_path / f"{label}.safetensors")
        with open_checkpoint(src) as ckpt:
            res = resolve_arch(ckpt)
        assert res.arch == "resnet18" and res.certainty == "assumed", label


def test_an_unrecognised_state_dict_names_the_nearest_model_and_the_share(cli: Any, tmp_path: Path) -> None:
    state = _tv("mobilenet_v3_small").state_dict()
    state.pop("features.3.block.0.0.weight")  # one tensor gone: no signature matches
    src = tmp_path / "broken.pth"
    torch.save(state, src)
    res = cli("diagnose", src, "--data", CALIB)
    assert res.code == 2
    line = res.stderr.strip().splitlines()[-1]
    assert "torchvision:mobilenet_v3_small" in line and "--arch" in line
    assert "% of the checkpoint's tensors match it by name and shape" in line


# --- transformers --------------------------------------------------------------------------------

transformers = pytest.importorskip("transformers")


def _hf_models() -> dict[str, Any]:
    T = transformers
    vit = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               image_size=32, patch_size=8, num_labels=4)  # fmt: skip
    stages = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 2, 1], num_labels=4)
    return {
        "vit": lambda: T.ViTForImageClassification(T.ViTConfig(**vit)),
        "deit": lambda: T.DeiTForImageClassification(T.DeiTConfig(**vit)),
        "beit": lambda: T.BeitForImageClassification(T.BeitConfig(**vit)),
        "dinov2": lambda: T.Dinov2ForImageClassification(T.Dinov2Config(**vit)),
        "convnext": lambda: T.ConvNextForImageClassification(T.ConvNextConfig(**stages)),
        "convnextv2": lambda: T.ConvNextV2ForImageClassification(T.ConvNextV2Config(**stages)),
        "swin": lambda: T.SwinForImageClassification(
            T.SwinConfig(
                image_size=32,
                patch_size=4,
                embed_dim=16,
                depths=[1, 1],
                num_heads=[1, 2],
                window_size=4,
                num_labels=4,
            )
        ),
        "resnet": lambda: T.ResNetForImageClassification(
            T.ResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=4)
        ),
        "regnet": lambda: T.RegNetForImageClassification(
            T.RegNetConfig(
                embedding_size=8,
                hidden_sizes=[8, 16, 24, 32],
                depths=[1, 1, 1, 1],
                groups_width=8,
                num_labels=4,
            )
        ),
        "efficientnet": lambda: T.EfficientNetForImageClassification(
            T.EfficientNetConfig(
                image_size=32, width_coefficient=0.25, depth_coefficient=0.25, hidden_dim=320, num_labels=4
            )
        ),
        "mobilenet_v2": lambda: T.MobileNetV2ForImageClassification(
            T.MobileNetV2Config(image_size=32, depth_multiplier=0.25, num_labels=4)
        ),
        "mobilevitv2": lambda: T.MobileViTV2ForImageClassification(
            T.MobileViTV2Config(image_size=64, width_multiplier=0.25, num_labels=4)
        ),
        # heads not named `classifier`: `fc` (HGNetV2, TextNet: their `classifier` is an empty list),
        # `head` (PP-LCNet), `head` and `dist_head` (SwiftFormer)
        "hgnet_v2": lambda: T.HGNetV2ForImageClassification(
            T.HGNetV2Config(
                stem_channels=[3, 8, 8],
                stage_in_channels=[8, 16, 32, 64],
                stage_mid_channels=[8, 8, 16, 16],
                stage_out_channels=[16, 32, 64, 128],
                stage_num_blocks=[1, 1, 1, 1],
                stage_numb_of_layers=[2, 2, 2, 2],
                hidden_sizes=[16, 32, 64, 128],
                embedding_size=8,
                depths=[1, 1, 1, 1],
                num_labels=4,
            )
        ),
        "textnet": lambda: T.TextNetForImageClassification(
            T.TextNetConfig(
                image_size=[64, 64], stem_out_channels=8, hidden_sizes=[8, 8, 16, 24, 32], num_labels=4
            )
        ),
        "pp_lcnet": lambda: T.PPLCNetForImageClassification(T.PPLCNetConfig(scale=0.25, num_labels=4)),
        "swiftformer": lambda: T.SwiftFormerForImageClassification(
            T.SwiftFormerConfig(image_size=64, depths=[1, 1, 1, 1], embed_dims=[16, 24, 32, 48], num_labels=4)
        ),
        # attention whose subsampling queries get float rounding for a gradient in a fresh model
        # (BENCHMARKS.md, "a gradient of float rounding"): healthy only since that is read as none
        "levit": lambda: T.LevitForImageClassification(
            T.LevitConfig(
                image_size=64,
                hidden_sizes=[32, 48, 64],
                num_attention_heads=[1, 2, 2],
                depths=[1, 1, 1],
                key_dim=[8, 8, 8],
                num_labels=4,
            )
        ),
        # a two-tower model: the image size lives in its vision config
        "clip": lambda: T.CLIPForImageClassification(
            T.CLIPConfig(
                vision_config={k: v for k, v in vit.items() if k != "num_labels"},
                text_config=dict(
                    hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
                ),
                num_labels=4,
            )
        ),
    }


def _pretrained(name: str, folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    _hf_models()[name]().save_pretrained(folder)
    return folder


# Fresh draws whose smallest layers differ from the reference's beyond the score's noise allowance with 8
# images: a bottleneck 3x3 conv (ResNet), even against its own seed-to-seed spread over three draws
# (BENCHMARKS.md, "the seed-to-seed spread"): there the three reference draws happen to agree (sd 0.09
# decade) while fresh checkpoints (seeds 1234, 2, 3) sit 0.5-1.0 decade below them; a spread from three
# draws is itself a noisy estimate. The advice says fine-tune as is. The spread took RegNet's
# SE conv and the tiny MobileViTV2 (its top-stage conv dormant on 27% to 95% of its units depending on
# the seed alone, and told to re-initialize before it) out of this set.
NOISY_HF = {"resnet"}
NOISY_HF_ADVICE: set[str] = set()


@pytest.mark.parametrize("name", list(_hf_models()))
def test_fresh_transformers_models_are_recognised_from_config_and_healthy(name: str, tmp_path: Path) -> None:
    """Each family people fine-tune, from a save_pretrained folder: the config names it, the fresh
    init (transformers' own _init_weights) is healthy: fine-tune as is, every layer under 0.10. Drawn
    with seed 1234 against diagnose's seed-0 reference (not its own reference)."""
    folder = _pretrained(name, tmp_path / name, seed=1234)
    report = plastic.diagnose_checkpoint(folder, CALIB, **FAST)
    doc = report.to_dict()
    assert doc["arch"]["source"] == "config.json" and doc["arch"]["family"] == "transformers"
    assert (
        doc["arch"]["name"]
        == "transformers:" + json.loads((folder / "config.json").read_text())["architectures"][0]
    )
    assert len(doc["stages"]) >= 3  # stem, stages, head
    if name in NOISY_HF_ADVICE:
        assert doc["recommendation"]["action"] == "reinit", f"{name} is told to fine-tune: take it out"
        pytest.xfail(f"issue 29 item 5, open: a fresh {name} is told to re-initialize (seed noise)")
    assert doc["recommendation"]["action"] == "finetune"
    flagged = [la["name"] for la in doc["layers"] if not la["classifier"] and (la["score"] or 0) >= 0.10]
    if name in NOISY_HF:  # the advice holds; one small layer does not (issue 29 item 5, open)
        assert flagged, f"{name} is no longer flagged: take it out of NOISY_HF"
        pytest.xfail(f"issue 29 item 5, open: {flagged} of a fresh {name} scores >= 0.10 (seed noise)")
    assert not flagged


@pytest.mark.parametrize("name", ["vit", "convnext", "resnet"])
def test_reinit_writes_a_folder_from_pretrained_loads_with_no_missing_keys(name: str, tmp_path: Path) -> None:
    folder = _pretrained(name, tmp_path / name, seed=1)  # not reinit's seed 0: new values differ
    report = plastic.diagnose_checkpoint(folder, CALIB, **FAST)
    stage = report.stages[-2].start  # the last stage before the head
    out = tmp_path / "out"
    result = plastic.reinit_checkpoint(folder, "from-block", out, options=Options(from_block=stage))
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert (out / "config.json").read_bytes() == (folder / "config.json").read_bytes()
    _model, info = transformers.AutoModelForImageClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    before, after = load_file(folder / "model.safetensors"), load_file(out / "model.safetensors")
    assert set(before) == set(after)  # the file's own (older) names are kept
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and len(result.changed) > 0
    assert all(torch.equal(before[k], after[k]) for k in set(before) - changed)
    single = tmp_path / "weights.safetensors"  # -o FILE: the weights alone
    plastic.reinit_checkpoint(folder, "head", single)
    assert set(load_file(single)) == set(before)


def test_a_dead_unit_in_a_transformers_resnet_is_dormant(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = _hf_models()["resnet"]()
    norm = model.resnet.embedder.embedder.normalization
    with torch.no_grad():
        norm.weight[2], norm.bias[2] = 0.0, -5.0  # ReLU(-5) = 0 for every image
    model.save_pretrained(tmp_path / "m")
    report = plastic.diagnose_checkpoint(tmp_path / "m", CALIB, **FAST)
    stem = next(la for la in report.layers if la.name == "resnet.embedder.embedder.convolution")
    assert stem.dormant_units == [2]
    # dormant-units checks that zeroing a unit's readers leaves the model's output (a transformers
    # output object) unchanged before it re-initializes the unit; the stem's unit has no conv reading it
    # directly (a max-pool follows), so it is skipped and said so
    result = plastic.reinit_checkpoint(tmp_path / "m", "dormant-units", tmp_path / "out", report=report)
    assert any(c["kind"] == "zero-outgoing" for c in result.changed)
    assert any(what.startswith("resnet.embedder.embedder.convolution") for what, _why in result.skipped)
    _model, info = transformers.AutoModelForImageClassification.from_pretrained(
        tmp_path / "out", output_loading_info=True
    )
    assert not any(info.values())


def test_without_transformers_a_transformers_folder_is_one_error_naming_the_extra(tmp_path: Path) -> None:
    folder = _pretrained("vit", tmp_path / "vit")
    code = (
        "import sys; sys.modules['transformers'] = None\n"  # as if not installed: its import fails
        "from plastic.cli.main import main\n"
        "sys.argv = ['plastic', 'diagnose', sys.argv[1], '--data', sys.argv[2]]\n"
        "main()\n"
    )
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", code, str(folder), str(CALIB)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 2, proc.stderr[-1000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1 and "plastic-reinit[transformers]" in lines[0] and "Traceback" not in proc.stderr


def test_new_values_are_the_familys_own_init(tmp_path: Path) -> None:
    """torchvision's and transformers' constructors write some tensors in ways the per-tensor replay
    does not see (convnext_tiny, swin_t, googlenet; ViT's cls_token), so their new values come from the
    full fresh model: every re-initialized tensor equals the constructor's own under the seed."""
    from safetensors.torch import load_file as load

    from plastic.model.backends import ArchSpec
    from plastic.model.init_values import fresh_model

    folder = _pretrained("vit", tmp_path / "vit", seed=3)
    config = json.loads((folder / "config.json").read_text())
    out = tmp_path / "out.safetensors"
    result = plastic.reinit_checkpoint(
        folder, "layers", out, options=Options(layers=["vit.embeddings*"], seed=9)
    )
    assert "fresh model" in result.init_source
    fresh = fresh_model(ArchSpec("transformers", "ViTForImageClassification", 4, None, config), seed=9)
    expected = fresh.state_dict()
    written = load(out)
    assert torch.equal(written["vit.embeddings.cls_token"], expected["vit.embeddings.cls_token"])
    assert not torch.equal(
        written["vit.embeddings.cls_token"], load(folder / "model.safetensors")["vit.embeddings.cls_token"]
    )


def test_an_unrecognised_timm_checkpoint_names_the_nearest_timm_model(cli: Any, tmp_path: Path) -> None:
    """timm's index keeps hashes only; its name patterns (indices aside) still name the nearest model."""
    from tests.conftest import RESNET

    state = load_file(RESNET)
    state.pop("layer2.0.conv1.weight")
    src = tmp_path / "broken.safetensors"
    save_file(state, str(src))
    line = cli("diagnose", src, "--data", CALIB).stderr.strip().splitlines()[-1]
    assert "the nearest is" in line and "resnet" in line and "by name pattern" in line


def test_googlenet_saved_without_its_auxiliary_heads_is_recognised(tmp_path: Path) -> None:
    """torchvision's pretrained GoogLeNet and Inception-v3 come without aux heads: indexed as
    ``@noaux`` variants, built with ``aux_logits=False``, loaded strictly."""
    from plastic.files.checkpoint import open_checkpoint
    from plastic.model.build import build_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=True, num_classes=5)
    src = _save(model, tmp_path / "g.pth")
    with open_checkpoint(src) as ckpt:
        built = build_model(ckpt)
    assert built.arch == "torchvision:googlenet@noaux" and built.num_classes == 5
    assert not getattr(built.model, "aux_logits", True)


def test_two_configs_of_one_transformers_class_in_one_process(tmp_path: Path) -> None:
    """An ArchSpec compares without its config: nothing cached per spec may mix two ViTs of other sizes."""
    T = transformers
    for width in (32, 48):
        cfg = T.ViTConfig(hidden_size=width, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                          image_size=32, patch_size=8, num_labels=3)  # fmt: skip
        torch.manual_seed(1)
        T.ViTForImageClassification(cfg).save_pretrained(tmp_path / f"w{width}")
        out = tmp_path / f"w{width}.safetensors"
        plastic.reinit_checkpoint(tmp_path / f"w{width}", "head", out)
        assert load_file(out)["vit.embeddings.cls_token"].shape[-1] == width


def test_sharded_and_pytorch_model_bin_folders_come_back_loadable(tmp_path: Path) -> None:
    """save_pretrained's other layouts: shards (written back as one model.safetensors) and a
    pytorch_model.bin (written back as one): from_pretrained loads both outputs with nothing missing."""
    torch.manual_seed(1)
    model = _hf_models()["vit"]()
    model.save_pretrained(tmp_path / "sharded", max_shard_size="30KB")
    assert len(list((tmp_path / "sharded").glob("model-*.safetensors"))) > 1
    (tmp_path / "bin").mkdir()
    torch.save(load_file(_pretrained("vit", tmp_path / "single", seed=1) / "model.safetensors"),
               tmp_path / "bin" / "pytorch_model.bin")  # fmt: skip
    (tmp_path / "bin" / "config.json").write_bytes((tmp_path / "single" / "config.json").read_bytes())
    for layout, weights in (("sharded", "model.safetensors"), ("bin", "pytorch_model.bin")):
        out = tmp_path / f"{layout}_out"
        plastic.reinit_checkpoint(tmp_path / layout, "head", out)
        assert sorted(p.name for p in out.iterdir()) == ["config.json", weights]
        _m, info = transformers.AutoModelForImageClassification.from_pretrained(out, output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"], layout
