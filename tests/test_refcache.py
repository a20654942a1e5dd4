"""The fresh reference's cache: a warm run reads exactly what a cold run measured, and anything that
could change the reference (the images, the seed, tau, the preprocessing), or an entry that is not
sound, means measuring afresh."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from plastic.pipelines.diagnose import diagnose
from tests.conftest import CALIB, RESNET


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("PLASTIC_CACHE_DIR", str(folder))
    return folder


@pytest.fixture
def calib(tmp_path: Path) -> Path:
    """Twelve sample images in three class folders (a copy: the tests change files in it)."""
    out = tmp_path / "calib"
    for cls in sorted(p.name for p in CALIB.iterdir())[:3]:
        (out / cls).mkdir(parents=True)
        for f in sorted((CALIB / cls).iterdir())[:4]:
            shutil.copy(f, out / cls / f.name)
    return out


def _run(calib: Path, **kw: Any) -> dict[str, Any]:
    doc = dict(diagnose(RESNET, calib, max_images=12, device="cpu", **kw).to_dict())
    return doc


def _entries(cache: Path) -> list[Path]:
    return sorted((cache / "reference").glob("*.json")) if (cache / "reference").exists() else []


def test_a_warm_run_reads_what_the_cold_run_measured(cache: Path, calib: Path) -> None:
    cold = _run(calib)
    assert cold["timing"]["reference_cached"] == 0 and len(_entries(cache)) == 1
    warm = _run(calib)
    assert warm["timing"]["reference_cached"] == 1
    cold.pop("timing"), warm.pop("timing")
    assert warm == cold  # the same report, byte for byte in JSON
    uncached = _run(calib, cache=False)
    uncached.pop("timing")
    assert uncached == cold


def test_what_the_reference_depends_on_is_in_the_key(cache: Path, calib: Path) -> None:
    _run(calib)
    assert _run(calib, seed=1)["timing"]["reference_cached"] == 0
    assert _run(calib, tau=0.05)["timing"]["reference_cached"] == 0
    assert _run(calib, input_size=(3, 48, 48))["timing"]["reference_cached"] == 0
    assert _run(calib, reference_images=6)["timing"]["reference_cached"] == 0
    first = sorted(calib.rglob("*.png"))
    shutil.copy(first[1], first[0])  # same name, other pixels
    assert _run(calib)["timing"]["reference_cached"] == 0
    assert len(_entries(cache)) == 6


def test_an_entry_from_code_that_measured_less_is_a_miss(
    cache: Path, calib: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Within one plastic version the metrics measured can grow (attention entropy in more families):
    an entry from before that is measured afresh, not read as a reference without them."""
    import plastic.measure.refcache as refcache

    with monkeypatch.context() as m:
        m.setattr(refcache, "MEASURED", refcache.MEASURED - 1)
        _run(calib)
    assert _run(calib)["timing"]["reference_cached"] == 0
    assert _run(calib)["timing"]["reference_cached"] == 1


DAMAGE = [
    lambda doc: "not json {",
    lambda doc: json.dumps({**doc, "format": 99}),
    lambda doc: json.dumps({**doc, "key": {**doc["key"], "seed": 5}}),  # another run's entry
    lambda doc: json.dumps({**doc, "layers": {"conv1": {}}}),  # not this model's layers
    lambda doc: json.dumps({**doc, "images": -1}),
    lambda doc: json.dumps(doc).replace('"grad_ratio": 0', '"grad_ratio": "x"', 1),
    lambda doc: json.dumps(doc).replace(', "grad_ratio": ', ', "grad_ratio": NaN, "x": ', 1),
    lambda doc: json.dumps({k: v for k, v in doc.items() if k != "spread"}),  # a format-1 entry, relabelled
    lambda doc: json.dumps({**doc, "spread": {"no_such_layer": {}}}),
    lambda doc: json.dumps({**doc, "spread": {k: {"grad_decades": "x"} for k in doc["spread"]}}),
]


def test_an_unsound_entry_is_measured_afresh(cache: Path, calib: Path) -> None:
    cold = _run(calib)
    cold.pop("timing")
    (entry,) = _entries(cache)
    sound = json.loads(entry.read_text())
    for i, damage in enumerate(DAMAGE):
        entry.write_text(damage(sound))
        again = _run(calib)
        assert again.pop("timing")["reference_cached"] == 0, i
        assert again == cold, i
        assert json.loads(entry.read_text()) == sound, i  # rewritten from the fresh measurement


def test_no_cache_neither_reads_nor_writes(cache: Path, calib: Path) -> None:
    assert _run(calib, cache=False)["timing"]["reference_cached"] == 0
    assert not _entries(cache)
    _run(calib)
    assert _run(calib, cache=False)["timing"]["reference_cached"] == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder")
def test_an_unwritable_cache_folder_does_not_stop_the_run(cache: Path, calib: Path) -> None:
    cache.mkdir()
    cache.chmod(0o500)
    try:
        assert _run(calib)["recommendation"] is not None
    finally:
        cache.chmod(0o700)


def test_a_cache_path_that_is_a_file_does_not_stop_the_run(cache: Path, calib: Path) -> None:
    cache.write_text("not a folder")
    assert _run(calib)["timing"]["reference_cached"] == 0
    assert _run(calib)["timing"]["reference_cached"] == 0


def test_the_cli_says_when_the_reference_came_from_the_cache(cache: Path, calib: Path, cli) -> None:  # type: ignore[no-untyped-def]
    args = ("diagnose", RESNET, "--data", calib, "--max-images", "12")
    first = cli(*args)
    assert first.code == 0, first.stderr
    second = cli(*args)
    said = "reference from the cache"
    assert said in second.stdout + second.stderr and said not in first.stdout + first.stderr
    assert cli(*args, "--no-cache").code == 0
