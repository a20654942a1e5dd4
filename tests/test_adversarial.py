"""The second adversarial round (issue 20): one regression test per problem it found, in its order.

Each case is the issue's own reproduction, cut to what proves the rule: the README's contract for bad input
(exit 2, one ``Error:`` line, nothing on stdout, no file left), never ``internal error``, never a hang.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from plastic.errors import CheckpointError, DataError, UsageError
from tests.conftest import CALIB, RESNET, Result, expect_error, json_doc


@pytest.fixture(scope="module")
def resnet_doc() -> dict[str, Any]:
    """A real diagnose report of the ResNet sample (8 images): the base that hand edits start from."""
    from plastic.pipelines.diagnose import diagnose

    return diagnose(RESNET, CALIB, max_images=8, device="cpu").to_dict()


def _edited(doc: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    out.update(changes)
    return out


def _small_calib(folder: Path, n: int = 4) -> Path:
    """n real sample images in two class folders."""
    images = sorted(CALIB.rglob("*.png"))
    for i, src in enumerate(images[:n]):
        (folder / f"c{i % 2}").mkdir(parents=True, exist_ok=True)
        shutil.copy(src, folder / f"c{i % 2}" / src.name)
    return folder


def _variant(path: Path, change: Callable[[dict[str, torch.Tensor]], None]) -> Path:
    """The ResNet sample with its metadata, one edit applied to its tensors."""
    with safe_open(str(RESNET), "pt") as f:
        meta = f.metadata()
    state = load_file(RESNET)
    change(state)
    save_file(state, str(path), metadata=meta)
    return path


# --- 1. --workers is bounded, and no worker outlives plastic ----------------------------------------------


@pytest.mark.parametrize("workers", ["100000", "65", "-1"])
def test_absurd_worker_counts_are_refused_before_anything_starts(
    cli: Callable[..., Result], workers: str, tmp_path: Path
) -> None:
    expect_error(cli("diagnose", RESNET, "--data", CALIB, "-j", workers), "--workers", "0..64")
    expect_error(cli("reinit", RESNET, "-s", "head", "-j", workers, "-o", tmp_path / "o.pt"), "--workers")


def test_workers_are_bounded_by_cores_and_by_batches() -> None:
    from plastic.measure.calib import worker_count

    cores = len(os.sched_getaffinity(0))
    assert worker_count(40, 8, 32) == 1  # 8 images are one batch: one decoder, not 40
    assert worker_count(40, 8, 1) == min(8, cores)
    assert worker_count(64, 10_000, 32) == cores
    assert worker_count(0, 100, 1) == 0


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
def test_decoder_workers_die_with_a_sigkilled_parent() -> None:
    """SIGKILL leaves no handler to run: the workers must notice by themselves, at once (PyTorch's own
    watchdog takes seconds, and only between batches)."""
    args = ["diagnose", str(RESNET), "--data", str(CALIB), "-j", "2", "-b", "1", "--no-reference", "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "plastic", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline, kids = time.monotonic() + 120, []
        while time.monotonic() < deadline and len(kids) < 2 and proc.poll() is None:
            kids = _children(proc.pid)
            time.sleep(0.02)
        assert len(kids) >= 2, "the workers never started"
    finally:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 3  # the watchdog would take 5 s
    while time.monotonic() < deadline and any(_alive(k) for k in kids):
        time.sleep(0.05)
    assert not [k for k in kids if _alive(k)], "a decoder outlived its killed parent"


# --- 2. a FIFO (or any non-regular file) in the calibration folder is skipped, never opened ---------------


def test_fifos_devices_and_dangling_links_are_skipped_and_counted(tmp_path: Path) -> None:
    from plastic.measure.calib import scan_folder

    calib = _small_calib(tmp_path / "calib")
    os.mkfifo(calib / "c0" / "x.png")
    (calib / "c1" / "null.png").symlink_to("/dev/zero")  # a device: reading it would never end
    (calib / "c1" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (calib / "c0" / "dir.png").mkdir()  # a folder named like an image
    found = scan_folder(calib)
    assert len(found.files) == 4 and found.found == 4
    reasons = {p.name: why for p, why in found.skipped}
    assert reasons["x.png"] == "not a regular file (a FIFO)"
    assert reasons["null.png"] == "not a regular file (a device)"
    assert reasons["gone.png"].startswith("cannot be read")


def test_diagnose_finishes_beside_a_fifo_and_reports_it(cli: Callable[..., Result], tmp_path: Path) -> None:
    calib = _small_calib(tmp_path / "calib")
    os.mkfifo(calib / "c0" / "x.png")
    doc = json_doc(cli("diagnose", RESNET, "--data", calib, "--json", "-q", "--no-reference"))
    assert doc["calibration"]["images_used"] == 4
    assert doc["calibration"]["skipped"] == [
        {"path": str(calib / "c0" / "x.png"), "reason": "not a regular file (a FIFO)"}
    ]


def test_a_folder_of_fifos_only_is_a_clear_error(tmp_path: Path) -> None:
    from plastic.measure.calib import scan_folder

    (tmp_path / "c").mkdir()
    os.mkfifo(tmp_path / "c" / "a.png")
    with pytest.raises(DataError, match="no regular image files"):
        scan_folder(tmp_path / "c")


# --- 3. a report saved in another folder is usable (paths: current folder first, then the report's) -------


def test_a_report_written_to_a_subfolder_works_from_where_diagnose_ran(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shutil.copy(RESNET, tmp_path / "r.safetensors")
    _small_calib(tmp_path / "calib")
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path)
    res = cli("diagnose", "r.safetensors", "--data", "calib", "-o", "sub/rep.json", "--json", "-q")
    assert res.code == 0, res.stderr
    assert json.loads(Path("sub/rep.json").read_text())["checkpoint"]["path"] == "r.safetensors"
    for strategy in (["-s", "head"], ["-s", "weights", "--utility", "gradient"]):  # the calibration path too
        out = tmp_path / f"o{strategy[1]}.safetensors"
        res = cli("reinit", "--report", "sub/rep.json", *strategy, "-o", out)
        assert res.code == 0, res.stderr
        assert set(load_file(out)) == set(load_file(RESNET))


def test_a_report_beside_its_checkpoint_works_after_both_moved(
    cli: Callable[..., Result], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, resnet_doc: dict[str, Any]
) -> None:
    kept = tmp_path / "moved"
    kept.mkdir()
    shutil.copy(RESNET, kept / "m.safetensors")
    report = _edited(resnet_doc)
    report["checkpoint"]["path"] = "m.safetensors"  # as diagnose wrote it, run inside the old folder
    (kept / "rep.json").write_text(json.dumps(report))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    res = cli("reinit", "--report", kept / "rep.json", "-s", "head", "-o", "o.safetensors")
    assert res.code == 0, res.stderr


# --- 4. two outputs of one command never share a file; --out takes a .json name ---------------------------


def test_two_outputs_on_one_file_are_refused(cli: Callable[..., Result], tmp_path: Path) -> None:
    expect_error(cli("diagnose", RESNET, "--data", CALIB, "-o", tmp_path / "same.png",
                     "--plot", tmp_path / "same.png"), ".json")  # fmt: skip
    (tmp_path / "a.json").write_text("{}")
    (tmp_path / "link.png").symlink_to(tmp_path / "a.json")  # same file, different names
    expect_error(cli("diagnose", RESNET, "--data", CALIB, "-o", tmp_path / "a.json",
                     "--plot", tmp_path / "link.png"), "name the same file")  # fmt: skip
    assert (tmp_path / "a.json").read_text() == "{}"


# --- 5. integer weights never get float init values -------------------------------------------------------


def test_an_int8_classifier_is_refused_not_zeroed(cli: Callable[..., Result], tmp_path: Path) -> None:
    def quantize(state: dict[str, torch.Tensor]) -> None:
        state["fc.weight"] = (state["fc.weight"] * 100).round().to(torch.int8)

    src = _variant(tmp_path / "i8.safetensors", quantize)
    out = tmp_path / "o.safetensors"
    for args in (["-s", "head"], ["-s", "from-block", "--from", "layer4"]):
        expect_error(cli("reinit", src, *args, "-o", out), "fc.weight is int8", "dequantize")
        assert not out.exists()
    # integer buffers (num_batches_tracked) are still reset with the layers around them
    res = cli("reinit", RESNET, "-s", "from-block", "--from", "layer4", "-o", out)
    assert res.code == 0, res.stderr


# --- 6. non-finite weights: diagnose completes and says where; inspect counts them ------------------------


def test_a_nan_weight_is_reported_and_diagnose_still_completes(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    def poison(state: dict[str, torch.Tensor]) -> None:
        state["layer2.0.conv1.weight"].view(-1)[3] = float("nan")

    src = _variant(tmp_path / "nan.safetensors", poison)
    doc = json_doc(cli("diagnose", src, "--data", CALIB, "--max-images", "8", "--json", "-q"))
    assert any("non-finite weights (inf or NaN) in 1 layer(s): layer2.0.conv1" in n for n in doc["notes"])
    by_name = {la["name"]: la for la in doc["layers"]}
    assert by_name["layer2.0.conv1"]["score"] is None  # its output is NaN: unscored, not a made-up score
    assert by_name["conv1.0"]["score"] is not None  # upstream of the NaN: measured as usual
    rec = doc["recommendation"]  # never "fine-tune as is": the NaN layer first, then diagnose again
    assert rec["confidence"] == "low" and rec["action"] == "reinit" and rec["layers"] == ["layer2.0.conv1"]
    assert "non-finite" in rec["reason"] and "diagnose again" in rec["reason"]
    import shlex

    (command,) = rec["commands"]  # runs when pasted, and leaves a finite checkpoint
    assert json_doc(cli(*shlex.split(command)[1:], "--json"))["changed"]
    from safetensors.torch import load_file

    out = shlex.split(command)[shlex.split(command).index("-o") + 1]
    assert all(bool(torch.isfinite(t).all()) for t in load_file(out).values())


def test_inspect_counts_non_finite_values_without_warnings(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    from plastic.pipelines.inspect import inspect_checkpoint

    def poison(state: dict[str, torch.Tensor]) -> None:
        state["layer3.0.conv1.weight"].view(-1)[:2] = float("inf")  # one of the vectorized tensors
        state["layer4.0.conv2.weight"].view(-1)[0] = float("nan")  # a large one (its own pass)

    src = _variant(tmp_path / "bad.safetensors", poison)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's RuntimeWarning would fail here
        report = inspect_checkpoint(src)
    layers = {la.name: la for la in report.layers}
    assert layers["layer3.0.conv1"].metrics is not None
    assert layers["layer3.0.conv1"].metrics["nonfinite"] == 2
    assert layers["layer3.0.conv1"].metrics["near_zero"] is None  # relative to an infinite RMS: no meaning
    big = layers["layer4.0.conv2"].metrics
    assert big is not None and big["nonfinite"] == 1 and big["near_zero"] is None
    assert layers["layer1.0.conv1"].metrics is not None and layers["layer1.0.conv1"].metrics["nonfinite"] == 0
    table = cli("inspect", src)
    assert "nonfinite" in table.stdout and "non-finite values (inf or NaN) in 2 layer(s)" in table.stdout
    assert "nonfinite" not in cli("inspect", RESNET).stdout  # the column appears only when needed


# --- 7. terminal escapes never reach a person's terminal --------------------------------------------------

HOSTILE = {
    "\x1b[31mred.weight": "\\x1b[31mred",
    "\u202eevil.weight": "\\u202eevil",
    "[/x]bad.weight": "[/x]bad",
}


def test_control_bidi_and_markup_in_names_are_shown_escaped(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    def add(state: dict[str, torch.Tensor]) -> None:
        for name in HOSTILE:
            state[name] = torch.ones(3)

    src = _variant(tmp_path / "esc.safetensors", add)
    for fmt in ("table", "markdown"):
        res = cli("inspect", src, "--format", fmt, "--no-stats")
        assert res.code == 0, res.stderr
        assert "\x1b" not in res.stdout and "\u202e" not in res.stdout
        for shown in HOSTILE.values():
            assert shown in res.stdout, (fmt, shown)
    names = {la["name"] for la in json_doc(cli("inspect", src, "--json", "--no-stats"))["layers"]}
    assert {n.rpartition(".")[0] for n in HOSTILE} <= names  # JSON stays exact


def test_html_and_markdown_of_a_diagnosis_escape_names(resnet_doc: dict[str, Any]) -> None:
    from plastic.cli import render

    doc = _edited(resnet_doc)
    doc["layers"][0]["name"] = "\x1b]0;owned\x07\u202elayer"
    doc["checkpoint"]["path"] = "a\x1b[2Jb.safetensors"
    shown = render.for_people(doc)
    for text in (render.diagnose_html(shown, True, None), render.diagnose_markdown(shown, True)):
        assert "\x1b" not in text and "\u202e" not in text and "\x07" not in text
        assert "\\x1b]0;owned\\x07\\u202elayer" in text


# --- 8. preprocessing and architecture fields are checked wherever they come from -------------------------


def _hub(folder: Path, cfg: dict[str, Any] | None = None, **top: Any) -> Path:
    folder.mkdir()
    shutil.copy(RESNET, folder / "model.safetensors")
    pretrained = {"input_size": [3, 32, 32], "mean": [0.5] * 3, "std": [0.5] * 3, **(cfg or {})}
    doc = {"architecture": "test_resnet", "num_classes": 10, "pretrained_cfg": pretrained, **top}
    (folder / "config.json").write_text(json.dumps(doc))
    return folder


@pytest.mark.parametrize(
    ("cfg", "top", "needle"),
    [
        ({"input_size": [3, 0, 0]}, {}, "pretrained_cfg.input_size must have"),
        ({"input_size": [3, -32, -32]}, {}, "pretrained_cfg.input_size must have"),
        ({"input_size": [3, 0.5, 0.5]}, {}, "pretrained_cfg.input_size must be"),
        ({"input_size": [3, 60000, 60000]}, {}, "sides of 1..4096"),
        ({"std": [0, 0, 0]}, {}, "pretrained_cfg.std must be > 0"),
        ({"mean": ["a", "b", "c"]}, {}, "pretrained_cfg.mean must be a list of finite numbers"),
        ({"crop_pct": -1}, {}, "pretrained_cfg.crop_pct must be a number"),
        ({"interpolation": "evil"}, {}, "pretrained_cfg.interpolation must be one of"),
        ({"tag": "evil.tag"}, {}, "pretrained_cfg.tag must be a timm tag"),
        ({"tag": "nosuchtag"}, {}, "is not a pretrained tag of timm's test_resnet"),
        ({}, {"model_args": {"in_chans": -3}}, "model_args.in_chans must be an integer"),
        ({}, {"num_classes": -5}, "num_classes must be an integer"),
    ],
)
def test_a_bad_config_json_names_the_file_and_the_field(
    cli: Callable[..., Result], tmp_path: Path, cfg: dict[str, Any], top: dict[str, Any], needle: str
) -> None:
    hub = _hub(tmp_path / "hub", cfg, **top)
    line = expect_error(cli("reinit", hub, "-s", "head", "--dry-run"), needle)
    assert str(hub / "config.json") in line


def test_deep_and_huge_config_files_are_refused_without_reading_them_whole(tmp_path: Path) -> None:
    from plastic.files.hub_config import MAX_CONFIG_BYTES, read_hub_config

    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "config.json").write_text('{"architecture": "x", "a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(CheckpointError, match="nested too deeply"):
        read_hub_config(deep)
    huge = tmp_path / "huge"
    huge.mkdir()
    with open(huge / "config.json", "wb") as f:  # sparse: 2 GiB on paper, nothing on disk
        f.truncate(2 << 30)
    with pytest.raises(CheckpointError, match=f"larger than {MAX_CONFIG_BYTES >> 20} MiB"):
        read_hub_config(huge)


def test_an_unknown_tag_in_arch_is_a_clear_error(cli: Callable[..., Result]) -> None:
    expect_error(cli("reinit", RESNET, "-s", "head", "--dry-run", "--arch", "test_resnet.nosuchtag"),
                 "--arch: 'nosuchtag' is not a pretrained tag", "r160_in1k")  # fmt: skip


@pytest.mark.parametrize("text", ["3,0,0", "3,-32,-32", "3,60000,60000", "three", "3,32"])
def test_bad_input_size_metadata_is_named_with_the_way_out(text: str) -> None:
    from plastic.measure.calib import metadata_input_size

    with pytest.raises(CheckpointError, match=r"metadata input_size.*input_size"):
        metadata_input_size(text)
    assert metadata_input_size("1x28x28") == (1, 28, 28)


# --- 9. hand-edited reports: every field reinit reads is checked ------------------------------------------


@pytest.mark.parametrize(
    ("edit", "needle"),
    [
        (lambda d: d["layers"][0].update(score=10**400), "'layers[0].score' must be a finite number"),
        (lambda d: d["recommendation"].update(layers=[1]), "'recommendation.layers[0]' must be a layer name"),
        (lambda d: d["recommendation"].update(options=[1]), "'recommendation.options' must be an object"),
        (lambda d: d["recommendation"].update(layers=["no.such"]), "names 'no.such', not a layer"),
        (lambda d: d["blocks"][0].update(layers=["no.such"]), "'blocks[0].layers[0]' names 'no.such'"),
        (lambda d: d["stages"][0].update(layers=["no.such"]), "'stages[0].layers[0]' names 'no.such'"),
        (lambda d: d["layers"][0].update(dormant_units=[999]), "'layers[0].dormant_units[0]' must be a unit"),
        (lambda d: d["layers"][0].update(dormant_units=[10**30]), "dormant_units[0]"),
        (lambda d: d["layers"][0].update(dormant_units=[True]), "dormant_units[0]"),
        (lambda d: d["layers"][0].update(classifier="no"), "'layers[0].classifier' must be true, false"),
        (lambda d: d.update(schema_version=True), "schema_version True"),
        (lambda d: d.update(data_config=[1]), "'data_config' must be an object"),
        (lambda d: d.update(data_config="x"), "'data_config' must be an object"),
        (lambda d: d["data_config"].update(mean=["a", "b", "c"]), "'data_config.mean' must be a list"),
        (lambda d: d["data_config"].update(input_size=[3, 0, 0]), "'data_config.input_size' must have"),
        (
            lambda d: (
                d.update(recommendation=None)
                or [la["metrics"].update(dormant_frac="x") for la in d["layers"]]
            ),
            "'layers[0].metrics.dormant_frac' must be a finite number",
        ),
    ],
)
def test_a_hand_edited_report_is_refused_at_the_field_it_broke(
    resnet_doc: dict[str, Any], edit: Callable[[dict[str, Any]], Any], needle: str
) -> None:
    from plastic.documents.reports import parse_report

    doc = _edited(resnet_doc)
    edit(doc)
    with pytest.raises(UsageError, match=".*".join(map(_re, needle.split("*")))):
        parse_report(json.dumps(doc))


def _re(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize("null", ["calibration", "data_config", "arch", "options", "recommendation"])
def test_null_sections_of_a_report_are_read_as_absent(
    cli: Callable[..., Result], tmp_path: Path, resnet_doc: dict[str, Any], null: str
) -> None:
    doc = _edited(resnet_doc, **{null: None})
    doc["checkpoint"]["path"] = str(RESNET)
    rep = tmp_path / "r.json"
    rep.write_text(json.dumps(doc))
    for strategy in ("auto", "dormant-units", "weights"):
        res = cli("reinit", "--report", rep, "-s", strategy, "--dry-run")
        assert res.code == 0, (strategy, res.stderr)
    if null == "calibration":  # the gradient probe needs the folder: said so, not a crash
        res = cli("reinit", "--report", rep, "-s", "weights", "--utility", "gradient", "--dry-run")
        expect_error(res, "needs --data DIR")
