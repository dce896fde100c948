"""benchmarks/gpu_kit.sh, which carries wheels to a lent GPU machine in parts: packed here, taken one part per call
into a store, checked and installed there. Run with a wheel built here (no download) and parts of a few hundred
bytes, each `take` in a checkout of its own, as the device calls are."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_kit.sh"


def _wheel(folder: Path) -> Path:
    """A pure-Python wheel of one module, kitprobe, with an honest RECORD."""
    files = {
        "kitprobe.py": "ANSWER = 'carried ' * 40\n",
        "kitprobe-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: kitprobe\nVersion: 1.0\n",
        "kitprobe-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files["kitprobe-1.0.dist-info/RECORD"] = "\n".join([*record, "kitprobe-1.0.dist-info/RECORD,,"]) + "\n"
    path = folder / "kitprobe-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        for name, text in files.items():
            zf.writestr(name, text)
    return path


def _kit(cwd: Path, action: str, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(cwd / "benchmarks" / "gpu_kit.sh"), action],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def _checkout(path: Path) -> Path:
    (path / "benchmarks").mkdir(parents=True)
    shutil.copy(SCRIPT, path / "benchmarks" / "gpu_kit.sh")
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    return path


def test_pack_take_install_round_trip(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels)
    here = _checkout(tmp_path / "here")
    env = {
        **os.environ,
        "GPU_KIT_FROM": str(wheels),
        "GPU_KIT_PART_SIZE": "700",
        "GPU_KIT_PYTHON": sys.executable,
        "GPU_KIT_STORE": str(tmp_path / "store"),
        "GPU_KIT_SITE": str(tmp_path / "site"),
    }
    packed = _kit(here, "pack", env)
    assert packed.returncode == 0, packed.stderr
    parts = sorted((here / ".gpu-kit").glob("part-*"))
    assert len(parts) >= 3 and not (here / ".gpu-kit" / "wheels").exists(), packed.stdout

    early = _kit(here, "install", env)  # nothing taken yet
    assert early.returncode == 2 and early.stderr.count("\n") == 1 and "take" in early.stderr, early.stderr

    for i, part in enumerate(parts):  # one device call per part: a checkout carrying that part and SHA256 alone
        call = _checkout(tmp_path / f"call{i}")
        (call / ".gpu-kit").mkdir()
        shutil.copy(part, call / ".gpu-kit")
        shutil.copy(here / ".gpu-kit" / "SHA256", call / ".gpu-kit")
        taken = _kit(call, "take", env)
        assert taken.returncode == 0 and f"{i + 1} of {len(parts)} parts" in taken.stdout, taken.stdout + taken.stderr
        if i == 0:
            partial = _kit(call, "install", env)  # a missing part is found before anything is unpacked
            assert partial.returncode == 2 and "missing or corrupt" in partial.stderr, partial.stderr

    installed = _kit(here, "install", env)
    assert installed.returncode == 0, installed.stderr
    probe = subprocess.run(
        [sys.executable, "-c", "import kitprobe; print(kitprobe.ANSWER.split()[0])"],
        env={**env, "PYTHONPATH": str(tmp_path / "site")},
        capture_output=True,
        text=True,
    )
    assert probe.stdout.strip() == "carried", probe.stderr

    store_part = tmp_path / "store" / parts[1].name  # a part damaged in transit
    store_part.write_bytes(b"x" + store_part.read_bytes()[1:])
    damaged = _kit(here, "install", env)
    assert damaged.returncode == 2 and "missing or corrupt" in damaged.stderr, damaged.stderr
