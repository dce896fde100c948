"""What the runtime needs from the machine, and the one-line answers when it is missing or conflicting.
Imports nothing heavy: the commands call it before OpenCV or ONNX Runtime are touched."""

from __future__ import annotations

import importlib.metadata

OPENCV_MISSING = (
    "OpenCV (cv2) is not installed. CPU: pip install 'disseg[runtime]'; NVIDIA GPU: pip install 'disseg[gpu]'; "
    "Jetson: use JetPack's OpenCV (sudo apt install python3-opencv) and pip install 'disseg[jetson]'"
)
OPENCV_WHEELS = ("opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless")


def installed(distribution: str) -> str | None:
    """The installed version of a pip distribution, or None."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def onnxruntime_conflict() -> str | None:
    """Both ONNX Runtime packages installed: they share the module `onnxruntime`, and one overwrote the other."""
    cpu, gpu = installed("onnxruntime"), installed("onnxruntime-gpu")
    if cpu and gpu:
        return (
            f"both onnxruntime {cpu} and onnxruntime-gpu {gpu} are installed and overwrite each other's module; keep "
            "one: "
            f"pip uninstall -y onnxruntime onnxruntime-gpu && pip install 'disseg[gpu]' (or 'disseg[runtime]' on a CPU)"
        )
    return None


def opencv_wheels() -> dict[str, str]:
    """pip's OpenCV wheels installed here (on a Jetson they shadow JetPack's OpenCV, which has GStreamer)."""
    return {name: version for name in OPENCV_WHEELS if (version := installed(name))}
