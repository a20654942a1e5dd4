"""Models a demanding user hands over that broke plastic once (found by ``scripts/sweep_families.py
timm-modules`` and by trying transformers' image classifiers): each case with its known answer. The
fresh-model checks of every family stay in ``tests/test_families.py``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import plastic
from plastic.model.backends import classifier_names
from tests.conftest import CALIB
from tests.test_families import FAST, _hf_models, _pretrained

# --- timm ----------------------------------------------------------------------------------------


def test_a_timm_model_whose_default_has_no_head_is_read_with_the_files_head(tmp_path: Path) -> None:
    """timm's EVA-02 tiny defaults to num_classes=0 (its MIM weights have no head): a fine-tuned file
    with a 10-class head is recognised, built with that head and loaded strictly; `head` re-initializes
    exactly it."""
    import timm

    from plastic.files.checkpoint import open_checkpoint
    from plastic.model.build import build_model

    torch.manual_seed(0)
    model = timm.create_model("eva02_tiny_patch14_224", num_classes=10)
    src = tmp_path / "eva02.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(src))
    with open_checkpoint(src) as ckpt:
        built = build_model(ckpt)
    assert built.arch == "eva02_tiny_patch14_224" and built.num_classes == 10
    assert sorted(built.classifier_keys) == ["head.bias", "head.weight"]
    result = plastic.reinit_checkpoint(src, "head", tmp_path / "out.safetensors")
    assert {c["tensor"] for c in result.changed} == {"head.bias", "head.weight"}
    model.load_state_dict(load_file(tmp_path / "out.safetensors"), strict=True)


def test_timm_models_without_a_group_matcher_or_a_conv_stem_on_pixels() -> None:
    """timm's MetaFormer family (PoolFormerV2, ConvFormer, CAFormer) has no ``group_matcher``: its stages
    come from its trunk list, so from-block starts exist; CSATv2's stem is a DCT of the pixels (its first
    convolution reads 64 coefficients; ``pretrained_cfg["first_conv"]`` is empty): it reads RGB images,
    and a 1-channel ResNet's stem still says 1."""
    import timm

    from plastic.model.backends import model_groups
    from plastic.model.structure import input_channels

    with torch.device("meta"):
        pool = timm.create_model("poolformerv2_s12", num_classes=10)
        csat = timm.create_model("csatv2", num_classes=10)
        gray = timm.create_model("resnet18", num_classes=10, in_chans=1)
    starts = [members[0] for members in model_groups(pool, coarse=True).values()]
    assert starts[0] == "stem.conv" and starts[-1] == "head.norm" and len(starts) == 6
    assert (input_channels(csat), input_channels(gray), input_channels(pool)) == (3, 1, 3)


def test_a_timm_model_with_a_second_class_head_is_recognised_at_any_class_count() -> None:
    """VOLO's aux_head has a row per class but is not what get_classifier returns, so the index's body
    (hashed at 1,000 classes) misses a 10-class file; the names' shortlist, confirmed at the file's class
    count on meta, finds it."""
    import timm

    from plastic.model.signatures import detect

    with torch.device("meta"):
        model = timm.create_model("volo_d1_224", num_classes=10)
    found = detect({k: tuple(v.shape) for k, v in model.state_dict().items()})
    assert found.candidates == ["volo_d1_224"] and set(found.classifier) == {"head.weight", "head.bias"}


@pytest.mark.parametrize(
    ("name", "chans"),
    [("tresnet_m", 3), ("tresnet_m", 1), ("naflexvit_base_patch16_parfac_gap", 3), ("resnet18", 1),
     ("resnet18", 3), ("resnet18", 4), ("vit_tiny_patch16_224", 1)],
)  # fmt: skip
def test_input_channels_are_read_against_the_rgb_stem(name: str, chans: int) -> None:
    """A stem's weight need not read 3 channels for RGB (TResNet's space-to-depth stem reads 48, a
    linear patch embedding 3 x 16 x 16): the file's stem is compared with the same stem built for RGB."""
    import timm

    from plastic.files.checkpoint import from_state_dict
    from plastic.model.backends import ArchSpec
    from plastic.model.build import stem_channels
    from plastic.model.structure import input_channels

    with torch.device("meta"):
        model = timm.create_model(name, num_classes=10, in_chans=chans)
    state = {k: torch.empty(v.shape) for k, v in model.state_dict().items() if v.ndim >= 2}
    ckpt = from_state_dict(state, path=Path("x.pth"), format="torch", size_bytes=0, metadata={},
                           container_key=None, files=())  # fmt: skip
    assert stem_channels(ckpt, ArchSpec("timm", name)) == (None if chans == 3 else chans)
    assert input_channels(model) == chans  # the live model: the channels its data must have


# --- transformers --------------------------------------------------------------------------------

transformers = pytest.importorskip("transformers")


HEADS = {"vit": ["classifier"], "hgnet_v2": ["fc"], "textnet": ["fc"], "pp_lcnet": ["head"],
         "swiftformer": ["head", "dist_head"]}  # fmt: skip


@pytest.mark.parametrize("name", list(HEADS))
def test_the_head_is_found_whatever_its_name(name: str, tmp_path: Path) -> None:
    """A head is the linear layer beside the base model that maps to num_labels, not only one called
    `classifier`: `--strategy head` re-initializes exactly its tensors, and diagnose marks it."""
    folder = _pretrained(name, tmp_path / name, seed=1)
    model = _hf_models()[name]()
    assert classifier_names(model) == HEADS[name]
    out = tmp_path / "out"
    result = plastic.reinit_checkpoint(folder, "head", out)
    assert {c["tensor"].rpartition(".")[0] for c in result.changed} == set(HEADS[name])
    _model, info = transformers.AutoModelForImageClassification.from_pretrained(out, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]


def test_models_that_do_not_read_image_batches_are_refused_by_name_and_still_reinit(tmp_path: Path) -> None:
    """ImageGPT reads token ids and SigLIP 2 variable-size patch sequences: diagnose says so in one
    error before decoding an image (not a shape mismatch deep in the pass); the head strategy, which
    needs no images, still writes a folder its class loads."""
    from plastic.errors import ArchitectureError

    T = transformers
    tiny = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    models = {
        "ImageGPT": (T.ImageGPTForImageClassification(T.ImageGPTConfig(n_embd=32, n_layer=1, n_head=2,
                                                                       num_labels=4)), "reads input_ids"),
        "SigLIP 2": (T.Siglip2ForImageClassification(T.Siglip2Config(
            vision_config={**tiny, "patch_size": 8}, text_config=tiny, num_labels=4)), "spatial_shapes"),
    }  # fmt: skip
    for label, (model, why) in models.items():
        folder = tmp_path / label.replace(" ", "")
        model.save_pretrained(folder)
        with pytest.raises(ArchitectureError, match=why):
            plastic.diagnose_checkpoint(folder, CALIB, **FAST)
        plastic.reinit_checkpoint(folder, "head", tmp_path / f"{folder.name}-out")
        _m, info = type(model).from_pretrained(tmp_path / f"{folder.name}-out", output_loading_info=True)
        assert not any(info.values()), label


def test_published_efficientnet_configs_are_built_not_refused() -> None:
    """google/efficientnet-b0..b7 as transformers publishes them (hidden_dim 1280..2560 and the default
    num_hidden_layers 64): the size estimate reads those fields as a transformer's (1.3e9 for B0's 5e6
    parameters), so the size check counts exactly on meta before refusing; a config that really asks for
    a giant model is still refused."""
    from plastic.errors import ArchitectureError
    from plastic.model.backends.transformers_family import check_build_size, meta_params

    name = "EfficientNetForImageClassification"
    published = {"b0": (1.0, 1.0, 224, 1280), "b3": (1.2, 1.4, 300, 1536), "b5": (1.6, 2.2, 456, 2048)}
    for w, d, size, hidden in published.values():
        doc = transformers.EfficientNetConfig(
            width_coefficient=w, depth_coefficient=d, image_size=size, hidden_dim=hidden, num_labels=1000
        ).to_dict()
        real = meta_params(name, doc)
        assert real is not None and 5e6 < real < 4e7
        check_build_size(doc, real, 300, "b", lambda doc=doc: meta_params(name, doc))  # type: ignore[misc]
    doc = transformers.ViTConfig(hidden_size=10**6, num_hidden_layers=2, num_attention_heads=8).to_dict()
    with pytest.raises(ArchitectureError, match="asks for a model of about 8"):
        check_build_size(doc, 10**5, 30, "vit", lambda: meta_params("ViTForImageClassification", doc))
