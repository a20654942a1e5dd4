"""The baseline for ``bench_models.py``: a plain forward+backward over the checkpoint alone, as a user's
own loop would run it, without plastic.

The model is built by its own library (timm, torchvision or transformers) and its weights loaded from
the safetensors file; the images are decoded with a standard eval transform (resize, centre crop,
normalise), in batches of ``--batch`` with ``--chunk`` images per forward+backward (plastic's own: 32
and 4 on the CPU, the whole batch on CUDA), cross-entropy of the model's own head against the folder's
labels. No hooks, no statistics, no reference. Prints one JSON line: the pass's seconds and images, and
on CUDA the peak allocated memory.

    python benchmarks/plain_pass.py timm:resnet50 model.safetensors ./calib --images 256
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def build(spec: str, weights: Path):  # type: ignore[no-untyped-def]
    """``timm:NAME``, ``torchvision:NAME`` (a .safetensors state dict) or ``transformers:FOLDER``."""
    family, _, name = spec.partition(":")
    if family == "transformers":
        from transformers import AutoModelForImageClassification

        return AutoModelForImageClassification.from_pretrained(str(weights)), 224
    from safetensors.torch import load_file

    if family == "timm":
        import timm

        model = timm.create_model(name)
        size = int(model.pretrained_cfg.get("input_size", (3, 224, 224))[-1])
    else:
        import torchvision

        model, size = torchvision.models.get_model(name, weights=None), 224
    model.load_state_dict(load_file(str(weights)))
    return model, size


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec")
    parser.add_argument("weights", type=Path)
    parser.add_argument("data", type=Path)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument(
        "--chunk", type=int, default=0, help="images per forward+backward (0: 4 on CPU, the batch on CUDA)"
    )
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from PIL import Image
    from torchvision import transforms

    t0 = time.perf_counter()
    dev = torch.device(args.device)
    model, size = build(args.spec, args.weights)
    model = model.to(dev).eval()
    tf = transforms.Compose([
        transforms.Resize(int(size / 0.875)), transforms.CenterCrop(size), transforms.ToTensor(),
        transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    ])  # fmt: skip
    classes = sorted(d.name for d in args.data.iterdir() if d.is_dir())
    files = sorted((f, classes.index(f.parent.name)) for f in args.data.rglob("*.png"))[: args.images]
    chunk = args.chunk or (4 if dev.type == "cpu" else args.batch)
    t_build = time.perf_counter() - t0
    t1 = time.perf_counter()
    for start in range(0, len(files), args.batch):
        batch = files[start : start + args.batch]
        x = torch.stack([tf(Image.open(f).convert("RGB")) for f, _ in batch]).to(dev)
        y = torch.tensor([label for _, label in batch], device=dev)
        for xs, ys in zip(x.split(chunk), y.split(chunk), strict=True):
            out = model(xs)
            logits = out if isinstance(out, torch.Tensor) else out.logits
            F.cross_entropy(logits, ys % logits.shape[1]).backward()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    result = {"build_s": t_build, "pass_s": time.perf_counter() - t1, "images": len(files),
              "threads": torch.get_num_threads()}  # fmt: skip
    if dev.type == "cuda":
        result["gpu_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30
    print(json.dumps(result))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
