"""Round three (issue #30): what a new user and an adversarial pass found in the new paths. Each test
failed before its fix; where the command line is involved it runs as a real process."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import plastic
from tests.conftest import CALIB, RESNET, Result, expect_error, json_doc, plastic_process

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def resnet_doc() -> dict[str, Any]:
    """A diagnose report of the ResNet sample (16 images: what is read back matters here, not scores)."""
    report = plastic.diagnose_checkpoint(RESNET, CALIB, device="cpu", max_images=16)
    return dict(report.to_dict())


def _vit(folder: Path) -> Path:
    torch.manual_seed(0)
    sizes = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 64}
    config = transformers.ViTConfig(**sizes, image_size=32, patch_size=8, num_labels=3)
    transformers.ViTForImageClassification(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def vit_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _vit(tmp_path_factory.mktemp("hf") / "vit")


# --- 1. the pipe with the checkpoint named ---------------------------------------------------------------


def test_a_report_piped_into_reinit_with_the_checkpoint_named_is_read(
    cli: Any, tmp_path: Path, resnet_doc: dict[str, Any]
) -> None:
    """`diagnose m --json | reinit m -s auto` (the README's pipe, the checkpoint named): the report on
    stdin is read, and auto does what it recommends. Stdin here is a file (in-process); a real pipe
    runs in tests/test_reinit.py::test_shell_pipeline and tests/test_recommend.py."""
    out, report = tmp_path / "auto.safetensors", tmp_path / "report.json"
    report.write_text(json.dumps(resnet_doc))
    res = cli("reinit", RESNET, "--strategy", "auto", "-o", out, "--json", stdin=report)
    manifest = json_doc(res)
    start = resnet_doc["recommendation"]["options"]["from_block"]
    assert manifest["options"]["from_block"] == start and manifest["changed"], res.stderr


def test_an_empty_pipe_with_the_checkpoint_named_never_says_pipe_a_report(cli: Any, tmp_path: Path) -> None:
    """A failed diagnose before the pipe leaves stdin empty: the message says so, and does not tell the
    user to pipe a report (they did)."""
    empty = tmp_path / "empty"
    empty.write_text("")
    res = cli("reinit", RESNET, "-s", "auto", "-o", tmp_path / "o.safetensors", stdin=empty)
    line = expect_error(res, "the report on stdin is empty", "--data DIR")
    assert "pipe" not in line.split("(")[0]


def test_a_piped_report_of_another_checkpoint_names_both(
    cli: Any, tmp_path: Path, resnet_doc: dict[str, Any]
) -> None:
    from tests.conftest import MOBILENET

    report = tmp_path / "report.json"
    report.write_text(json.dumps(resnet_doc))
    res = cli("reinit", MOBILENET, "-s", "auto", "-o", tmp_path / "o.safetensors", stdin=report)
    expect_error(res, f"made for {RESNET}", f"not {MOBILENET}")


def test_a_strategy_that_needs_no_report_never_reads_stdin(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A wrapper holding stdin open (a pipe never closed, no EOF) must not make `reinit CKPT -s head`
    wait. In-process, in a thread, with a real pipe as stdin; closing the pipe afterwards ends a read
    that should not have happened, so a failure cannot hang the suite."""
    import os
    import threading

    out = tmp_path / "head.safetensors"
    read_end, write_end = os.pipe()
    stdin = os.fdopen(read_end, encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    codes: list[int] = []
    worker = threading.Thread(
        target=lambda: codes.append(cli("reinit", RESNET, "-s", "head", "-o", out).code)
    )
    try:
        worker.start()
        worker.join(timeout=120)
        waited = worker.is_alive()
    finally:
        os.close(write_end)  # EOF: a stray read returns now
        worker.join()
        monkeypatch.undo()
        stdin.close()
    assert not waited and codes == [0] and out.exists()


# --- 2. block names as the file names them ---------------------------------------------------------------


def test_from_block_takes_the_files_module_path_and_lists_the_blocks(cli: Any, vit_folder: Path) -> None:
    """transformers 5 names ViT's blocks `vit.layers.N` in the model and `vit.encoder.layer.N` in the
    file (which inspect and --layers show): either selects the same tensors."""
    changed = []
    for start in ("vit.encoder.layer.2", "vit.layers.2"):
        res = cli("reinit", vit_folder, "-s", "from-block", "--from", start, "--dry-run", "--json")
        changed.append([c["tensor"] for c in json_doc(res)["changed"]])
    assert changed[0] == changed[1] and any(t.startswith("vit.encoder.layer.2.") for t in changed[0])
    assert not any(t.startswith("vit.encoder.layer.1.") for t in changed[0])
    line = expect_error(cli("reinit", vit_folder, "-s", "from-block", "--from", "vit.encoder.layer.9",
                            "--dry-run"), "names no module", "vit.layers.0", "vit.layers.2")  # fmt: skip
    assert "blocks start at" in line
    with pytest.raises(plastic.UsageError) as e:  # the library carries every valid name
        plastic.reinit_checkpoint(
            vit_folder, "from-block", None, options=plastic.Options(from_block="nope"), dry_run=True
        )
    assert "vit.layers.1" in e.value.choices and len(e.value.choices) >= 4


# --- 3. a model without a classifier ----------------------------------------------------------------------


def test_head_on_an_encoder_without_a_classifier_says_so_and_what_to_use(cli: Any, tmp_path: Path) -> None:
    torch.manual_seed(0)
    cfg = transformers.SiglipVisionConfig(
        hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, image_size=32,
        patch_size=8,
    )  # fmt: skip
    folder = tmp_path / "siglip_vision"
    transformers.SiglipVisionModel(cfg).save_pretrained(folder)
    out = tmp_path / "out"
    res = cli("reinit", folder, "--arch", "transformers:SiglipVisionModel", "-s", "head", "-o", out)
    line = expect_error(res, "SiglipVisionModel has no classifier", "--strategy from-block --from")
    assert "pass --arch" not in line
    suggested = line.split("--strategy from-block --from ")[1].split()[0]
    again = cli("reinit", folder, "-s", "from-block", "--from", suggested, "-o", out, "--json")
    assert json_doc(again)["changed"], again.stderr  # runs when pasted


# --- 4. --force on a folder output -------------------------------------------------------------------------


def test_force_replaces_a_folder_output_whole_and_only_a_checkpoint_folder(
    cli: Any, vit_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert cli("reinit", vit_folder, "-s", "head", "-o", out).code == 0
    first = load_file(out / "model.safetensors")["classifier.weight"]
    (out / "README.md").write_text("a model card")  # a hub folder's own file: replaced with the rest
    expect_error(cli("reinit", vit_folder, "-s", "head", "-o", out), "not empty", "--force")
    res = cli("reinit", vit_folder, "-s", "head", "-o", out, "--force", "--seed", "1")
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert not torch.equal(load_file(out / "model.safetensors")["classifier.weight"], first)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp folder left beside it
    (out / "runs").mkdir()  # something plastic did not write: never deleted
    expect_error(cli("reinit", vit_folder, "-s", "head", "-o", out, "--force"), "holds runs")
    expect_error(cli("reinit", vit_folder, "-s", "head", "-o", vit_folder, "--force"), "holds the input")


# --- 5. topk-layers when every score is 0 ------------------------------------------------------------------


def test_topk_layers_picks_no_layer_by_name_when_scores_tie_at_zero(
    cli: Any, tmp_path: Path, resnet_doc: dict[str, Any]
) -> None:
    """A score of 0 means "no worse than fresh": zeros have no order, so none is picked alphabetically."""
    doc = json.loads(json.dumps(resnet_doc))
    for la in doc["layers"]:
        la["score"] = 0.0 if la["score"] is not None else None
    for b in doc["blocks"]:
        b["score"] = 0.0 if b["score"] is not None else None
    rep = tmp_path / "zeros.json"
    rep.write_text(json.dumps(doc))
    for unit in ("layer", "block"):
        res = cli("reinit", "--report", rep, "-s", "topk-layers", "--unit", unit, "-o",
                  tmp_path / f"{unit}.safetensors", "--json")  # fmt: skip
        assert json_doc(res)["changed"] == [] and "scores 0" in res.stderr, res.stderr
    top = max(doc["layers"], key=lambda la: la["score"] is not None)
    top["score"] = 0.5  # one layer above 0: it alone is picked, and the note says why not --k 3
    rep.write_text(json.dumps(doc))
    res = cli("reinit", "--report", rep, "-s", "topk-layers", "--k", "3", "-o", tmp_path / "one.safetensors",
              "--json")  # fmt: skip
    changed = {c["tensor"].rpartition(".")[0] for c in json_doc(res)["changed"] if c["kind"] == "tensor"}
    assert changed == {top["name"]} and "only 1 of the" in res.stderr


# --- 6. a config asking for an enormous model --------------------------------------------------------------


def test_a_config_asking_for_far_more_than_its_weights_is_refused_before_building(
    vit_folder: Path, tmp_path: Path
) -> None:
    import shutil

    big = tmp_path / "big"
    shutil.copytree(vit_folder, big)
    cfg = json.loads((big / "config.json").read_text())
    cfg["num_hidden_layers"] = 10**7
    (big / "config.json").write_text(json.dumps(cfg))
    t0 = time.monotonic()
    proc = plastic_process("diagnose", big, "--data", CALIB, "--max-images", "4")
    expect_error(proc, "config.json asks for a model of about", "PLASTIC_MAX_BUILD_PARAMS")
    assert time.monotonic() - t0 < 120  # not built: it ran until killed before


def test_the_config_estimate_is_within_a_small_factor_of_real_models() -> None:
    """The bound's estimate on real architectures' default configs, built on meta (no memory)."""
    from plastic.model.backends.transformers_family import estimate_params

    cases = [
        (transformers.ViTConfig(), transformers.ViTForImageClassification),
        (transformers.ConvNextConfig(), transformers.ConvNextForImageClassification),
        (transformers.ResNetConfig(), transformers.ResNetForImageClassification),
        (transformers.CLIPConfig(), transformers.CLIPModel),
    ]
    for config, cls in cases:
        with torch.device("meta"):
            real = sum(p.numel() for p in cls(config).parameters())
        ratio = estimate_params(config.to_dict()) / real
        assert 0.5 < ratio < 20, (type(config).__name__, ratio)  # far inside the 100x the bound allows
    assert math.isfinite(estimate_params({"num_hidden_layers": float("nan"), "hidden_size": True}))


# --- 7. words ---------------------------------------------------------------------------------------------


def test_the_verdict_puts_a_command_after_to_carry_it_out_and_says_how_the_model_was_found(
    cli: Callable[..., Result], resnet_doc: dict[str, Any]
) -> None:
    from plastic.cli.render import diagnose_brief

    lines = diagnose_brief(resnet_doc, 100)
    at = next(i for i, line in enumerate(lines) if "to carry it out" in line)
    assert lines[at + 1].strip().startswith("plastic reinit ")
    res = cli("diagnose", RESNET, "--data", CALIB, "--max-images", "8")
    assert "(from detected)" not in res.stdout + res.stderr
    assert "(from the file's metadata)" in res.stdout + res.stderr
