"""A wheel (what the aarch64 leg and every user without -e install) carries every package of the tree."""

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_in_the_wheel():
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed, folders = set(tool["packages"]), tool["package-dir"]
    for package, folder in folders.items():
        for init in sorted((ROOT / folder).rglob("__init__.py")):
            relative = init.parent.relative_to(ROOT / folder)
            if "cpp" in relative.parts or "__pycache__" in relative.parts:
                continue
            name = ".".join([package, *relative.parts])
            assert name in listed, f"{name} ({init.parent}) is not in pyproject's packages: a wheel would lack it"
