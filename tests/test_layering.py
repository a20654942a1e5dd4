"""The library is a library: importing all of it never pulls in typer, rich or the CLI, and it never
prints or exits (the CLI renders and decides exit codes)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import plastic

LIB = Path(plastic.__file__).resolve().parent
LIBRARY_MODULES = sorted(
    p for p in LIB.rglob("*.py") if "cli" not in p.relative_to(LIB).parts and p.name != "__main__.py"
)


def _module_name(p: Path) -> str:
    parts = p.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_importing_every_library_module_never_imports_the_cli_typer_or_rich() -> None:
    names = [_module_name(p) for p in LIBRARY_MODULES]
    assert len(names) > 20  # the walk found the library
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click')"
        " or m.startswith('plastic.cli'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_library_code_never_prints_or_exits() -> None:
    offenders = []
    for p in LIBRARY_MODULES:
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Call):
                f = node.func
                name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else ""
                if name in ("print", "exit") or (name == "_exit" and isinstance(f, ast.Attribute)):
                    offenders.append(f"{p.name}:{node.lineno} {name}()")
            if isinstance(node, ast.Import | ast.ImportFrom):
                mods = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                offenders += [
                    f"{p.name}:{node.lineno} imports {m}"
                    for m in mods
                    if m.split(".")[0] in ("typer", "rich") or m.startswith("plastic.cli")
                ]
    assert not offenders, offenders
