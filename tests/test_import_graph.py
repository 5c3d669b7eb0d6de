"""The package's import graph has no circle: no module imports (at its top) one that imports it back, directly or
through a package ``__init__``. A circle is what function-local imports used to hide."""

from __future__ import annotations

import ast
from pathlib import Path

import dcl_cstp_ext

ROOT = Path(dcl_cstp_ext.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT.parent).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def import_graph() -> dict[str, set[str]]:
    """``{module: the package modules it imports at its top level}``, relative imports resolved."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.parse(path.read_text()).body:
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                parts = package.split(".")
                target = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            deps |= {t for t in [target, *(f"{target}.{a.name}" for a in node.names)] if t in modules}
        # importing a.b.c first runs a/__init__ and a/b/__init__: a package outside the importer's own ones is
        # imported too (``from ..pipeline.presets import x`` in reports/ runs pipeline/__init__)
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        deps |= {parent for dep in deps for i in range(1, dep.count(".") + 1)
                 if (parent := ".".join(dep.split(".")[:i])) in modules and parent not in own}
        graph[name] = deps - {name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circles():
    graph = import_graph()
    assert len(graph) > 50 and graph["dcl_cstp_ext.pipeline.pipeline"]  # the graph was read
    assert cycles(graph) == []


def test_a_circle_is_found():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
