"""Every checkpoint layout a user may hand over (issue 10): wrapper prefixes and Lightning, hub folders,
1-channel models, and reports that carry what reinit needs. Real timm models throughout."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from plastic.errors import CheckpointError
from plastic.files.checkpoint import open_checkpoint
from tests.conftest import CALIB, Result, json_doc, run_light

SMALL = "test_efficientnet"  # a real timm architecture, tiny enough for CPU tests


def _state(arch: str, **kwargs: Any) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = timm.create_model(arch, pretrained=False, **kwargs)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


# --- wrapper prefixes and Lightning ----------------------------------------------------------------------


def _lit_class() -> Any:
    """A LightningModule holding a timm model as ``self.model`` (lightning imported on first use)."""
    lightning = pytest.importorskip("lightning")

    class Lit(lightning.LightningModule):  # type: ignore[misc,name-defined]
        def __init__(self, lr: float = 0.01) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.model = timm.create_model(SMALL, num_classes=4)

        def training_step(self, batch: Any, _i: int) -> torch.Tensor:
            x, y = batch
            return torch.nn.functional.cross_entropy(self.model(x), y)

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)

    return Lit


def _lightning_checkpoint(path: Path) -> None:
    """A real Lightning checkpoint: the module of :func:`_lit_class` after 2 steps."""
    lightning = pytest.importorskip("lightning")
    from torch.utils.data import DataLoader, TensorDataset

    torch.manual_seed(0)
    data = TensorDataset(torch.randn(8, 3, 64, 64), torch.randint(0, 4, (8,)))
    trainer = lightning.Trainer(
        max_steps=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.fit(_lit_class()(), DataLoader(data, batch_size=4))
    trainer.save_checkpoint(path)


def _hand_made_lightning(path: Path) -> None:
    """What Lightning writes, when the package is absent: state_dict under ``model.``, run state beside."""
    sd = {f"model.{k}": v for k, v in _state(SMALL, num_classes=4).items()}
    torch.save({"epoch": 3, "global_step": 100, "pytorch-lightning_version": "2.6.6", "state_dict": sd,
                "hyper_parameters": {"lr": 0.01}, "optimizer_states": [{"state": {0: {"momentum_buffer":
                torch.zeros(2)}}}], "lr_schedulers": []}, path)  # fmt: skip


@pytest.mark.parametrize("real", [True, False], ids=["lightning", "hand-made"])
def test_lightning_checkpoint_round_trip(cli: Callable[..., Result], tmp_path: Path, real: bool) -> None:
    src = tmp_path / "effb0_lightning.ckpt"
    (_lightning_checkpoint if real else _hand_made_lightning)(src)
    doc = json_doc(cli("diagnose", src, "--data", CALIB, "--device", "cpu", "--max-images", "8", "--json"))
    assert doc["arch"]["name"] == SMALL and doc["arch"]["source"] == "detected"
    assert doc["checkpoint"]["stripped_prefixes"] == ["model."]
    assert any("wrapper prefix 'model.'" in n for n in doc["notes"])
    assert doc["layers"][0]["name"].startswith(("conv_stem", "blocks", "conv_head", "classifier"))
    report = tmp_path / "r.json"
    report.write_text(json.dumps(doc))
    out = tmp_path / "out.ckpt"
    # a fresh model's scores may all be 0 (nothing for topk-layers to rank): name the layer instead
    res = cli("reinit", "--report", report, "-s", "layers", "--layers", "conv_stem", "-o", out)
    assert res.code == 0, res.stderr
    written = torch.load(out, weights_only=True)
    original = torch.load(src, weights_only=True)
    assert set(written["state_dict"]) == set(original["state_dict"])  # the prefix kept, as the loader needs
    assert (
        written["hyper_parameters"] == original["hyper_parameters"] and written["epoch"] == original["epoch"]
    )
    assert "optimizer_states" not in written  # the run's state is stale after a re-initialization
    changed = json.loads(written["plastic"]["plastic.changed"])
    assert changed and all(k.startswith("model.") for k in changed)
    # timm's own init for the changed layers (not PyTorch's default): the manifest says so
    assert "timm test_efficientnet init" in written["plastic"]["plastic.init_source"]
    # --arch works too, and a named architecture finds the prefix the same way
    res = cli("reinit", src, "--arch", SMALL, "-s", "head", "-o", tmp_path / "h.ckpt")
    assert res.code == 0 and "wrapper prefix 'model.'" in res.stderr, res.stderr


def test_lightning_output_loads_with_load_from_checkpoint(tmp_path: Path) -> None:
    pytest.importorskip("lightning")
    src = tmp_path / "m.ckpt"
    _lightning_checkpoint(src)
    out = tmp_path / "o.ckpt"
    from plastic.pipelines.reinit import reinit
    from plastic.reinit.strategies import Options

    reinit(src, strategy="head", output=out, options=Options())
    # Lightning's own loader, in this process (a new interpreter would spend its time importing torch)
    model = _lit_class().load_from_checkpoint(str(out))
    assert model.hparams.lr == 0.01
    written = torch.load(out, weights_only=True)["state_dict"]["model.classifier.bias"]
    assert torch.equal(model.model.classifier.bias.detach(), written)  # the new head, as written


def test_backbone_prefix_in_safetensors(cli: Callable[..., Result], tmp_path: Path) -> None:
    src = tmp_path / "m.safetensors"
    save_file({f"backbone.net.{k}": v for k, v in _state(SMALL, num_classes=4).items()}, str(src))
    doc = json_doc(cli("diagnose", src, "--data", CALIB, "--device", "cpu", "--max-images", "4", "--json"))
    assert doc["arch"]["name"] == SMALL and doc["checkpoint"]["stripped_prefixes"] == ["backbone.net."]
    out = tmp_path / "o.safetensors"
    assert cli("reinit", src, "-s", "head", "-o", out).code == 0
    assert set(load_file(out)) == set(load_file(src))


# --- reports carry the architecture ----------------------------------------------------------------------


@pytest.mark.parametrize("strategy", ["dormant-units", "weights"])
def test_report_architecture_reaches_reinit(
    cli: Callable[..., Result], tmp_path: Path, strategy: str
) -> None:
    """resnet18 ties with resnetblur18 by signature: the report's --arch must carry into reinit (the pipe
    itself is test_reinit's test_shell_pipeline; 64 px and no reference keep this one fast)."""
    src = tmp_path / "r18.safetensors"
    save_file(_state("resnet18", num_classes=10), str(src))
    rep = tmp_path / "rep.json"
    res = cli("diagnose", src, "--arch", "resnet18", "--data", CALIB, "--max-images", "8", "--device", "cpu",
              "--input-size", "64", "--no-reference", "--json", "-q", "--out", rep)  # fmt: skip
    assert res.code == 0, res.stderr[-2000:]
    extra = ["--utility", "gradient"] if strategy == "weights" else []
    res = cli("reinit", "--report", rep, "-s", strategy, *extra, "-o", tmp_path / "o.safetensors")
    assert res.code == 0, res.stderr[-2000:]
    assert "ambiguous" not in res.stderr


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_open_checkpoint_strip_prefix_keeps_keys(tmp_path: Path, suffix: str) -> None:
    """Stripping gives a new view over the same open file: names change, stored keys do not, and the
    checkpoint it came from is untouched."""
    src = tmp_path / f"m{suffix}"
    state = {"model.fc.weight": torch.ones(2, 2)}
    save_file(state, str(src)) if suffix == ".safetensors" else torch.save(state, src)
    with open_checkpoint(src) as ckpt:
        view = ckpt.strip_prefix("model.")
        assert [(t.name, t.key) for t in view.tensors] == [("fc.weight", "model.fc.weight")]
        assert view.tensor("fc.weight").sum().item() == 4 and view.stripped_prefixes == ("model.",)
        assert [t.name for t in ckpt.tensors] == ["model.fc.weight"] and ckpt.stripped_prefixes == ()
        assert ckpt.tensor("model.fc.weight").sum().item() == 4
        with pytest.raises(CheckpointError, match=r"no tensor named 'fc\.weight'"):
            ckpt.tensor("fc.weight")
        renamed = view.renamed({"fc.weight": "head.weight"}, "a test")
        assert (
            renamed.tensor("head.weight").sum().item() == 4
            and "1 tensor names mapped: a test" in renamed.notes
        )
        assert view.notes == ()


def test_the_checkpoint_is_immutable_and_resolution_returns_its_own_view(tmp_path: Path) -> None:
    """A Lightning-style file: resolve_arch finds the architecture under the ``model.`` prefix and
    returns the stripped view (with the stem's channels in the spec), leaving the opened checkpoint as
    it was; nothing can be assigned to a checkpoint."""
    import dataclasses

    from plastic.model.build import build_model, resolve_arch

    src = tmp_path / "wrapped.safetensors"
    save_file({f"model.{k}": v for k, v in _state(SMALL, in_chans=1, num_classes=5).items()}, str(src))
    with open_checkpoint(src) as ckpt:
        names = [t.name for t in ckpt.tensors]
        res = resolve_arch(ckpt)
        assert res.arch == SMALL and res.spec.in_chans == 1 and res.spec.num_classes == 5
        assert res.checkpoint is not ckpt and res.checkpoint.stripped_prefixes == ("model.",)
        assert all(not t.name.startswith("model.") for t in res.checkpoint.tensors)
        assert (
            [t.name for t in ckpt.tensors] == names and ckpt.in_chans is None and ckpt.stripped_prefixes == ()
        )
        with pytest.raises(dataclasses.FrozenInstanceError):
            ckpt.in_chans = 1  # type: ignore[misc]
        built = build_model(ckpt)  # the same again, from the untouched checkpoint
        assert built.checkpoint is not None and built.checkpoint.stripped_prefixes == ("model.",)
        ckpt.compute_sha256()
        assert res.checkpoint.sha256 == ckpt.sha256  # one fingerprint for the file and its views


# --- hub folders -----------------------------------------------------------------------------------------


def _hub_folder(folder: Path, weights: str = "model.safetensors") -> Path:
    folder.mkdir()
    state = _state(SMALL, num_classes=7)
    if weights.endswith(".safetensors"):
        save_file(state, str(folder / weights))
    else:
        torch.save(state, folder / weights)
    cfg = {"architecture": SMALL, "num_classes": 7, "pretrained_cfg": {
        "input_size": [3, 96, 96], "mean": [0.1, 0.2, 0.3], "std": [0.5, 0.6, 0.7],
        "interpolation": "bilinear", "crop_pct": 1.0, "crop_mode": "center"}}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
@pytest.mark.parametrize("given", ["folder", "config", "weights"])
def test_hub_folder_config_decides(
    cli: Callable[..., Result], tmp_path: Path, weights: str, given: str
) -> None:
    folder = _hub_folder(tmp_path / "hub", weights)
    path = {"folder": folder, "config": folder / "config.json", "weights": folder / weights}[given]
    doc = json_doc(cli("diagnose", path, "--data", CALIB, "--device", "cpu", "--max-images", "4", "--json"))
    assert doc["arch"]["name"] == SMALL and doc["arch"]["source"] == "config.json"
    cfg = doc["data_config"]
    assert cfg["input_size"] == [3, 96, 96] and cfg["input_size_source"] == "config.json"
    assert cfg["mean"] == [0.1, 0.2, 0.3] and cfg["std"] == [0.5, 0.6, 0.7] and cfg["crop_pct"] == 1.0
    # options outrank the config
    doc = json_doc(cli("diagnose", path, "--data", CALIB, "--device", "cpu", "--max-images", "4", "--json",
                   "--input-size", "64", "--mean", "0.5"))  # fmt: skip
    assert doc["data_config"]["input_size"] == [3, 64, 64] and doc["data_config"]["mean"] == [0.5] * 3
    # the config is an input: --out may not replace it
    res = cli("diagnose", path, "--data", CALIB, "--device", "cpu", "--out", folder / "config.json")
    assert res.code == 2 and "refusing to overwrite the input" in res.stderr


def test_foreign_config_json_is_ignored(cli: Callable[..., Result], tmp_path: Path) -> None:
    folder = _hub_folder(tmp_path / "hub")
    (folder / "config.json").write_text(json.dumps({"architectures": ["BertModel"], "hidden_size": 8}))
    doc = json_doc(cli("diagnose", folder, "--data", CALIB, "--device", "cpu", "--max-images", "4", "--json"))
    assert doc["arch"]["source"] == "detected"


# --- 1-channel models ------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["test_resnet", "test_efficientnet", "test_vit"])
def test_one_channel_models(cli: Callable[..., Result], tmp_path: Path, arch: str) -> None:
    src = tmp_path / "gray.safetensors"
    save_file(_state(arch, in_chans=1, num_classes=5), str(src))
    doc = json_doc(cli("diagnose", src, "--data", CALIB, "--device", "cpu", "--max-images", "8", "--json"))
    assert doc["arch"]["name"] == arch and doc["data_config"]["input_size"][0] == 1
    assert len(doc["data_config"]["mean"]) == 1 and any("in_chans=1" in n for n in doc["notes"])
    rep = tmp_path / "r.json"
    rep.write_text(json.dumps(doc))
    out = tmp_path / "o.safetensors"
    res = cli("reinit", "--report", rep, "-s", "topk-layers", "--k", "2", "-o", out)
    assert res.code == 0, res.stderr
    model = timm.create_model(arch, in_chans=1, num_classes=5)
    model.load_state_dict(load_file(out), strict=True)  # timm's 1-channel model takes the output
    # --arch with the stem's shape, and --in-chans, give the same
    doc2 = json_doc(cli("diagnose", src, "--arch", arch, "--in-chans", "1", "--data", CALIB,
                        "--device", "cpu", "--max-images", "8", "--json"))  # fmt: skip
    assert doc2["data_config"]["input_size"][0] == 1


def test_input_size_channels_must_match_the_model(cli: Callable[..., Result]) -> None:
    from tests.conftest import RESNET, expect_error

    expect_error(cli("diagnose", RESNET, "--data", CALIB, "--input-size", "1,32,32"), "model takes 3")


# --- ties resolved from data -----------------------------------------------------------------------------


def _remembering(arch: str) -> dict[str, torch.Tensor]:
    """A checkpoint whose BatchNorm running statistics are ``arch``'s own, gathered on Animal-MNIST
    training images (disjoint from the calibration folder): the known answer is ``arch``."""
    import numpy as np
    from PIL import Image

    from plastic.measure.calib import make_transform, resolve_data_config, to_rgb
    from tests.conftest import SAMPLES

    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=10)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over every batch
            m.reset_running_stats()
    transform = make_transform(resolve_data_config(model, {}))
    images = np.load(SAMPLES / "animal_mnist_transfer.npz")["x_train"][:16]
    x = torch.stack([transform(to_rgb(Image.fromarray(a))) for a in images])
    model.train()
    with torch.no_grad():
        for batch in x.split(16):
            model(batch)
    return {k: v.contiguous() for k, v in model.state_dict().items()}


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet18", "resnetblur18"])
def test_ties_are_resolved_by_batchnorm_statistics(
    cli: Callable[..., Result], tmp_path: Path, arch: str
) -> None:
    src = tmp_path / "m.safetensors"
    save_file(_remembering(arch), str(src))
    # the tie is decided before the pass, at 224 px where the statistics were gathered: no reference needed
    doc = json_doc(cli("diagnose", src, "--data", CALIB, "--device", "cpu", "--max-images", "4", "--json",
                       "--no-reference"))  # fmt: skip
    assert doc["arch"]["name"] == arch and set(doc["arch"]["candidates"]) == {"resnet18", "resnetblur18"}
    evidence = doc["arch"]["evidence"]
    assert (
        evidence["pick"] == arch
        and evidence["margin"] >= 2.0
        and evidence["measure"] == "batchnorm statistics"
    )


@pytest.mark.slow
def test_undecided_tie_assumes_the_canonical_model_with_the_evidence(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    src = tmp_path / "fresh.safetensors"
    save_file(_state("resnet18", num_classes=10), str(src))  # fresh init: running stats 0 and 1, no memory
    res = cli("diagnose", src, "--data", CALIB, "--device", "cpu", "--max-images", "4", "--json",
              "--no-reference")  # fmt: skip
    doc = json_doc(res)
    assert doc["arch"]["name"] == "resnet18" and doc["arch"]["certainty"] == "assumed"
    assert doc["arch"]["evidence"]["pick"] is None  # the images did not decide
    assert "do not decide" in res.stderr and "assumed resnet18" in res.stderr


def test_inspect_names_the_detected_architecture_without_importing_timm(tmp_path: Path) -> None:
    plain = tmp_path / "plain.safetensors"
    save_file(_state(SMALL, num_classes=4), str(plain))
    wrapped = tmp_path / "wrapped.safetensors"
    save_file({f"model.{k}": v for k, v in _state(SMALL, num_classes=4).items()}, str(wrapped))
    twins = tmp_path / "twins.safetensors"
    save_file(_state("resnet18", num_classes=10), str(twins))
    for path, name, certainty in [
        (plain, SMALL, "unique signature match"),
        (wrapped, SMALL, "under the prefix 'model.'"),
        (twins, None, "2 architectures share this signature"),
    ]:
        arch = json.loads(run_light("inspect", "--no-stats", "--json", path))["arch"]
        if timm.__version__ not in str(sorted(Path(__file__).parents[1].glob("src/plastic/data/*"))):
            assert arch["certainty"].startswith("not checked")  # another timm: only diagnose can tell
            continue
        assert arch["name"] == name and certainty in arch["certainty"], arch
