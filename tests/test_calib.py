"""Calibration folders: discovery rules, odd and corrupt images, labels, sampling."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from plastic.errors import DataError
from plastic.measure.calib import IMAGE_EXTENSIONS, load_image, scan_folder, to_rgb
from tests.conftest import CALIB


def _png(path: Path, img: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def make_odd_folder(root: Path) -> dict[str, Path]:
    """A class folder of every image kind the issue lists, plus broken files; returns them by kind."""
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
    made = {
        "gray": _png(root / "a" / "gray.png", Image.fromarray(rgb[..., 0], mode="L")),
        "palette": _png(root / "a" / "palette.PNG", Image.fromarray(rgb).convert("P")),
        "rgba": _png(root / "a" / "rgba.png", Image.fromarray(np.dstack([rgb, rgb[..., :1]]), mode="RGBA")),
        "gray16": _png(root / "b" / "deep.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)),
        "jpeg": root / "b" / "photo.JPG",
        "cmyk": root / "b" / "print.jpeg",
        "webp": root / "b" / "web.webp",
        "bmp": root / "b" / "old.bmp",
        "gif": root / "b" / "anim.gif",
        "tiff": root / "b" / "scan.tif",
    }
    Image.fromarray(rgb).save(made["jpeg"], format="JPEG")
    Image.fromarray(rgb).convert("CMYK").save(made["cmyk"], format="JPEG")
    Image.fromarray(rgb).save(made["webp"], format="WEBP")
    Image.fromarray(rgb).save(made["bmp"], format="BMP")
    Image.fromarray(rgb).save(made["gif"], format="GIF")
    Image.fromarray(rgb).save(made["tiff"], format="TIFF")
    good = io.BytesIO()
    Image.fromarray(rgb).save(good, format="PNG")
    made["truncated"] = root / "b" / "cut.png"
    made["truncated"].write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    made["noise"] = root / "a" / "noise.jpg"
    made["noise"].write_bytes(rng.bytes(500))
    made["empty"] = root / "a" / "empty.png"
    made["empty"].touch()
    (root / "a" / ".hidden.png").write_bytes(good.getvalue())
    (root / ".cache").mkdir()
    (root / ".cache" / "x.png").write_bytes(good.getvalue())
    (root / "a" / "notes.txt").write_text("not an image")
    return made


def test_scan_rules(tmp_path: Path) -> None:
    made = make_odd_folder(tmp_path)
    calib = scan_folder(tmp_path)
    names = {f.name for f in calib.files}
    assert names == {p.name for p in made.values()}  # hidden, .txt and dot-folders ignored
    assert calib.class_names == ["a", "b"]
    assert calib.labels is not None
    assert all(
        calib.class_names[lab] == f.parent.name for f, lab in zip(calib.files, calib.labels, strict=True)
    )
    assert calib.files == sorted(calib.files)  # deterministic order


@pytest.mark.parametrize(
    "kind", ["gray", "palette", "rgba", "gray16", "jpeg", "cmyk", "webp", "bmp", "gif", "tiff"]
)
def test_every_readable_kind_becomes_rgb(tmp_path: Path, kind: str) -> None:
    made = make_odd_folder(tmp_path)
    img = load_image(made[kind])
    assert img.mode == "RGB" and img.size == (24, 20)


def test_sixteen_bit_keeps_its_range(tmp_path: Path) -> None:
    ramp = (np.arange(256, dtype=np.uint16) * 257).reshape(16, 16)  # 0..65535
    img = to_rgb(Image.fromarray(ramp))
    a = np.asarray(img)[..., 0]
    assert a.min() == 0 and a.max() == 255 and len(np.unique(a)) == 256


@pytest.mark.parametrize("kind", ["truncated", "noise", "empty"])
def test_broken_files_raise(tmp_path: Path, kind: str) -> None:
    made = make_odd_folder(tmp_path)
    with pytest.raises(Exception):  # noqa: B017 - PIL raises several types; the dataset catches them all
        load_image(made[kind])


def test_flat_folder_has_no_labels(tmp_path: Path) -> None:
    for i in range(3):
        _png(tmp_path / f"{i}.png", Image.new("RGB", (8, 8), (i, i, i)))
    calib = scan_folder(tmp_path)
    assert calib.labels is None and calib.class_names == []


def test_sampling_is_seeded_and_spread_over_classes() -> None:
    a = scan_folder(CALIB, max_images=20, seed=0)
    b = scan_folder(CALIB, max_images=20, seed=0)
    c = scan_folder(CALIB, max_images=20, seed=1)
    assert a.files == b.files and a.files != c.files
    assert a.found == 80 and len(a.files) == 20
    assert a.labels is not None and sorted(set(a.labels)) == list(range(10))  # two per class


def test_missing_and_empty_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such folder"):
        scan_folder(tmp_path / "nope")
    with pytest.raises(DataError, match="no images found"):
        scan_folder(tmp_path)
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(DataError, match="not a folder"):
        scan_folder(tmp_path / "f.png")


def test_extensions_cover_the_issue_list() -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"} == IMAGE_EXTENSIONS
