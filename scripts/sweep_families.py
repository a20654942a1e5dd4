"""Fresh torchvision and transformers classifiers through ``diagnose`` and ``reinit``, as a user would hand
them over: every one must be recognised, called healthy (its fresh init: fine-tune as is, no layer at
0.10), and re-initialized (auto, from-block at the middle stage, dormant-units, head) into a file its own
library loads strictly (torchvision) or with no missing/unexpected keys (transformers ``from_pretrained``).

    python scripts/sweep_families.py torchvision [NAME,...]    # one model per torchvision family
    python scripts/sweep_families.py transformers [NAME,...]   # small configs beyond tests/test_families.py
    python scripts/sweep_families.py timm [NAME,...]           # 30 timm families, diagnose only
    python scripts/sweep_families.py timm-modules [OUT.jsonl]  # every timm module's smallest model

Every model is initialised with seed 1234 and measured against its fresh reference drawn with seed 0:
the same seed on both sides would make any model trivially "healthy" (it would be its own reference).

Prints one line per model (OK / FAIL with the error) and exits 1 if any failed. Slow (minutes per big
torchvision model on a CPU); the suite tests a few of each family, this checks the breadth.
"""

from __future__ import annotations

import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import plastic
from plastic import Options

CALIB = Path(__file__).resolve().parents[1] / "sample_checkpoints" / "calib"
TORCHVISION = [
    "squeezenet1_0",
    "mnasnet0_5",
    "mobilenet_v2",
    "shufflenet_v2_x1_0",
    "regnet_x_400mf",
    "efficientnet_b0",
    "googlenet",
    "densenet121",
    "alexnet",
    "resnext50_32x4d",
    "mobilenet_v3_large",
    "convnext_tiny",
    "efficientnet_v2_s",
    "inception_v3",
    "swin_v2_t",
    "vgg11_bn",
    "vit_b_32",
    "maxvit_t",
    "wide_resnet50_2",
]


def transformers_models() -> dict[str, Callable[[], Any]]:
    import transformers as T

    vit = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
               image_size=32, patch_size=8)  # fmt: skip
    text = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    stages = dict(hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_labels=4)
    heads = dict(num_attention_heads=[1, 1, 2, 2])
    return {
        "mobilevit": lambda: T.MobileViTForImageClassification(T.MobileViTConfig(
            image_size=64, hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 32, 64],
            num_labels=4)),
        "mobilevitv2": lambda: T.MobileViTV2ForImageClassification(
            T.MobileViTV2Config(image_size=64, width_multiplier=0.25, num_labels=4)),
        "levit": lambda: T.LevitForImageClassification(T.LevitConfig(
            image_size=64, hidden_sizes=[32, 48, 64], num_attention_heads=[1, 2, 2], depths=[1, 1, 1],
            key_dim=[8, 8, 8], num_labels=4)),
        "poolformer": lambda: T.PoolFormerForImageClassification(T.PoolFormerConfig(**stages)),
        "segformer": lambda: T.SegformerForImageClassification(
            T.SegformerConfig(**stages, **heads, decoder_hidden_size=32)),
        "swinv2": lambda: T.Swinv2ForImageClassification(T.Swinv2Config(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
            num_labels=4)),
        "data2vec-vision": lambda: T.Data2VecVisionForImageClassification(
            T.Data2VecVisionConfig(**vit, num_labels=4)),
        "bit": lambda: T.BitForImageClassification(T.BitConfig(embedding_size=8, num_groups=8, **stages)),
        "focalnet": lambda: T.FocalNetForImageClassification(
            T.FocalNetConfig(image_size=32, embed_dim=16, depths=[1, 1], num_labels=4)),
        "mobilenet_v1": lambda: T.MobileNetV1ForImageClassification(
            T.MobileNetV1Config(image_size=32, depth_multiplier=0.25, num_labels=4)),
        "pvt": lambda: T.PvtForImageClassification(T.PvtConfig(image_size=32, **stages, **heads)),
        "pvt_v2": lambda: T.PvtV2ForImageClassification(T.PvtV2Config(image_size=32, **stages, **heads)),
        "hiera": lambda: T.HieraForImageClassification(T.HieraConfig(
            image_size=[64, 64], embed_dim=16, num_heads=[1, 1, 2, 2], depths=[1, 1, 1, 1], num_labels=4)),
        "dinov2-registers": lambda: T.Dinov2WithRegistersForImageClassification(
            T.Dinov2WithRegistersConfig(**vit, num_labels=4)),
        "vit-msn": lambda: T.ViTMSNForImageClassification(T.ViTMSNConfig(**vit, num_labels=4)),
        "ijepa": lambda: T.IJepaForImageClassification(T.IJepaConfig(**vit, num_labels=4)),
        "clip": lambda: T.CLIPForImageClassification(
            T.CLIPConfig(vision_config=vit, text_config=text, num_labels=4)),
        "siglip": lambda: T.SiglipForImageClassification(
            T.SiglipConfig(vision_config=vit, text_config=text, num_labels=4)),
        "metaclip2": lambda: T.MetaClip2ForImageClassification(
            T.MetaClip2Config(vision_config=vit, text_config=text, num_labels=4)),
        "donut-swin": lambda: T.DonutSwinForImageClassification(T.DonutSwinConfig(
            image_size=32, patch_size=4, embed_dim=16, depths=[1, 1], num_heads=[1, 2], window_size=4,
            num_labels=4)),
        "cvt": lambda: T.CvtForImageClassification(T.CvtConfig(num_labels=4)),  # CvT-13: 20M
        # a timm model saved through transformers (the hub's timm checkpoints load this way)
        "timm-wrapper": lambda: T.TimmWrapperForImageClassification(
            T.TimmWrapperConfig(architecture="resnet18", num_labels=4)),
    }  # fmt: skip


def _torchvision(name: str, folder: Path) -> tuple[Path, Callable[[Path], None]]:
    import torchvision

    def make() -> torch.nn.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torchvision.models.get_model(name, weights=None, num_classes=10).eval()  # type: ignore[no-any-return]

    src = folder / f"{name}.pth"
    torch.save(make().state_dict(), src)  # as users save: an OrderedDict with module versions

    def check(out: Path) -> None:
        make().load_state_dict(torch.load(out), strict=True)

    return src, check


def _transformers(name: str, folder: Path) -> tuple[Path, Callable[[Path], None]]:
    model = transformers_models()[name]()
    src = folder / name
    model.save_pretrained(src)

    def check(out: Path) -> None:
        _model, info = type(model).from_pretrained(out, output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        if bad:
            raise AssertionError(f"from_pretrained: {bad}")

    return src, check


TIMM = {  # name -> input size: CNNs small, transformers at their fixed size
    "resnet18": 64, "resnet50d": 64, "resnext26ts": 64, "seresnext26t_32x4d": 64, "efficientnet_b0": 64,
    "mobilenetv2_050": 64, "mobilenetv3_small_050": 64, "mixnet_s": 64, "mnasnet_small": 64,
    "ghostnet_050": 64, "regnetx_002": 64, "regnety_002": 64, "rexnet_100": 64, "densenet121": 64,
    "dla34": 64, "cspresnet50": 64, "convnext_atto": 64, "convnextv2_atto": 64, "fbnetc_100": 64,
    "tinynet_e": 64, "lcnet_050": 64, "edgenext_xx_small": 64, "vgg11_bn": 64, "repvgg_a0": 64,
    "poolformer_s12": 64, "mobilevitv2_050": 64, "vit_tiny_patch16_224": 224,
    "deit_tiny_distilled_patch16_224": 224, "pit_ti_224": 224, "xcit_nano_12_p16_224": 224,
}  # fmt: skip


def _timm(name: str, folder: Path) -> tuple[Path, Callable[[Path], None]]:
    import timm
    from safetensors.torch import save_file

    model = timm.create_model(name, num_classes=10)
    src = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(src))
    return src, lambda out: None


def sweep(family: str, names: list[str], folder: Path) -> int:
    make = {"torchvision": _torchvision, "transformers": _transformers, "timm": _timm}[family]
    failed = 0
    for name in names:
        t0 = time.perf_counter()
        try:
            torch.manual_seed(1234)  # the reference is drawn with seed 0: not the same init
            src, check = make(name, folder)
            size = TIMM.get(name) if family == "timm" else None
            report = plastic.diagnose_checkpoint(
                src, CALIB, device="cpu", max_images=16, arch=name if family == "timm" else None,
                input_size=(3, size, size) if size else None,
            )  # fmt: skip
            doc = report.to_dict()
            flagged = [
                la["name"] for la in doc["layers"] if not la["classifier"] and (la["score"] or 0) >= 0.10
            ]
            worst = max((la for la in doc["layers"] if not la["classifier"]), key=lambda la: la["score"] or 0)
            if flagged or doc["recommendation"]["action"] != "finetune":
                raise AssertionError(
                    f"a fresh model flagged: {flagged[:3]} (worst {worst['name']} {worst['score']:.2f} "
                    f"{worst['components']})"
                )
            if family == "timm":
                print(f"OK   {name}: worst {worst['name']} {worst['score'] or 0:.3f} "
                      f"({time.perf_counter() - t0:.0f} s)", flush=True)  # fmt: skip
                continue
            stages = [s["start"] for s in doc["stages"]]
            done = []
            for strategy, opts in (("auto", {}), ("from-block", {"from_block": stages[len(stages) // 2]}),
                                   ("dormant-units", {}), ("head", {})):  # fmt: skip
                out = folder / f"{name}-{strategy}{src.suffix}"
                result = plastic.reinit_checkpoint(src, strategy, out, options=Options(**opts), report=report)
                check(out)
                done.append(f"{strategy} {len(result.changed)}")
            took = time.perf_counter() - t0
            print(f"OK   {name}: {doc['arch']['name']}, {len(stages)} stages; changed {', '.join(done)} "
                  f"({took:.0f} s)", flush=True)  # fmt: skip
        except Exception as e:
            failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {str(e)[:300]}", flush=True)
            traceback.print_exc(limit=6, file=sys.stderr)
    return failed


def timm_modules() -> dict[str, tuple[str, int]]:
    """{timm module: (its smallest model, parameters)}, counted on meta (no memory): one model per
    family file of timm (``timm/models/<module>.py``), as a new user of that family would pick."""
    import timm
    from timm.models import _registry

    by: dict[str, list[str]] = {}
    for name in timm.list_models():
        by.setdefault(_registry._model_to_module.get(name, "?"), []).append(name)
    picked = {}
    for module, names in sorted(by.items()):
        sizes = []
        for name in names[:40]:
            try:
                with torch.device("meta"):
                    model = timm.create_model(name, pretrained=False, num_classes=10)
                sizes.append((sum(p.numel() for p in model.parameters()), name))
            except Exception:  # a model timm cannot build this way (extra packages, required args)
                continue
        if sizes:
            count, name = min(sizes)
            picked[module] = (name, count)
    return picked


def sweep_timm_modules(out: Path, limit: float = 150e6) -> None:
    """Each module's smallest model through the command line, as a user hands it over: a safetensors
    file (seed 1234), ``plastic diagnose`` without ``--arch`` (with it only when the error asks), then
    ``plastic reinit --strategy head`` and a strict load into timm. One JSON line per module in ``out``
    (resumable); a module over ``limit`` parameters is left out."""
    import json
    import subprocess

    import timm
    from safetensors.torch import load_file, save_file

    done = {json.loads(line)["module"] for line in out.read_text().splitlines()} if out.exists() else set()
    for module, (name, count) in sorted(timm_modules().items(), key=lambda kv: kv[1][1]):
        if module in done or count > limit:
            continue
        rec: dict[str, Any] = {"module": module, "name": name, "params": count}
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            torch.manual_seed(1234)
            model = timm.create_model(name, pretrained=False, num_classes=10).eval()
            src = Path(tmp) / f"{name}.safetensors"
            try:
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(src))
            except RuntimeError:  # tied tensors (CoaT) cannot be a plain safetensors file: a .pth then
                src = src.with_suffix(".pth")
                torch.save(model.state_dict(), src)
            args = ["plastic", "diagnose", str(src), "--data", str(CALIB), "--max-images", "8", "--json"]
            r = subprocess.run(args, capture_output=True, text=True, timeout=1800)
            arch = []
            if r.returncode == 2 and "--arch" in r.stderr:
                rec["needed_arch"] = r.stderr.strip().splitlines()[-1][:300]
                arch = ["--arch", name]
                r = subprocess.run(args + arch, capture_output=True, text=True, timeout=1800)
            rec["rc"], rec["traceback"] = r.returncode, "Traceback" in r.stderr
            rec["error"] = r.stderr.strip().splitlines()[-1][:300] if r.returncode else ""
            if r.returncode == 0:
                doc = json.loads(r.stdout)
                rec["arch"], rec["action"] = doc["arch"]["name"], doc["recommendation"]["action"]
                rec["flagged"] = [
                    la["name"] for la in doc["layers"] if not la["classifier"] and (la["score"] or 0) >= 0.10
                ]
                dst = Path(tmp) / f"out{src.suffix}"
                cmd = ["plastic", "reinit", str(src), "--strategy", "head", "-o", str(dst), *arch]
                r2 = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
                rec["reinit_rc"] = r2.returncode
                if r2.returncode == 0:
                    read = load_file if src.suffix == ".safetensors" else torch.load
                    new, old = read(str(dst)), read(str(src))
                    model.load_state_dict(new, strict=True)
                    rec["head_changed"] = sorted(
                        {k.rpartition(".")[0] for k in new if not torch.equal(new[k], old[k])}
                    )
        rec["s"] = round(time.perf_counter() - t0)
        with out.open("a") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec)[:300], flush=True)


def main() -> None:
    if len(sys.argv) >= 2 and sys.argv[1] == "timm-modules":
        sweep_timm_modules(Path(sys.argv[2] if len(sys.argv) > 2 else "timm_modules.jsonl"))
        return
    if len(sys.argv) < 2 or sys.argv[1] not in ("torchvision", "transformers", "timm"):
        raise SystemExit(__doc__)
    family = sys.argv[1]
    names = sys.argv[2].split(",") if len(sys.argv) > 2 else (
        {"torchvision": TORCHVISION, "timm": list(TIMM)}.get(family) or list(transformers_models())
    )  # fmt: skip
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        failed = sweep(family, names, Path(tmp))
    print(f"{len(names) - failed} of {len(names)} passed", flush=True)
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
