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


def _commands() -> set[str]:
    """The modules of the console scripts (pyproject's [project.scripts]) and their shared helpers, cli_util."""
    import tomllib

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"].values()
    return {target.split(":")[0] for target in scripts} | {"disseg.runtime.cli_util"}


def test_library_modules_import_no_command_module():
    """Progress bars and output capture live in runtime/console.py; a library module that needed a command's helper
    would drag click and the command's set-up into an application that embeds it."""
    commands = _commands()
    assert "disseg.runtime.cli" in commands and len(commands) >= 8
    for module, targets in graph().items():
        if module not in commands:
            assert not targets & commands, (module, targets & commands)


def test_commands_do_not_import_each_other():
    """What two commands share is in cli_util or a library module, not in one of them."""
    commands = _commands() - {"disseg.runtime.cli_util"}
    for module, targets in graph().items():
        if module in commands:
            assert not targets & commands, (module, targets & commands)


def test_training_does_not_import_export():
    for module, targets in graph().items():
        if module.startswith("disseg.train"):
            assert not {t for t in targets if t.startswith(("disseg.export", "disseg.calibration"))}, module
