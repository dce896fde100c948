"""Every text option and argument of every command, given what an unfriendly user types: a Unicode digit, a
5,000-character string, control characters, percent-encoded junk. Each ends as a command should (done, exit 1 with
one `failed:` line, or exit 2 with one `error:` line of a readable length), never a traceback. The options are read
from the commands themselves (click), so a new option is walked without anyone adding it here. The commands run in
this process (click's runner, their real code) for speed: about 250 invocations."""

from __future__ import annotations

import importlib
import os

import click
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

COMMANDS = {  # pyproject's entry points, but dis-data and dis-demo, whose one argument is where they write
    "dis-train": "disseg.train.cli:train_cli",
    "dis-eval": "disseg.train.cli:eval_cli",
    "dis-export": "disseg.export.cli:export_cli",
    "dis-import": "disseg.export.import_cli:import_cli",
    "dis-calibrate": "disseg.calibration.cli:calibrate_cli",
    "dis-run": "disseg.runtime.cli:run_cli",
    "dis-serve": "disseg.runtime.triton_serve:serve_cli",
    "dis-bench": "disseg.runtime.cli:bench_cli",
    "dis-doctor": "disseg.runtime.doctor:doctor_cli",
}
VALUES = {"digit": "²", "long": "y" * 5000, "control": "a\x01b\x1b[2J\x7f", "percent": "%00%zz%2e%2e"}
NUMERIC = (click.types.IntParamType, click.types.FloatParamType, click.Choice)


def _command(name: str) -> click.Command:
    module, func = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), func)


def _text_options(command: click.Command) -> list[str]:
    return [p.opts[0] for p in command.params
            if isinstance(p, click.Option) and not p.is_flag and not isinstance(p.type, NUMERIC)]  # fmt: skip


def _cases() -> list[tuple[str, str]]:
    cases = []
    for name in COMMANDS:
        command = _command(name)
        cases += [(name, "ARGUMENT")] + [(name, option) for option in _text_options(command)]
    return cases


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("walk")
    (folder / "in").mkdir()
    for i in range(2):
        cv2.imwrite(str(folder / "in" / f"{i}.png"), np.full((32, 32, 3), 60 * i, np.uint8))
    return folder


def _base(name: str, model, foreign, workdir) -> list[str]:
    """Arguments that make the command otherwise runnable on something small (or at least get past its first check)."""
    if name == "dis-import":
        return [str(foreign)]
    if name == "dis-run":
        return [str(model), "--images", str(workdir / "in"), "--no-display", "--max-frames", "2"]
    if name == "dis-train":
        return []
    return [str(model)]


@pytest.mark.parametrize("value", VALUES, ids=list(VALUES))
@pytest.mark.parametrize("name, option", _cases(), ids=[f"{n} {o}" for n, o in _cases()])
def test_hostile_text_ends_as_a_command_should(tiny_onnx, foreign_models, workdir, tmp_path, name, option, value):
    args = _base(name, tiny_onnx, foreign_models["label_map"], workdir)
    text = VALUES[value]
    if option == "ARGUMENT":
        args = [text, *args[1:]] if args else [text]
    else:
        args = [*args, option, text]
    cwd = os.getcwd()
    os.chdir(tmp_path)  # whatever a command accepts and writes lands here
    try:
        result = CliRunner().invoke(_command(name), args, catch_exceptions=True)
    finally:
        os.chdir(cwd)
    if isinstance(result.exception, SystemExit) or result.exception is None:
        status = result.exit_code
    else:
        raise AssertionError(
            f"{name} {option}={value}: {type(result.exception).__name__}: {str(result.exception)[:300]}"
        )
    said = [line for line in result.output.splitlines() if line.startswith(("error:", "failed:"))]
    assert status in (0, 1, 2), (status, result.output[-1500:])
    assert "Traceback" not in result.output, result.output[-3000:]
    if status == 2:
        assert len(said) == 1 and said[0].startswith("error:"), result.output[-1500:]
    assert all(len(line) < 1000 for line in said), said
