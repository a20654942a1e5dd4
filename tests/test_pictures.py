"""diagnose --plot and --format html: written, non-trivial, carrying the verdict and the findings."""

from __future__ import annotations

import json
import re
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import CALIB, RESNET, Result, expect_error

pytest.importorskip("matplotlib")

FAST = ("--device", "cpu", "--max-images", "16")


def test_plot_png_and_svg_are_real_pictures_of_the_report(cli: Callable[..., Result], tmp_path: Path) -> None:
    png, report = tmp_path / "scores.png", tmp_path / "r.json"
    res = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--plot", png, "--out", report, "--json")
    assert res.code == 0, res.stderr
    raw = png.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", raw[16:24])  # the IHDR chunk
    assert width >= 800 and height >= 400 and len(raw) > 20_000
    svg = tmp_path / "scores.svg"
    assert cli("diagnose", RESNET, "--data", CALIB, *FAST, "--plot", svg, "--json").code == 0
    text = svg.read_text()
    doc = json.loads(report.read_text())
    scored = [la["name"] for la in doc["layers"] if la["score"] is not None]
    assert "<svg" in text and all(name in text for name in scored)  # every scored layer is labelled
    chosen = doc["recommendation"]["layers"]
    assert chosen and f"re-initialize {len(chosen)}" in text


def test_plot_is_byte_identical_for_the_same_report(tmp_path: Path) -> None:
    from plastic.cli.plot import plot_bytes

    doc = {
        "arch": {"name": "m"},
        "recommendation": {"layers": ["b"], "threshold": 0.1},
        "layers": [
            {"name": "a", "score": 0.05, "block": "x", "components": {"dormant": 0.1, "saturated": 0.0}},
            {"name": "b", "score": 0.3, "block": "y", "components": {"starved": 0.6, "dormant": 0.0}},
            {"name": "c", "score": None, "block": "y", "components": {}},
        ],
    }
    for fmt in ("png", "svg", "pdf"):
        first = plot_bytes(doc, fmt)
        time.sleep(1.01)  # a date with seconds in the file would show
        assert plot_bytes(doc, fmt) == first, fmt


def test_plot_refuses_other_names_and_inputs(cli: Callable[..., Result], tmp_path: Path) -> None:
    expect_error(cli("diagnose", RESNET, "--data", CALIB, "--plot", tmp_path / "x.jpg"), ".png, .svg, .pdf")
    image = next(CALIB.rglob("*.png"))  # a calibration image is an input: never drawn over
    expect_error(cli("diagnose", RESNET, "--data", CALIB, "--plot", image), "refusing to overwrite the input")
    assert not list(tmp_path.iterdir())


def test_html_is_one_self_contained_page_with_verdict_plot_table_and_findings(
    cli: Callable[..., Result],
) -> None:
    res = cli("diagnose", RESNET, "--data", CALIB, *FAST, "--format", "html", "--fail-on", "score>=0.1")
    assert res.code == 1, res.stderr  # a finding: the exit code is unchanged by the format
    page = res.stdout
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)  # nothing fetched from outside
    assert "<svg" in page and "Layers by saturation score" in page
    assert "finding(s) over --fail-on" in page and "score&gt;=0.1" in page
    embedded = page.split("<!-- plastic diagnose --json\n", 1)[1].rsplit("\n-->", 1)[0]
    doc = json.loads(embedded.replace("- -", "--"))
    assert doc["findings"] and doc["recommendation"]["reason"].split(":")[0] in page
    chosen = re.findall(r'<tr class="chosen">(.*?)</tr>', page)
    names = re.findall(r'<td class="name">([^<]+)</td>', page)  # every row's name cells
    shown = [n for n in doc["recommendation"]["layers"] if n in names]
    assert shown and len(chosen) >= len(shown)  # each chosen layer the table shows is marked
    for name in shown:
        assert any(f">{name}<" in row for row in chosen), name


def test_html_is_for_diagnose_only(cli: Callable[..., Result]) -> None:
    """inspect's and reinit's --help offer only what they accept: html is diagnose's alone."""
    for command in ("inspect", "reinit"):
        expect_error(cli(command, RESNET, "--format", "html"), "'html' is not one of")
        assert "<table|json|markdown>" in cli(command, "--help").stdout
    assert "<table|json|markdown|html>" in cli("diagnose", "--help").stdout
