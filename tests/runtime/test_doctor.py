"""dis-doctor, the install profiles' one-line answers, and the two-ONNX-Runtimes warning, run for real."""

from __future__ import annotations

import json
import platform
import subprocess
import sys

from disseg.runtime.deps import OPENCV_MISSING
from tests.conftest import run_cmd

BLOCK_CV2 = (
    "import sys, importlib.abc\n"
    "class Block(importlib.abc.MetaPathFinder):\n"
    "    def find_spec(self, name, path, target=None):\n"
    "        if name.split('.')[0] == 'cv2':\n"
    "            raise ModuleNotFoundError(\"No module named 'cv2'\", name='cv2')\n"
    "sys.meta_path.insert(0, Block())\n"
)


def _doctor(*args, env=None) -> tuple[int, dict]:
    proc = (
        run_cmd("dis-doctor", *args, "--json")
        if env is None
        else subprocess.run(
            [sys.executable, "-c", "from disseg.runtime.doctor import doctor_cli; doctor_cli()", *args, "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_doctor_without_a_model_runs_the_bundled_check():
    code, report = _doctor()
    assert code == 0 and report["check"]["tiny_onnx"]["CPUExecutionProvider"] == "ok"
    assert report["system"]["machine"] == platform.machine() and report["system"]["disseg"]
    assert report["opencv"]["build"]["GStreamer"].startswith(("YES", "NO"))
    assert "CPUExecutionProvider" in report["onnxruntime"]["providers"]
    assert report["verdict"].startswith("runs here")
    assert report["outputs"]["mqtt"].startswith("paho-mqtt 2.")
    rtsp = report["outputs"]["rtsp"]  # what RTSP out would use here, or what to install for it
    assert "through gst-rtsp-server" in rtsp if isinstance(rtsp, str) else "gir1.2-gst-rtsp-server-1.0" in rtsp["error"]


def test_doctor_on_a_model_names_the_backends_that_open_it(tiny_onnx):
    code, report = _doctor(str(tiny_onnx))
    assert code == 0
    assert report["check"]["backends"]["onnxruntime"] == "ok (CPUExecutionProvider)"
    assert report["check"]["iterations"] == 3 and report["check"]["precision"] == "fp32"
    assert "scene_tags" not in report["check"]


def test_doctor_names_what_scene_tags_take(scene_tags_model):
    from disseg.runtime.contract import read_model_info

    code, report = _doctor(str(scene_tags_model))
    assert code == 0 and report["check"]["backends"]["onnxruntime"] == "ok (CPUExecutionProvider)"
    names = ", ".join(read_model_info(scene_tags_model).class_names)
    assert report["check"]["scene_tags"] == f"energy+mask; classes: {names}"


def test_doctor_on_a_damaged_model_exits_1_with_the_reason(tiny_onnx, tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(tiny_onnx.read_bytes()[:5000])
    code, report = _doctor(str(bad))
    assert code == 1 and "error" in report["check"] and report["verdict"].startswith("cannot run here")


def test_doctor_without_opencv_reports_it_and_still_checks(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_CV2 + "from disseg.runtime.doctor import doctor_cli\n"
            "sys.argv = ['dis-doctor', '--json']\ndoctor_cli()",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["opencv"]["error"] == OPENCV_MISSING
    assert "error" in report["gstreamer"]


def test_dis_run_without_opencv_is_one_line_with_each_profile(tiny_onnx, tmp_path):
    code = BLOCK_CV2 + (
        "from disseg.runtime.cli import run_cli\n"
        f"sys.argv = ['dis-run', {str(tiny_onnx)!r}, '--images', {str(tmp_path)!r}, '--stats', 's.json', "
        "'--no-display']\n"
        "run_cli()"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.strip() == f"error: {OPENCV_MISSING}"
    # each profile's own packages, read from the installed disseg (a pip line that works without a registry copy)
    for package in ("'onnxruntime>=", "'onnxruntime-gpu[cuda,cudnn]>=", "'opencv-python-headless>=", "python3-opencv"):
        assert package in OPENCV_MISSING, package


def test_both_onnxruntime_packages_get_a_one_line_warning(tiny_onnx, tmp_path):
    """A second distribution that owns the `onnxruntime` module, as pip leaves it after installing both."""
    info = tmp_path / "site" / "onnxruntime_gpu-1.31.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.31.1\n")
    import os

    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    _, report = _doctor(env=env)
    assert "pip uninstall -y onnxruntime onnxruntime-gpu" in report["onnxruntime"]["warning"]
    import cv2
    import numpy as np

    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.png"), np.zeros((32, 32, 3), np.uint8))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from disseg.runtime.cli import run_cli; run_cli()",
            str(tiny_onnx),
            "--images",
            str(tmp_path / "frames"),
            "--stats",
            str(tmp_path / "s.json"),
            "--no-display",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    warnings = [line for line in proc.stderr.splitlines() if "onnxruntime-gpu 1.31.1" in line]
    assert proc.returncode == 0 and len(warnings) == 1 and "overwrite each other" in warnings[0], proc.stderr


def test_a_failed_probe_speaks_in_words_not_class_names():
    from disseg.runtime.doctor import probe
    from disseg.runtime.errors import BadInput

    def fails():
        raise BadInput("no CUDA GPU is visible here")

    assert probe(fails) == {"error": "no CUDA GPU is visible here"}
    assert probe(lambda: {}[0]) == {"error": "0"}
    assert probe(lambda: (_ for _ in ()).throw(RuntimeError())) == {"error": "failed without a message (RuntimeError)"}
