"""docs/architecture.md held to the code: every module placed in a layer, the imports between the packages and
inside the runtime as drawn, the command modules as listed, every file the page names present, and the backend
table's record as the page spells it. A change to the code that makes the picture false fails here."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import tomllib

from tests.test_layering import graph

ROOT = Path(__file__).resolve().parents[1]
PAGE = (ROOT / "docs" / "architecture.md").read_text()
PACKAGES = ("train", "export", "calibration", "runtime", "runtime/backends")


def _section(start: str, end: str) -> str:
    return PAGE[PAGE.index(start) : PAGE.index(end, PAGE.index(start))]


def test_every_module_is_placed_in_a_layer():
    layers = _section("## Layers and imports", "Imports go one way")
    missing = [
        f"{package}/{path.name}"
        for package in PACKAGES
        for path in sorted((ROOT / package).glob("*.py"))
        if path.stem != "__init__" and not re.search(rf"\b{re.escape(path.stem)}\b", layers, re.IGNORECASE)
    ]
    assert not missing, f"docs/architecture.md's layers do not name {missing}"


def _package_edges() -> set[tuple[str, str]]:
    edges = set()
    for module, targets in graph().items():
        for target in targets:
            a, b = module.split(".")[1], target.split(".")[1]
            if a != b:
                edges.add((a, b))
    return edges


def test_the_packages_import_as_drawn():
    sentence = _section("Imports go one way:", "`runtime/` never imports torch")
    drawn = set()
    for source, targets in re.findall(r"`(\w+) -> ([\w, ]+?)`", sentence):
        drawn |= {(source, t.strip()) for t in targets.split(",") if t.strip() != "nothing of ours"}
    assert {s for s, _ in drawn} == {"train", "export", "calibration"}, sentence  # runtime: "nothing of ours"
    assert _package_edges() == drawn


def test_the_runtime_imports_inside_as_drawn():
    edges = graph()
    sentence = _section("Inside `runtime/` the library modules import", "Heavy third-party")
    for chain in re.findall(r"`((?:[\w, ]+ -> )+[\w, ]+)`", sentence):
        steps = [[name.strip() for name in step.split(",")] for step in chain.split("->")]
        for sources, targets in zip(steps, steps[1:]):
            for source in sources:
                imported = {t.split(".")[-1] for t in edges[f"disseg.runtime.{source}"]}
                imported |= {t.split(".")[2] for t in edges[f"disseg.runtime.{source}"] if t.count(".") > 2}
                assert set(targets) & imported, (source, targets, sorted(imported))


def test_the_command_modules_are_as_listed():
    listed, folder = set(), ""
    sentence = _section("A command module (a console script's:", ") may import")
    for name in re.findall(r"`([\w/]+\.py)`", sentence):
        if "/" in name:
            folder = name.rsplit("/", 1)[0]
        listed.add(name if "/" in name else f"{folder}/{name}")
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"].values()
    commands = {target.split(":")[0].removeprefix("disseg.").replace(".", "/") + ".py" for target in scripts}
    assert listed == commands


def test_every_file_the_page_names_exists():
    cpp = ROOT / "runtime" / "cpp"
    bases = (ROOT, *(ROOT / p for p in PACKAGES), ROOT / "docs", cpp, cpp / "include" / "disseg")  # short forms
    missing = []
    for token in re.findall(r"`([^`\s]+)", PAGE):
        token = token.rstrip(".,;:")
        if not re.fullmatch(r"[\w./-]+\.(py|cpp|hpp|h|md|json|txt)|[\w.-]+(/[\w.-]+)*/", token):
            continue
        if not any((base / token).exists() for base in bases):
            missing.append(token)
    assert not missing, f"docs/architecture.md names files that are not there: {missing}"


def test_the_backend_table_is_as_described():
    from disseg.runtime.backends import KINDS, Kind

    spelled = re.search(r"`KIND = Kind\(([^)]*)\)`", " ".join(PAGE.split()))
    assert spelled, "the page no longer spells the Kind record"
    assert [f.strip() for f in spelled[1].split(",")] == [f.name for f in dataclasses.fields(Kind)]
    row = next(line for line in PAGE.splitlines() if line.startswith("| backends |"))
    for kind in KINDS.values():
        module = kind.open.__module__.rsplit(".", 1)[-1]
        assert f"`{module}`" in row, (module, row)
