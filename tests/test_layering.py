"""The package's import graph (module level and inside functions alike): no cycles, and the runtime a leaf.
Issue 14 found contract.py importing engine_cache inside a function while engine_cache imported contract."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("runtime", "export", "calibration", "train")


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(("disseg", *parts[:-1])) if parts[-1] == "__init__" else ".".join(("disseg", *parts))


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The disseg modules `path` imports anywhere in its body."""
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found |= {n for n in names if n in modules}
    return found - {_module(path)}


def graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "cpp" not in p.parts]
    modules = {_module(p) for p in files}
    return {_module(p): _imports(p, modules) for p in files}


def test_there_are_no_import_cycles():
    edges, state, cycles = graph(), {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if nxt.endswith("__init__") or nxt == "disseg.runtime" and node.startswith("disseg.runtime."):
                continue  # a package's __init__ re-exporting its own modules lazily is not a cycle
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for start in sorted(edges):
        if start not in state:
            visit(start, [start])
    assert not cycles, cycles
    assert len(edges) > 30  # the walk saw the tree


def test_the_runtime_imports_nothing_of_training_export_or_calibration():
    for module, targets in graph().items():
        if module.startswith("disseg.runtime"):
            assert not {t for t in targets if not t.startswith("disseg.runtime")}, module


def test_the_contract_is_a_leaf_of_the_runtime():
    leaves = {"disseg.runtime.atomic", "disseg.runtime.errors"}
    assert graph()["disseg.runtime.contract"] <= leaves | {"disseg.runtime.textfile"}
    assert graph()["disseg.runtime.textfile"] <= leaves
