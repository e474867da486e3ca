"""The project's import graph keeps the documented direction (docs/architecture.md):

    tools → {stream, training, inference, recstream};  training → {inference, recstream}
    stream → {inference, recstream};  inference → {recstream};  recstream → nothing

``stream`` reaches no module that imports ``training``; ``inference`` reaches neither
``stream``, ``training`` nor torch; and no two modules import each other, directly or
through others. Every import counts: module level, inside functions, and under
``TYPE_CHECKING`` (a cycle there is still two modules that need each other).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("recstream", "inference", "stream", "training", "tools")
ALLOWED = {
    "recstream": set(),
    "inference": {"recstream"},
    "stream": {"inference", "recstream"},
    "training": {"inference", "recstream"},
    "tools": {"stream", "training", "inference", "recstream"},
}
TORCH = {"torch", "transformers", "torchvision", "sentence_transformers"}

Graph = dict[str, set[str]]


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            mods[".".join(parts)] = path
    return mods


def _imported(module: str, path: Path) -> Iterator[str]:
    """Every dotted name ``module`` imports (``from a import b`` yields a and a.b)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            yield base
            yield from (f"{base}.{alias.name}" for alias in node.names)


def build() -> tuple[Graph, Graph]:
    """(module → project modules it imports, module → top-level external packages)."""
    mods = _modules()
    internal: Graph = {m: set() for m in mods}
    external: Graph = {m: set() for m in mods}
    for module, path in mods.items():
        for name in _imported(module, path):
            if name.split(".")[0] not in PACKAGES:
                external[module].add(name.split(".")[0])
                continue
            target = name
            while target and target not in mods:
                target = target.rpartition(".")[0]
            if target and target != module:
                internal[module].add(target)
    return internal, external


def _reach(graph: Graph, start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def _cycles(graph: Graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _pkg(module: str) -> str:
    return module.split(".")[0]


def test_the_parser_sees_the_imports_it_must_judge() -> None:
    internal, external = build()
    assert "stream.processing" in internal["stream.app"]  # module level
    assert "training.data" in internal["tools.replay"]  # inside a function
    assert "torch" in external["training.train"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_packages_import_only_in_the_documented_direction() -> None:
    internal, _ = build()
    wrong = sorted(
        f"{a} -> {b}"
        for a, targets in internal.items()
        for b in targets
        if _pkg(b) != _pkg(a) and _pkg(b) not in ALLOWED[_pkg(a)]
    )
    assert not wrong, "imports against the documented direction:\n" + "\n".join(wrong)


def test_stream_reaches_nothing_that_imports_training() -> None:
    internal, _ = build()
    for module in (m for m in internal if _pkg(m) == "stream"):
        bad = sorted(m for m in _reach(internal, module) if _pkg(m) in ("training", "tools"))
        assert not bad, f"{module} reaches {bad}"


def test_inference_reaches_neither_stream_training_nor_torch() -> None:
    internal, external = build()
    for module in (m for m in internal if _pkg(m) == "inference"):
        reached = _reach(internal, module) | {module}
        bad = sorted(m for m in reached if _pkg(m) in ("stream", "training", "tools"))
        assert not bad, f"{module} reaches {bad}"
        torch = sorted(m for m in reached if external[m] & TORCH)
        assert not torch, f"{module} reaches torch through {torch}"


def test_no_two_modules_import_each_other() -> None:
    internal, _ = build()
    assert _cycles(internal) == []
