"""The first look behind the seed-to-seed spread design (BENCHMARKS.md, "Pre-registered: the seed-to-seed
spread"), kept so that its two figures can be checked. Gradients only, outside diagnose.

    python scripts/spread_look.py units > units.json   # (a) is a layer's noise visible in one draw?
    python scripts/spread_look.py draws > draws.json   # (b) does a spread over three draws explain it?

Each model of ``MODELS`` (timm, 64 px, one thread) is drawn with seeds 0-7 and run forward and backward
on 16 of the sample calibration images (two per class) through diagnose's own pass
(``plastic.measure.onepass.data_pass``). Per layer: L = log10(||mean dL/dW|| / ||W||) relative to the
draw's median layer. ``units`` prints, for every pair of draws and layer, the difference of L and its
standard error from the layer's own units (delta method over the output channels: the noise one draw
could show). ``draws`` prints every draw's L, then how many (reference, checkpoint) comparisons - seed 0
as the reference, seeds 4-7 as fresh checkpoints - fall 0.6 decade beyond the slack max(0.25,
z sqrt(2) sd), sd over the reference and seeds 1-2 ("with") or over seeds 1-3 alone ("without").
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image

from plastic.measure.onepass import data_pass, layer_weights

CALIB = Path(__file__).resolve().parents[1] / "sample_checkpoints" / "calib"
MODELS = [
    "tinynet_e",
    "ghostnet_050",
    "mobilenetv3_small_050",
    "lcnet_050",
    "mixnet_s",
    "resnet18",
    "rexnet_100",
    "mnasnet_small",
    "efficientnet_b0",
    "regnety_002",
    "convnext_atto",
    "mobilenetv2_050",
]


def images(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    files = [(f, c) for c, d in enumerate(sorted(p for p in CALIB.iterdir() if p.is_dir()))
             for f in sorted(d.iterdir())[:2]][:16]  # fmt: skip
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    xs = []
    for f, _ in files:
        rgb = np.asarray(Image.open(f).convert("RGB").resize((size, size)), dtype=np.float32) / 255
        xs.append((torch.from_numpy(rgb).permute(2, 0, 1) - mean) / std)
    return torch.stack(xs), torch.tensor([c for _, c in files])


def measure(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, tuple[float, float]]:
    """layer -> (L relative to the median layer, var of L from the layer's units, in decades^2)."""
    batch = [(list(range(len(y))), x, [])]
    res = data_pass(
        [model], batch, y, n_classes=10, seed=0, device=torch.device("cpu"), total=len(y), keep_grads=True
    )
    grads, params, out = res.measured[0].grads or {}, dict(model.named_parameters()), {}
    for layer, w in layer_weights(model).items():
        if w not in grads:
            continue
        g, wt = grads[w].float().flatten(1), params[w].detach().float().flatten(1)  # (C_out, fan_in)
        a, b = (g**2).sum(1), (wt**2).sum(1)  # (C_out,) per unit
        if a.sum() <= 0 or b.sum() <= 0 or len(a) < 2:
            continue
        var = ((a / a.mean() - b / b.mean()).var() / len(a)).item() / 4 / math.log(10) ** 2
        out[layer] = (0.5 * math.log10(a.sum() / b.sum()), var)
    med = float(np.median([v[0] for v in out.values()]))
    return {k: (v[0] - med, v[1]) for k, v in out.items()}


def draws(seeds: range) -> dict[str, dict[int, dict[str, tuple[float, float]]]]:
    torch.set_num_threads(1)
    x, y = images(64)
    out: dict[str, dict[int, dict[str, tuple[float, float]]]] = {}
    for name in MODELS:
        out[name] = {}
        for s in seeds:
            torch.manual_seed(s)
            out[name][s] = measure(timm.create_model(name, num_classes=10), x, y)
        print(name, file=sys.stderr, flush=True)
    return out


def main() -> None:
    what = sys.argv[1] if len(sys.argv) == 2 else ""
    if what == "units":
        d = draws(range(4))
        pairs = [(a, b) for by in d.values() for a, b in itertools.combinations(by.values(), 2)]
        rows = [
            dict(d=a[k][0] - b[k][0], sd=math.sqrt(a[k][1] + b[k][1])) for a, b in pairs for k in a if k in b
        ]
        diff, sd = np.abs([r["d"] for r in rows]), np.array([r["sd"] for r in rows])
        summary: dict[str, Any] = {"pairs": len(rows), "corr": float(np.corrcoef(diff, sd)[0, 1])}
        for lo, hi in [(0, 0.05), (0.05, 0.1), (0.1, 0.2), (0.2, 10)]:
            m = (sd >= lo) & (sd < hi)
            summary[f"sd {lo}-{hi}"] = {"n": int(m.sum()), "rms_diff": float(np.sqrt((diff[m] ** 2).mean()))}
        json.dump(summary, sys.stdout, indent=1)
    elif what == "draws":
        d = draws(range(8))
        summary = {}
        for label, pool in (("with", (0, 1, 2)), ("without", (1, 2, 3))):
            for z in (0.0, 0.5, 1.0, 1.5, 2.0):
                flags = total = 0
                for by in d.values():
                    for layer in by[0]:
                        if not all(layer in by[s] for s in range(8)):
                            continue
                        sd = float(np.std([by[s][layer][0] for s in pool], ddof=1))
                        slack = max(0.25, z * math.sqrt(2) * sd)
                        for s in range(4, 8):
                            total += 1
                            flags += by[0][layer][0] - by[s][layer][0] > slack + 0.6
                summary[f"{label} z {z}"] = f"{flags} of {total}"
        json.dump(summary, sys.stdout, indent=1)
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()
