"""The GPU install profile (`disseg[gpu]`) where ONNX Runtime's CUDA provider cannot start: no driver (CI), or
CUDA and cuDNN missing (onnxruntime-gpu without its [cuda,cudnn] extras). The runtime says so in one line with the
reason and its fix, runs on the CPU with the same labels, and dis-doctor names the missing library. CI runs this
file in a venv with the gpu profile (.ci/run); elsewhere it skips unless DISSEG_REQUIRE_ORT_GPU=1."""

from __future__ import annotations

import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from disseg.runtime.deps import installed
from tests.conftest import assert_stats_keys, run_cmd

if not installed("onnxruntime-gpu") and os.environ.get("DISSEG_REQUIRE_ORT_GPU") != "1":
    pytest.skip("needs onnxruntime-gpu installed (CI's GPU-profile venv)", allow_module_level=True)

ORT_NOISE = ("EP Error", "[E:onnxruntime", "[W:onnxruntime", "Falling back to")


def _gpu_visible() -> bool:
    from disseg.runtime.engine_cache import cuda_device_count

    return cuda_device_count() > 0


def test_dis_run_falls_back_to_the_cpu_in_one_line(tiny_onnx, tmp_path):
    if _gpu_visible():
        pytest.skip("a GPU is visible: the CUDA provider may start (gpu_check.py covers that machine)")
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(4)
    frames = [rng.integers(0, 256, (48, 64, 3), dtype=np.uint8) for _ in range(3)]
    for i, frame in enumerate(frames):
        cv2.imwrite(str(photos / f"{i}.png"), frame)
    stats_path = tmp_path / "stats.json"
    proc = run_cmd(
        "dis-run", str(tiny_onnx), "--images", str(photos), "--masks", str(tmp_path / "m"), "--no-display",
        "--stats", str(stats_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "provider" in line]
    assert len(said) == 1, proc.stderr
    assert "CUDA provider did not start" in said[0] and "running on the CPU" in said[0], said
    assert "cannot open shared object file" in said[0] or "no usable GPU" in said[0], said  # the loader's reason
    if "libcuda.so" in said[0]:  # CUDA and cuDNN came with the profile; the driver is what this machine lacks
        assert "no NVIDIA driver here" in said[0], said
    else:
        assert "onnxruntime-gpu[cuda,cudnn]" in said[0], said
    assert not [n for n in ORT_NOISE if n in proc.stdout + proc.stderr], proc.stdout + proc.stderr
    stats = json.loads(stats_path.read_text())
    assert_stats_keys(stats)
    assert stats["frames"] == 3 and stats["backend"] == "onnxruntime (CPUExecutionProvider)", stats["backend"]

    from disseg.runtime.segmenter import Segmenter

    with Segmenter(tiny_onnx) as seg:  # the same labels as the CPU provider gives in this process
        expected = [r.labels for r in seg.segment_batch(frames)]
    for i, labels in enumerate(expected):
        with Image.open(tmp_path / "m" / f"{i}.png") as mask:
            assert np.array_equal(np.asarray(mask), labels), i


def test_doctor_names_what_the_cuda_provider_lacks():
    proc = run_cmd("dis-doctor", "--json")
    report = json.loads(proc.stdout)
    ort = report["onnxruntime"]
    assert "CUDAExecutionProvider" in ort["providers"] and ort["built_for_cuda"], ort
    if installed("nvidia-cudnn-cu13"):  # the profile's [cuda,cudnn] extras: pip's libraries beside onnxruntime
        assert {"cu13", "cudnn"} <= set(ort["pip_cuda_libraries"]), ort
    checks = report["check"]["tiny_onnx"]
    assert checks["CPUExecutionProvider"] == "ok" and proc.returncode == 0  # the CPU still runs the tiny check
    if _gpu_visible():
        assert checks["CUDAExecutionProvider"] == "ok", checks
    else:
        assert "did not start" in checks["CUDAExecutionProvider"]["error"], checks
    assert not [n for n in ORT_NOISE if n in proc.stdout + proc.stderr], proc.stderr
