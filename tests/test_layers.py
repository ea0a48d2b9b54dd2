"""The layering of the package, as written in the README's Architecture section.

import-linter (run by ``make test`` before pytest) checks that each stage imports
only downward; these tests check what its contract cannot see: the kernels
(installed from ``kernels/``) and import cycles inside a stage, and that no
private name is imported from another module.
"""

from __future__ import annotations

import ast
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(module, names) of every ``import``/``from ... import`` in a file, at any depth."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name, []) for a in node.names)
    return out


def test_kernels_import_nothing_of_gwfollow() -> None:
    bad = [(p.name, m) for p in sorted((ROOT / "kernels").glob("*.py")) for m, _ in _imports(p)
           if m.startswith("gwfollow") and not m.startswith("gwfollow.kernels")]
    assert bad == []


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("gwfollow")
    modules = sorted(m for m in graph.modules if m.startswith("gwfollow"))
    # Tarjan's strongly connected components over module -> imported module.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.find_modules_directly_imported_by(v)):
            if not w.startswith("gwfollow"):
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            # A package importing its own sub-modules (its __init__) is not a cycle of the flow.
            comp = [c for c in comp if not any(o != c and o.startswith(c + ".") for o in comp)]
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for m in modules:
        if m not in index:
            visit(m)
    assert cycles == []


def test_no_private_name_crosses_a_module() -> None:
    bad = []
    for p in sorted((ROOT / "gwfollow").rglob("*.py")):
        for module, names in _imports(p):
            if module.startswith("gwfollow"):
                bad.extend(f"{p.relative_to(ROOT)}: {module}.{n}" for n in names
                           if n.startswith("_") and not n.startswith("__"))
    assert bad == []
