"""dis-doctor: what this machine can run, in one report to read first and to paste into a bug report.

Every probe runs on its own and, where it cannot, says why in one line; the command never fails on a
probe. Exit 0 when MODEL (or, without one, a bundled tiny ONNX check) runs on some backend here, 1 if not.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from .cli_util import MODEL, Command, handle_errors
from .deps import OPENCV_MISSING, installed, opencv_wheels

# uint8 image 1x4x4x3 -> Cast -> ReduceMax -> Cast -> uint8 "labels": a 180-byte ONNX model (opset 17) that
# checks ONNX Runtime without any model file. Made with onnx.helper; 7 everywhere in gives 7 out.
TINY_ONNX = base64.b64decode(
    "CAgSBmRpc3NlZzqhAQobCgVpbWFnZRIBeCIEQ2FzdCoJCgJ0bxgBoAECCiIKAXgSAW0iCVJlZHVjZU1heCoPCghrZWVwZGltcxgAoAECChwKAW0SBmxhYmVs"
    "cyIEQ2FzdCoJCgJ0bxgCoAECEg1kaXNzZWdfZG9jdG9yWh8KBWltYWdlEhYKFAgCEhAKAggBCgIIBAoCCAQKAggDYhAKBmxhYmVscxIGCgQIAhIAQgQKABAR"
)
GST_ELEMENTS = ("nvarguscamerasrc", "nvv4l2decoder", "nvvidconv", "rtspsrc", "decodebin", "avdec_h264", "appsink")


def probe(func: Callable[[], Any]) -> Any:
    """Run one probe; a failure becomes {"error": one line}."""
    try:
        return func()
    except Exception as err:  # a probe reports, it never stops the report
        said = str(err).splitlines()[0][:200] if str(err).strip() else ""
        return {"error": said or f"failed without a message ({type(err).__name__})"}


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace").strip("\x00 \n")
    except OSError:
        return None


def system_info() -> dict:
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "disseg": installed("disseg"),
        "numpy": installed("numpy"),
    }


def cpu_info() -> dict:
    """The CPU and the instructions that decide INT8 and FP16/BF16 speed on ONNX Runtime, and what that means."""
    from .cpu import read_cpu

    cpu = read_cpu()
    return {
        "model": cpu.model,
        "instructions": ", ".join(cpu.features) or "none of AVX2, AVX-512, VNNI, AMX, dotprod, i8mm, fp16, bf16",
        "int8": cpu.int8_verdict(),
    }


def jetson_info() -> dict | None:
    """Jetson model and L4T release (and JetPack, when its meta-package is installed); None off a Jetson."""
    release = _read("/etc/nv_tegra_release")
    if release is None:
        return None
    info = {"model": _read("/proc/device-tree/model"), "l4t": release.splitlines()[0]}
    if shutil.which("dpkg-query"):
        out = subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "nvidia-jetpack"], capture_output=True, text=True, timeout=10
        )
        info["jetpack"] = out.stdout.strip() or "nvidia-jetpack not installed"
    return info


def opencv_info() -> dict:
    try:
        import cv2
    except ImportError:
        return {"error": OPENCV_MISSING}
    flags = {}
    for line in cv2.getBuildInformation().splitlines():
        key, _, value = line.strip().partition(":")
        if key in ("GStreamer", "FFMPEG", "NVIDIA CUDA", "V4L/V4L2"):
            flags[key] = value.strip()
    wheels = opencv_wheels()
    info = {"version": cv2.__version__, "file": getattr(cv2, "__file__", None), "build": flags, "pip_wheels": wheels}
    if wheels and jetson_info() is not None:
        info["warning"] = (
            f"pip's {', '.join(wheels)} shadows JetPack's OpenCV (GStreamer, --csi); "
            f"pip uninstall -y {' '.join(wheels)}"
        )
    return info


def gpu_info() -> dict:
    """Name, compute capability and driver of each CUDA device, through cuda-python or nvidia-smi."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        cudart = None
    if cudart is not None:
        err, count = cudart.cudaGetDeviceCount()
        if int(err) == 0:
            _, driver = cudart.cudaDriverGetVersion()
            devices = []
            for i in range(count):
                _, props = cudart.cudaGetDeviceProperties(i)
                name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
                devices.append(
                    {
                        "name": name.strip("\x00 "),
                        "compute_capability": f"{props.major}.{props.minor}",
                        "memory_gib": round(props.totalGlobalMem / 2**30, 1),
                    }
                )
            return {"driver_cuda": f"{driver // 1000}.{driver % 1000 // 10}", "devices": devices}
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=20,
        )
        rows = [r.split(", ") for r in out.stdout.strip().splitlines() if r]
        return {"devices": [{"name": r[0], "compute_capability": r[1], "driver": r[2]} for r in rows if len(r) == 3]}
    return {"devices": [], "note": "no CUDA GPU visible (no cuda-python device, no nvidia-smi)"}


def gstreamer_info() -> dict | None:
    """The GStreamer elements dis-run's pipelines use; None when neither OpenCV nor the machine has GStreamer."""
    from .sources import gstreamer_available, gstreamer_element

    opencv_has = probe(gstreamer_available)
    if shutil.which("gst-inspect-1.0") is None:
        return {
            "opencv_has_gstreamer": opencv_has,
            "elements": "gst-inspect-1.0 not found (apt install gstreamer1.0-tools)",
        }
    return {"opencv_has_gstreamer": opencv_has, "elements": {e: gstreamer_element(e) for e in GST_ELEMENTS}}


def outputs_info() -> dict:
    """What dis-run can send out besides files: RTSP (gst-rtsp-server with an H.264 encoder) and MQTT (paho-mqtt)."""
    from .rtsp import support

    def mqtt() -> str:
        from importlib.metadata import version

        try:
            return f"paho-mqtt {version('paho-mqtt')}"
        except Exception:  # noqa: BLE001 (PackageNotFoundError)
            raise RuntimeError(
                "paho-mqtt is not installed (a dependency of disseg): pip install 'paho-mqtt>=2.1'"
            ) from None

    return {"rtsp": probe(support), "mqtt": probe(mqtt)}


def cpp_info() -> dict:
    """libdisseg, if built: $DISSEG_CPP_BUILD, then the linker's cache."""
    build = os.environ.get("DISSEG_CPP_BUILD")
    found = sorted(glob.glob(str(Path(build) / "libdisseg.so*"))) if build else []
    if not found and shutil.which("ldconfig"):
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
        found = [line.split("=>")[-1].strip() for line in out.splitlines() if "libdisseg.so" in line]
    return {"libdisseg": found[0] if found else None}


def cameras() -> list[str]:
    return sorted(glob.glob("/dev/video*"))


def check_tiny() -> dict:
    """Run the bundled tiny ONNX on each ONNX Runtime provider here."""
    import numpy as np
    import onnxruntime as ort

    from .backends import OnnxRuntimeBackend
    from .contract import INPUT, LABELS

    results = {}
    for provider in ort.get_available_providers():

        def run(p=provider):
            backend = OnnxRuntimeBackend(TINY_ONNX, providers=[p])
            out = backend.infer({INPUT: np.full((1, 4, 4, 3), 7, np.uint8)})[LABELS]
            if backend.providers[0] != p:
                raise RuntimeError(f"did not start: {backend.provider_errors.get(p, 'ran on ' + backend.providers[0])}")
            if int(out) != 7:
                raise RuntimeError(f"gave {int(out)}, expected 7")
            return "ok"

        results[provider] = probe(run)
    return results


def check_model(model: Path | str) -> dict:
    """Which backends open MODEL here, each in its own words (`Kind.check`), e.g. TensorRT's cached engine or a
    served model's round trip; a served model's contract comes from its server."""
    from .backends import KINDS, open_backend
    from .contract import read_model_info

    served = any(kind.served and kind.claims(model) for kind in KINDS.values())
    if served:
        backend, info = open_backend(model)
        backend.close()
    else:
        info = read_model_info(model)
    report: dict = {
        "model": str(model),
        "precision": info.precision,
        "iterations": info.iterations,
        "input": f"{info.input_height}x{info.input_width}",
        "classes": info.num_classes,
        "backends": {},
    }
    if info.scene_tags:  # what --scene-tags takes: the model's class names
        report["scene_tags"] = f"{info.scene_tags}; classes: {', '.join(info.class_names)}"
    for name, kind in KINDS.items():
        said = probe(lambda kind=kind: kind.check(model, info))
        if said is None:
            continue
        if "status" not in said:  # the probe failed: its error is the status
            said = {"status": said}
        report["backends"][name] = said.pop("status")
        report.update(said)
    return report


def gather(model: Path | str | None) -> dict:
    from .backends import KINDS

    report = {
        "system": probe(system_info),
        "cpu": probe(cpu_info),
        "jetson": probe(jetson_info),
        "opencv": probe(opencv_info),
        **{name: probe(kind.facts) for name, kind in KINDS.items()},  # each backend's own facts
        "gpu": probe(gpu_info),
        "cameras": probe(cameras),
        "gstreamer": probe(gstreamer_info),
        "outputs": probe(outputs_info),
        "cpp": probe(cpp_info),
    }
    report["check"] = probe(lambda: check_model(model)) if model else {"tiny_onnx": probe(check_tiny)}
    return report


def runnable(report: dict) -> bool:
    """Some backend can run the model (or the tiny check) here."""
    check = report["check"]
    if "tiny_onnx" in check:
        return isinstance(check["tiny_onnx"], dict) and any(v == "ok" for v in check["tiny_onnx"].values())
    return any(isinstance(v, str) and v.startswith(("ok", "builds")) for v in check.get("backends", {}).values())


def render(value: Any, indent: int = 0) -> list[str]:
    pad = "  " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines += [f"{pad}{key}:"] + render(item, indent + 1)
            else:
                lines.append(f"{pad}{key}: {item if item not in (None, {}, []) else '-'}")
        return lines
    if isinstance(value, list):
        return (
            [line for item in value for line in render(item, indent)]
            if any(isinstance(i, dict) for i in value)
            else [f"{pad}{', '.join(map(str, value))}"]
        )
    return [f"{pad}{value}"]


@click.command(
    cls=Command,
    help="Report what this machine can run (Python, OpenCV, ONNX Runtime, TensorRT, GPU, cameras, GStreamer, C++), "
    "and whether MODEL runs here. Paste its output into bug reports.",
)
@click.argument("model", required=False, type=MODEL)
@click.option("--json", "as_json", is_flag=True, help="print JSON instead of text")
@handle_errors
def doctor_cli(model: Path | None, as_json: bool) -> None:
    report = gather(model)
    ok = runnable(report)
    report["verdict"] = ("runs here" if ok else "cannot run here") + (
        f": {model}" if model else " (bundled tiny ONNX check)"
    )
    click.echo(json.dumps(report, indent=2, default=str) if as_json else "\n".join(render(report)))
    sys.exit(0 if ok else 1)
