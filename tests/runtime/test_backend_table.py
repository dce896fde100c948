"""docs/architecture.md's claim, held literally: a backend is one module and one entry in `backends.KINDS`. A copy of
the package gets a dummy backend that way (ONNX Runtime's CPU provider under another name), and every command's
--backend offers it, dis-doctor reports its facts and its check, and dis-run runs a model on it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import tomllib

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("runtime", "export", "train", "calibration")

DUMMY = '''"""The dummy backend: ONNX Runtime's CPU provider under its own name."""

from pathlib import Path

from .base import Kind
from .onnxrt import OnnxRuntimeBackend


class DummyBackend(OnnxRuntimeBackend):
    name = "dummy"


def _open(path, info, *, cache_dir=None, threads=0):
    return DummyBackend(path, providers=["CPUExecutionProvider"], threads=threads)


def _check(model, info):
    return {"status": "ok (dummy)", "dummy_saw": info.num_classes} if isinstance(model, Path) else None


KIND = Kind("dummy", "Dummy", claims=lambda model: False, open=_open, check=_check, facts=lambda: {"dummy": "1.0"})
'''

# Every console script's click command, and the choices its --backend offers (None: it has no --backend).
CHOICES_OF = """
import importlib, json, sys
out = {}
for name, target in json.loads(sys.argv[1]).items():
    module, attr = target.split(":")
    try:
        command = getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError as err:  # a command of a profile this environment lacks (torch)
        out[name] = f"not importable: {err.name}"
        continue
    option = next((p for p in command.params if p.name == "backend"), None)
    out[name] = list(option.type.choices) if option is not None else None
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def with_dummy(tmp_path_factory) -> dict:
    """A copy of the package with the dummy backend added as the docs say: one module, one entry."""
    root = tmp_path_factory.mktemp("pkg")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, root / "disseg" / package, ignore=shutil.ignore_patterns("cpp", "__pycache__"))
    backends = root / "disseg" / "runtime" / "backends"
    (backends / "dummy.py").write_text(DUMMY)
    table = (backends / "__init__.py").read_text()
    for old, new in (
        ("from . import onnxrt, triton, trt\n", "from . import dummy, onnxrt, triton, trt\n"),
        ("(trt.KIND, onnxrt.KIND, triton.KIND)", "(trt.KIND, onnxrt.KIND, triton.KIND, dummy.KIND)"),
    ):
        assert table.count(old) == 1, f"the backend table no longer reads {old!r}: update this test with it"
        table = table.replace(old, new)
    (backends / "__init__.py").write_text(table)
    return {**os.environ, "PYTHONPATH": str(root)}


def _python(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=300)


def test_every_command_with_a_backend_option_offers_the_new_backend(with_dummy):
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    proc = _python(with_dummy, "-c", CHOICES_OF, json.dumps(scripts))
    assert proc.returncode == 0, proc.stderr
    choices = json.loads(proc.stdout)
    offering = {name: c for name, c in choices.items() if isinstance(c, list)}
    assert {"dis-run", "dis-bench", "dis-serve"} <= set(offering), choices
    for name, offered in offering.items():
        assert offered[-1] == "dummy" and {"auto", "onnxruntime", "tensorrt", "triton"} <= set(offered), (name, offered)
    # and in the help text a user reads
    help_text = _python(with_dummy, "-c", "from disseg.runtime.cli import run_cli; run_cli()", "--help").stdout
    assert "triton|dummy]" in " ".join(help_text.split()), help_text


def test_dis_doctor_reports_the_new_backend(with_dummy, tiny_onnx):
    code = "from disseg.runtime.doctor import doctor_cli; doctor_cli()"
    proc = _python(with_dummy, "-c", code, str(tiny_onnx), "--json")
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    assert report["dummy"] == {"dummy": "1.0"}
    assert report["check"]["backends"]["dummy"] == "ok (dummy)" and report["check"]["dummy_saw"] > 0
    assert report["check"]["backends"]["onnxruntime"].startswith("ok")


def test_dis_run_runs_a_model_on_the_new_backend(with_dummy, tiny_onnx, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), rng.integers(0, 255, (48, 64, 3), np.uint8))
    masks = {}
    for backend in ("dummy", "onnxruntime"):
        out = tmp_path / backend
        code = "from disseg.runtime.cli import run_cli; run_cli()"
        args = [str(tiny_onnx), "--images", str(images), "--masks", str(out), "--backend", backend, "--no-display"]
        proc = _python(with_dummy, "-c", code, *args)
        assert proc.returncode == 0, proc.stderr
        masks[backend] = [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(out.glob("*.png"))]
        assert len(masks[backend]) == 3
        if backend == "dummy":
            assert "dummy" in proc.stderr, proc.stderr  # the run names the backend it runs on
    assert all(np.array_equal(a, b) for a, b in zip(masks["dummy"], masks["onnxruntime"]))
