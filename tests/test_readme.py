"""README is the page a user reads first: it must match the commands and CI, and every link must lead somewhere."""

import importlib
import re
import shlex
from pathlib import Path

import click
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
DOCS = sorted((ROOT / "docs").glob("*.md"))
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def _command(name: str) -> click.Command:
    """The click command behind a script name ('dis-data synth' is a subcommand)."""
    script, *sub = name.split()
    module, attr = SCRIPTS[script].split(":")
    command = getattr(importlib.import_module(module), attr)
    for part in sub:
        command = command.commands[part]
    return command


def _synopsis() -> dict[str, set[str]]:
    """The long options README's "Commands" block names, per command (a command shown twice: the union)."""
    block = README.split("## Commands", 1)[1].split("\n## ", 1)[0]
    named: dict[str, set[str]] = {}
    current = None
    for line in block.splitlines():
        if not line.startswith("    "):
            continue
        start = re.match(r"    (dis-data synth|dis-[a-z]+)\b", line)
        if start:
            current = start.group(1)
        if current:
            named.setdefault(current, set()).update(
                re.findall(r"(?<![\w-])(?:--[a-z0-9][a-z0-9-]*|-[a-zA-Z](?![\w-]))", line)
            )
    return named


SYNOPSIS = _synopsis()


def test_synopsis_names_every_command():
    assert set(SYNOPSIS) == {"dis-data synth", *(s for s in SCRIPTS if s != "dis-data")}


@pytest.mark.parametrize("name", sorted(SYNOPSIS))
def test_synopsis_matches_the_command_both_ways(name):
    common = {"help", "verbose"}  # every command has them; README says so once
    options = [p for p in _command(name).params if isinstance(p, click.Option) and p.name not in common]
    spelled = {o for p in options for o in (*p.opts, *p.secondary_opts)}
    unknown = SYNOPSIS[name] - spelled
    assert not unknown, f"README's synopsis of {name} names options the command does not have: {sorted(unknown)}"
    missing = [p.opts[-1] for p in options if not SYNOPSIS[name] & {*p.opts, *p.secondary_opts}]
    assert not missing, f"README's synopsis of {name} lacks {missing}"


def test_readme_test_command_is_what_ci_runs():
    first = README.split("```")[0] if "```" in README else README
    commands = [line.strip() for line in first.splitlines() if line.startswith("    ")][:2]
    setup, tests = commands
    ci = (ROOT / ".ci" / "run").read_text()
    assert tests in ci, f"CI does not run README's test command: {tests}"
    extras = set(re.search(r'-e "\.\[([^\]]+)\]"', setup).group(1).split(","))
    ci_extras = set(re.search(r'-e "\.\[([^\]]+)\]"', ci).group(1).split(","))
    assert extras <= ci_extras, f"README installs {extras}, CI {ci_extras}"
    for extra in ci_extras - extras:  # what CI adds, README must name (with what skips without it)
        assert f"[train,dev,{extra}]" in README, f"README does not say that CI adds the {extra!r} extra"
    assert shlex.split(tests)[:3] == ["python", "-m", "pytest"]


def test_readme_is_short():
    assert len(README) < 15_000, f"README is {len(README)} characters; move reference material into docs/"


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    slugs = set()
    for heading in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        slugs.add(slug)
    return slugs


@pytest.mark.parametrize("page", [ROOT / "README.md", *DOCS], ids=lambda p: p.name)
def test_every_relative_link_leads_somewhere(page):
    for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        resolved = (page.parent / file).resolve() if file else page
        assert resolved.exists(), f"{page.name} links to {target}, which does not exist"
        if anchor and resolved.suffix == ".md":
            assert anchor in _anchors(resolved), f"{page.name} links to {target}: no such heading"


def test_the_tree_points_only_into_itself():
    """Notes outside the repository are not the project's documentation."""
    outside = re.compile(r"design\.md|style\.md|\.\./shared")
    tracked = [
        p
        for p in ROOT.rglob("*")
        if p.is_file()
        and p.suffix in {".py", ".md", ".cpp", ".hpp", ".h", ".sh", ".toml", ".txt", ".cmake"}
        and not any(part.startswith(".") or part in {"build", "third_party"} for part in p.relative_to(ROOT).parts)
        and "egg-info" not in str(p)
    ]
    hits = [str(p.relative_to(ROOT)) for p in tracked if p != Path(__file__) and outside.search(p.read_text())]
    assert not hits, f"references to notes outside the repository: {hits}"


def _block(heading: str) -> list[str]:
    """The command lines of the code block under a README heading (continuation lines joined, comments dropped)."""
    section = README.split(f"## {heading}", 1)[1].split("\n## ", 1)[0]
    lines, joined = [], ""
    for line in section.splitlines():
        if not line.startswith("    ") or line.strip().startswith(("#", "from ", "with ", "result", "shown")):
            continue
        joined += " " + line.split("  #")[0].strip().rstrip("\\").strip()
        if not line.rstrip().endswith("\\"):
            lines.append(joined.strip())
            joined = ""
    return [line for line in lines if line.startswith("dis-")]


WALKTHROUGH = _block("From training to a camera")
# What the walkthrough needs that CI has not: these lines are parsed, not run.
NEEDS = {"--camera": "a camera", "--engine": "a GPU (TensorRT builds for the GPU it runs on)"}
# Appended to make the walkthrough's data and training tiny (a later option overrides an earlier one).
SMALL = {
    "dis-data": ["--num-train", "8", "--num-val", "4", "--num-weak", "8", "--size", "64"],
    "dis-train": ["--size", "64", "--epochs", "1", "--steps-per-epoch", "2", "--batch", "4"],
}


def _parses(line: str) -> None:
    args = shlex.split(line.replace("$TOKEN", "token"))
    name = "dis-data synth" if args[:2] == ["dis-data", "synth"] else args[0]
    rest = args[2:] if name == "dis-data synth" else args[1:]
    _command(name).make_context(name, rest, resilient_parsing=False)


@pytest.mark.parametrize(
    "heading",
    ["From training to a camera", "Many cameras, no screen", "Scene tags", "Your own model", "Serving with Triton"],
)
def test_every_example_command_parses(heading):
    lines = _block(heading)
    assert lines, f"no commands found under {heading!r}"
    for line in lines:
        _parses(line)


def test_the_walkthrough_runs_in_order(tmp_path):
    """Each line of "From training to a camera" as a user types it, in one folder, on tiny data; the lines that
    need a camera or a GPU are named in NEEDS and only parsed."""
    pytest.importorskip("torch")
    import subprocess
    import sys

    ran = []
    for line in WALKTHROUGH:
        args = shlex.split(line)
        if any(flag in args for flag in NEEDS):
            _parses(line)
            continue
        args += SMALL.get(args[0], [])
        exe = str(Path(sys.executable).parent / args[0])
        proc = subprocess.run([exe, *args[1:]], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{line}\n{proc.stderr[-2000:]}"
        ran.append(args[0])
    assert (tmp_path / "runs/s2/best.onnx").is_file() and (tmp_path / "runs/s2/best.int8.onnx").is_file()
    assert (tmp_path / "runs/s2/best.fp16.onnx").is_file()
    assert ran.count("dis-train") == 2 and "dis-calibrate" in ran


def test_install_lines_install_from_the_checkout():
    """disseg is on no registry: README's install lines name the checkout (".[extras]") and extras pyproject has;
    .ci/check-profiles resolves .[runtime], .[gpu] and .[jetson] exactly as written, and the aarch64 leg installs a
    wheel built with `pip wheel`."""
    import tomllib

    extras = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"])
    block = README.split("## Install", 1)[1].split("\n## ", 1)[0]
    lines = [line.strip() for line in block.splitlines() if line.strip().startswith("pip install")]
    assert len(lines) >= 5
    for line in lines:
        given = re.fullmatch(r'pip install "\.\[([a-z0-9,-]+)\]"\s*(#.*)?', line)
        assert given, f"README: {line!r} does not install from the checkout"
        assert set(given.group(1).split(",")) <= extras, line
    profiles = (ROOT / ".ci" / "check-profiles").read_text()
    assert "for profile in runtime gpu jetson" in profiles and '".[$profile]"' in profiles
    assert "pip wheel . --no-deps -w dist" in block
