"""The package's imports: no cycle between subpackages or modules, and no library module on the workflow layer.

Every ``import`` and ``from ... import`` of every module under src/cryosift is read with ``ast``,
at module level and inside functions alike (a function-level import hides a cycle from Python,
not from the design). A subpackage is a package folder (``cryosift.engines.cryosparc`` and
``cryosift.engines`` are two); a module at the top (``cryosift.fourier``) is a unit of its own.
"""

from __future__ import annotations

import ast
from pathlib import Path


SRC = Path(__file__).resolve().parents[1] / "src"

def _modules() -> dict[str, tuple[Path, bool]]:
    out = {}
    for path in sorted((SRC / "cryosift").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _targets(module: str, is_package: bool, node) -> list[str]:
    """The modules an import statement names (for ``from X import y``: X.y when it is a module, else X)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[:len(package) - node.level + 1]
        base = ".".join(package + ([base] if base else []))
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]


def import_edges() -> dict[str, dict[str, list[str]]]:
    """module -> imported module -> ["path:line", ...] for every import anywhere in the module."""
    edges: dict[str, dict[str, list[str]]] = {}
    for module, (path, is_package) in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.Import, ast.ImportFrom)):
                continue
            for target in _targets(module, is_package, node):
                while target not in MODULES and "." in target:  # a name inside a module: the module
                    target = target.rsplit(".", 1)[0]
                if target in MODULES and target != module:
                    where = f"{path.relative_to(SRC.parent)}:{node.lineno}"
                    edges.setdefault(module, {}).setdefault(target, []).append(where)
                elif not target.startswith("cryosift"):
                    edges.setdefault(module, {}).setdefault(target, []).append(
                        f"{path.relative_to(SRC.parent)}:{node.lineno}")
    return edges


def unit(module: str) -> str:
    """The subpackage (package folder) a module belongs to; a top-level module is its own."""
    path, is_package = MODULES[module]
    return module if is_package or module.count(".") == 1 else module.rsplit(".", 1)[0]


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's components with more than one node: the import cycles."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def cycles(edges) -> list[tuple[list[str], list[str]]]:
    """Cycles between subpackages, then between modules: (members, the imports that close them)."""
    out = []
    for level in (unit, lambda m: m):
        graph: dict[str, set[str]] = {}
        why: dict[tuple[str, str], list[str]] = {}
        for a, targets in edges.items():
            for b, where in targets.items():
                if b not in MODULES or level(a) == level(b):
                    continue
                graph.setdefault(level(a), set()).add(level(b))
                why.setdefault((level(a), level(b)), []).append(f"{a} -> {b} ({where[0]})")
        for members in strongly_connected(graph):
            inside = [line for (a, b), lines in sorted(why.items()) if a in members and b in members for line in lines]
            out.append((members, inside))
    return out


def describe(found) -> str:
    """Each cycle with, per pair of its members, the first import that links them (and how many more)."""
    text = []
    for members, lines in found:
        pairs: dict[tuple[str, str], list[str]] = {}
        for line in lines:
            pairs.setdefault((unit_of(line, 0, members), unit_of(line, 1, members)), []).append(line)
        text.append(f"cycle {' <-> '.join(members)}:")
        text += [f"    {a} -> {b}: {ls[0]}" + (f" and {len(ls) - 1} more" if len(ls) > 1 else "")
                 for (a, b), ls in sorted(pairs.items())]
    return "\n".join(text)


def unit_of(line: str, side: int, members) -> str:
    """The member of a cycle that an import line's importer (side 0) or imported module (1) belongs to."""
    module = line.split(" (")[0].split(" -> ")[side]
    return next(m for m in sorted(members, key=len, reverse=True) if module == m or module.startswith(m + "."))


def test_no_import_cycle_at_all():
    found = cycles(import_edges())
    assert not found, "import cycles:\n" + describe(found)


def test_library_never_imports_the_workflow_layer():
    edges = import_edges()
    bad = [f"{module} imports {target} ({where[0]})" for module, targets in edges.items()
           for target, where in targets.items() if target.split(".")[0] in ("snakemake", "workflow")]
    assert not bad, "\n".join(bad)


def test_the_walk_sees_function_level_imports_and_cycles():
    """The walker itself: a function-level import is an edge, and a planted cycle is found."""
    edges = import_edges()
    assert "cryosift.pipeline.manifest" in edges["cryosift.pipeline.plan"]  # imported inside a function only
    planted = {"cryosift.pipeline.plan": {"cryosift.commands.select": ["x:1"]},
               "cryosift.commands.select": {"cryosift.pipeline.plan": ["y:2"]}}
    found = cycles(planted)
    assert [members for members, _ in found] == [["cryosift.commands", "cryosift.pipeline"],
                                                 ["cryosift.commands.select", "cryosift.pipeline.plan"]]
    assert ("cryosift.pipeline -> cryosift.commands: cryosift.pipeline.plan -> cryosift.commands.select (x:1)"
            in describe(found))
