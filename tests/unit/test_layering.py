"""Imports point one way: config/registry/stats/fmt <- store <- lm <- subliminal/mlp <- mech, analysis <- hypothesis <- report <- runner/sweep <- cli.

Walks every module of the package with `ast` (function-level imports and imports under
`if TYPE_CHECKING:` included: a type-only import is still an edge) and fails on an edge that
points up the order, and on an import cycle between modules. `KNOWN_UPWARD` lists the edges that still point up (each a place to fix,
named in an open issue); the test also fails when one of them disappears, so the list only
shrinks.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "interp"

# Module (or package prefix) -> layer; the longest matching prefix wins.
LAYERS = {
    "interp": 0, "interp.config": 0, "interp.fmt": 0, "interp.registry": 0, "interp.stats": 0,
    "interp.store": 1, "interp.plots": 1,
    "interp.lm": 2,
    "interp.subliminal": 3, "interp.mlp": 3,
    "interp.mech": 4, "interp.analysis": 4,
    "interp.hypothesis": 5,
    "interp.report": 6,
    "interp.runner": 7, "interp.sweep": 7, "interp.bench": 7,
    "interp.cli": 8,
}  # fmt: skip

# Edges that still point up (importer, imported). Remove an entry when its edge is gone.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    me = module_name(path)
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("interp")}
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import (the package uses absolute imports)"
            base = node.module or ""
            if base.startswith("interp"):
                for a in node.names:  # `from interp.subliminal import number_data as numbers` imports a module
                    full = f"{base}.{a.name}"
                    out.add(full if (PKG.parent / (full.replace(".", "/") + ".py")).exists() else base)
    return out - {me}


def graph() -> dict[str, set[str]]:
    return {module_name(p): imports(p) for p in sorted(PKG.rglob("*.py"))}


def test_no_import_points_up_the_layer_order():
    upward = {(m, d) for m, deps in graph().items() for d in deps if layer(d) > layer(m)}
    new = upward - KNOWN_UPWARD
    assert not new, f"imports pointing up the layer order: {sorted(new)}"
    fixed = KNOWN_UPWARD - upward
    assert not fixed, f"these upward edges are gone, remove them from KNOWN_UPWARD: {sorted(fixed)}"


# Cycles that still exist (each in an open issue); the test fails on a new one or a fixed one.
KNOWN_CYCLES: set[frozenset[str]] = set()


def test_no_import_cycles_between_modules():
    g = graph()
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for d in sorted(g.get(m, ())):
            if d not in g:
                continue
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d] if d in stack else [m, d])
            elif d not in state:
                visit(d, [*stack, d])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])
    found = {frozenset(c) for c in cycles}
    assert not found - KNOWN_CYCLES, f"new import cycles: {sorted(map(sorted, found - KNOWN_CYCLES))}"
    assert not KNOWN_CYCLES - found, f"cycles gone, remove from KNOWN_CYCLES: {KNOWN_CYCLES - found}"


def test_the_walker_sees_function_level_and_type_checking_imports(tmp_path):
    pkg = tmp_path / "interp"
    pkg.mkdir()
    f = pkg / "mod.py"
    f.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from interp.cli import main\n"
        "def g():\n    from interp.report.build import build_report\n    import interp.stats\n"
    )
    global PKG
    old, PKG = PKG, pkg
    try:
        assert imports(f) == {"interp.cli", "interp.report.build", "interp.stats"}
    finally:
        PKG = old
