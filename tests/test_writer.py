"""The output writer: byte-exact kernel copies whatever the file system offers, the writeback it asks
for, and a source that changes under it."""

from __future__ import annotations

import itertools
import os
import shutil
from pathlib import Path

import pytest

from plastic.errors import CheckpointError
from plastic.files.checkpoint import open_checkpoint
from tests.conftest import RESNET


def test_source_truncated_while_copying_leaves_no_output(tmp_path: Path) -> None:
    from plastic.files.writer import write_safetensors

    src, out = tmp_path / "m.safetensors", tmp_path / "out.safetensors"
    shutil.copy(RESNET, src)
    with open_checkpoint(src) as ckpt:
        os.truncate(src, src.stat().st_size // 2)
        with pytest.raises(CheckpointError, match="truncated or replaced"):
            write_safetensors(ckpt, out, lambda _info: None, {})
    assert not out.exists() and not list(tmp_path.glob(".*tmp*"))


@pytest.mark.parametrize("kernel", ["copy_file_range", "sendfile", "neither"])
def test_raw_copy_is_byte_exact_whichever_kernel_call_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kernel: str
) -> None:
    """Filesystems without copy_file_range (EXDEV, EINVAL...) fall back to sendfile, then to read/write."""
    import errno

    from plastic.files.writer import write_safetensors

    def refuse(*_a: object, **_k: object) -> int:
        raise OSError(errno.EXDEV, "not here")

    if kernel != "copy_file_range":
        monkeypatch.setattr(os, "copy_file_range", refuse)
    if kernel == "neither":
        monkeypatch.setattr(os, "sendfile", refuse)
    out = tmp_path / "out.safetensors"
    with open_checkpoint(RESNET) as ckpt:
        write_safetensors(ckpt, out, lambda _info: None, dict(ckpt.metadata))

    def data(p: Path) -> bytes:  # the bytes after the header (the header's JSON spacing is ours)
        raw = p.read_bytes()
        return raw[8 + int.from_bytes(raw[:8], "little") :]

    assert data(out) == data(RESNET) and len(data(RESNET)) > 1_000_000


def test_writeback_is_started_for_exactly_the_copied_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The copy asks the kernel to start writing each chunk it copied (so the final fsync has little
    left): the ranges asked for are the output's data, back to back, in order."""
    from plastic.files import writer

    asked: list[tuple[int, int]] = []
    monkeypatch.setattr(writer, "COPY_CHUNK", 1 << 16)  # several chunks
    record = lambda _fd, off, n, _flags: asked.append((off, n))  # noqa: E731
    monkeypatch.setattr(writer, "_sync_file_range", lambda: record)
    out = tmp_path / "out.safetensors"
    with open_checkpoint(RESNET) as ckpt:
        writer.write_safetensors(ckpt, out, lambda _info: None, {})
    raw = out.read_bytes()
    start = 8 + int.from_bytes(raw[:8], "little")
    assert len(asked) > 2 and asked[0][0] == start
    assert all(a + n == b for (a, n), (b, _) in itertools.pairwise(asked))
    assert asked[-1][0] + asked[-1][1] == len(raw)


def test_writeback_hint_is_harmless_where_it_does_not_apply() -> None:
    """On a pipe (or a system without sync_file_range) the hint does nothing and raises nothing."""
    from plastic.files.writer import start_writeback

    r, w = os.pipe()
    try:
        os.write(w, b"x")
        start_writeback(w, 0, 1)
        assert os.read(r, 1) == b"x"
    finally:
        os.close(r)
        os.close(w)
