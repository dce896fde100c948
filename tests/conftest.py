"""Shared fixtures: a tiny synthetic data set, a tiny trained checkpoint and its ONNX export, all built
here (nothing is downloaded). Without torch (the runtime-only CI environment) the ONNX model comes from
$DISSEG_TEST_MODEL, which .ci/run exports beforehand with the full environment."""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
BIN = Path(sys.executable).parent


def run_cmd(*args: str, check: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run one of our console scripts as a real subprocess."""
    exe = BIN / args[0]
    proc = subprocess.run([str(exe), *args[1:]], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from disseg.train.synth import write_dataset

    root = tmp_path_factory.mktemp("data") / "synth"
    write_dataset(root, num_train=16, num_val=8, num_weak=16, size=64, seed=3)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A stage-1 run (2 epochs, resnet18 cut after stage 2, 64 px)."""
    out = tmp_path_factory.mktemp("runs") / "s1"
    run_cmd("dis-train", "--data", str(tiny_data), "--out", str(out), "--stages", "2", "--size", "64", "--epochs", "2",
            "--batch", "4", "--optimizer", "adamw", "--step-size", "20", check=True)
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, request) -> Path:
    """An exported model (3 refinement steps, labels + tags outputs)."""
    env_model = os.environ.get("DISSEG_TEST_MODEL")
    if env_model and Path(env_model).is_file():
        return Path(env_model)
    if not HAS_TORCH:
        pytest.skip("needs torch to export a model, or $DISSEG_TEST_MODEL")
    run = request.getfixturevalue("tiny_run")
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    run_cmd("dis-export", str(run / "best.pt"), "--iters", "3", "--outputs", "labels,tags", "-o", str(out), check=True)
    return out


@pytest.fixture()
def model_copy(tiny_onnx, tmp_path) -> Path:
    dst = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx, dst)
    return dst
