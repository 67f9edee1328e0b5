"""The import graph: layers only point down, and no module imports itself back (ARCHITECTURE.md).

Every import counts, module-level or inside a function (a local import must not hide a cycle),
``TYPE_CHECKING`` ones too. There is no list of exceptions.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tasks", "prompts", "models", "graph", "nodes")
#: The graph core: what a run is (state, context), where it is kept (storage, memory) and how it
#: is routed; nodes build on it, the builder wires nodes, the front doors use builder and core.
CORE = {
    "graph",
    "graph.context",
    "graph.errors",
    "graph.expert_reply",
    "graph.memory",
    "graph.router",
    "graph.settings",
    "graph.state",
    "graph.storage",
}
LAYERS = ("tasks", "prompts", "models", "graph core", "nodes", "graph.builder", "front doors")


def layer(module: str) -> int:
    top = module.split(".")[0]
    if top in ("tasks", "prompts", "models"):
        return LAYERS.index(top)
    if top == "nodes":
        return LAYERS.index("nodes")
    if module in CORE:
        return LAYERS.index("graph core")
    if module == "graph.builder":
        return LAYERS.index("graph.builder")
    return LAYERS.index("front doors")  # graph.run, bench, review, review_web, tool, workers, chaos...


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from a.b import c`` counts ``a.b`` or ``a.b.c``)."""
    modules = {module_name(p) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = module_name(path)
            targets: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    for alias in node.names:
                        full = f"{node.module}.{alias.name}"
                        targets.add(full if full in modules else node.module)
                elif isinstance(node, ast.Import):
                    targets.update(alias.name for alias in node.names)
            edges[name] = {t for t in targets if t in modules and t != name}
    return edges


def test_layers_only_point_down() -> None:
    bad = []
    for source, targets in import_graph().items():
        for target in targets:
            a, b = layer(source), layer(target)
            upward = b > a
            front_door_to_nodes = LAYERS[a] == "front doors" and LAYERS[b] == "nodes"
            if upward or front_door_to_nodes:
                bad.append(f"{source} ({LAYERS[a]}) -> {target} ({LAYERS[b]})")
    assert not bad, "imports against the layers:\n" + "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    edges = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_checker_sees_local_and_type_checking_imports() -> None:
    edges = import_graph()
    assert "graph.review_web" in edges["graph.review"]  # imported inside a function
    assert "graph.runner" in edges["graph.reviewer"]  # imported under TYPE_CHECKING
    assert layer("graph.run") > layer("graph.builder") > layer("nodes.icl") > layer("graph.state")
