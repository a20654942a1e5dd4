"""The shell lines a recommendation prints: ``plastic reinit`` on the diagnosed file with the options
that carry it out, pasteable as they are (a test runs them). Written here, where the file's path,
``--key``, ``--arch`` and ``--in-chans`` are known, not by the decision layer (which chooses layers and
knows nothing of shells); they are part of the ``--json`` document, so the library writes them."""

from __future__ import annotations

import shlex
from pathlib import Path

from plastic.decide.recommend import Recommendation


def reinit_commands(
    rec: Recommendation,
    checkpoint: str,
    *,
    arch: str | None,
    key: str | None,
    in_chans: int | None,
) -> list[str]:
    """Shell lines that carry out ``rec`` on ``checkpoint`` as they are, with no report needed:
    ``from-block --from START``, or the chosen layers by name."""
    if rec.action != "reinit":
        return []
    out = _output_name(checkpoint)
    common = []
    if arch:
        common += ["--arch", arch]
    if key:
        common += ["--key", key]
    if in_chans and in_chans != 3:
        common += ["--in-chans", str(in_chans)]
    if rec.strategy == "from-block":
        selection = ["--strategy", "from-block", "--from", str(rec.options["from_block"])]
    else:
        selection = ["--strategy", "layers", *(a for name in rec.layers for a in ("--layers", f"{name}.*"))]
    return [shlex.join(["plastic", "reinit", checkpoint, *selection, *common, "-o", out])]


def _output_name(checkpoint: str) -> str:
    """``m.safetensors`` -> ``m.reinit.safetensors`` beside it; a folder or index gives a .safetensors."""
    p = Path(checkpoint)
    if p.is_dir():
        return str(p / "model.reinit.safetensors")
    name = p.name
    if name.endswith(".safetensors.index.json"):
        return str(p.with_name(name.removesuffix(".safetensors.index.json") + ".reinit.safetensors"))
    for suffix in (".pth.tar", ".safetensors", ".pt", ".pth", ".bin", ".ckpt"):
        if name.endswith(suffix):
            return str(p.with_name(name.removesuffix(suffix) + ".reinit" + suffix))
    return str(p.with_name(name + ".reinit.safetensors"))
