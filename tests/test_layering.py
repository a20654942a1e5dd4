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


# The declared order, lowest first (ARCHITECTURE.md): a module may import its own layer and the ones
# before it, never one after. `errors` and `documents` (the schema, the field checks, reading a report
# back) are the base every layer may use; `api` and `cli` sit on top.
LAYERS = ["errors", "documents", "files", "model", "measure", "decide", "reinit", "pipelines", "api", "cli"]


def _layer_of(module: str) -> str | None:
    """``plastic.measure.calib`` -> ``measure``; the package itself (``plastic``) has no layer."""
    parts = module.split(".")
    if parts[0] != "plastic" or len(parts) < 2:
        return None
    return "root" if parts[1] in ("__init__", "__main__") else parts[1]


def upward_imports(source: str, layer: str, where: str) -> list[str]:
    """Every import in ``source`` (module level or inside a function) of a later layer than ``layer``."""
    rank = {name: i for i, name in enumerate(LAYERS)}
    found = []
    for node in ast.walk(ast.parse(source, where)):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module]
        for t in targets:
            other = _layer_of(t)
            if other is not None and other != layer and other in rank and rank[other] > rank[layer]:
                found.append(f"{where}:{node.lineno} ({layer}) imports {t} ({other})")
    return found


def test_every_layer_imports_only_its_own_and_lower_layers() -> None:
    offenders = []
    for p in sorted(LIB.rglob("*.py")):
        rel = p.relative_to(LIB)
        layer = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 or rel.stem in LAYERS else "root"
        if layer == "root":  # plastic/__init__.py and __main__.py: the package's doors, above everything
            continue
        assert layer in LAYERS, (
            f"{rel}: a folder not in the declared order; add it to LAYERS and ARCHITECTURE.md"
        )
        offenders += upward_imports(p.read_text(), layer, str(rel))
    assert not offenders, offenders


def test_the_layer_check_catches_an_upward_import() -> None:
    """The known answer: a files-layer module importing the diagnose pipeline, even lazily, is caught."""
    source = "def f():\n    from plastic.pipelines.diagnose import diagnose\n    return diagnose\n"
    assert upward_imports(source, "files", "files/x.py") == [
        "files/x.py:2 (files) imports plastic.pipelines.diagnose (pipelines)"
    ]
    assert upward_imports("import plastic.files.atomic\n", "reinit", "reinit/x.py") == []


def _module_graph() -> dict[str, set[str]]:
    """Every library module -> the library modules it imports, at module level, inside a function or
    under ``TYPE_CHECKING`` alike (an import in a function is still a dependency, only a later one).
    ``from plastic.cli import render`` names the submodule ``plastic.cli.render``."""
    modules = {_module_name(p): p for p in sorted(LIB.rglob("*.py"))}
    graph: dict[str, set[str]] = {}
    for name, p in modules.items():
        deps: set[str] = set()
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if isinstance(node, ast.Import):
                deps.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    sub = f"{node.module}.{a.name}"
                    deps.add(sub if sub in modules else node.module)
        graph[name] = {d for d in deps if d in modules and d != name}
    return graph


def loops_within_layers(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles among the modules of one layer (groups of two or more that each reach all
    the others): inside a folder, too, a newcomer reads the modules in one order, lowest first."""
    layer = {m: _layer_of(m) for m in graph}

    def reach(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for w in graph.get(todo.pop(), set()):
                if layer.get(w) == layer[start] and w not in seen:
                    seen.add(w)
                    todo.append(w)
        return seen

    reached = {m: reach(m) for m in graph}
    circles: list[list[str]] = []
    for m in sorted(graph):
        circle = sorted({m} | {w for w in reached[m] if m in reached[w]})
        if len(circle) > 1 and circle not in circles:
            circles.append(circle)
    return circles


def test_no_import_circles_inside_a_layer() -> None:
    assert loops_within_layers(_module_graph()) == []


def test_the_circle_check_catches_a_lazy_circle() -> None:
    """The known answer: two modules of one layer that import each other (one of them inside a
    function) are one circle; the same two in different layers are the upward-import test's business."""
    graph = {
        "plastic.pipelines.a": {"plastic.pipelines.b"},
        "plastic.pipelines.b": {"plastic.pipelines.a"},
        "plastic.measure.c": {"plastic.files.d"},
        "plastic.files.d": set(),
    }
    assert loops_within_layers(graph) == [["plastic.pipelines.a", "plastic.pipelines.b"]]
