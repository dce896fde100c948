"""What the runtime needs from the machine, and the one-line answers when it is missing or conflicting.
Imports nothing heavy: the commands call it before OpenCV or ONNX Runtime are touched."""

from __future__ import annotations

import functools
import importlib.metadata
import shlex


@functools.cache
def _requires() -> tuple[str, ...]:
    """The installed disseg's requirements, read once (a read of its metadata costs milliseconds)."""
    try:
        return tuple(importlib.metadata.requires("disseg") or ())
    except importlib.metadata.PackageNotFoundError:
        return ()


def extra(name: str) -> str:
    """The pip line that installs disseg's optional dependencies `name` (pyproject's install profiles) here: the
    profile's own requirements, read from the installed disseg's metadata, so the line works however disseg came
    (a checkout, a wheel, a Jetson); where disseg is not installed, the profile from its checkout."""
    wanted = [req.split(";")[0].strip() for req in _requires() if req.partition(";")[2].strip() == f'extra == "{name}"']
    if not wanted:
        return f"pip install '.[{name}]' (in disseg's checkout)"
    return "pip install " + " ".join(shlex.quote(req) for req in wanted)


OPENCV_MISSING = (
    f"OpenCV (cv2) is not installed. CPU: {extra('runtime')}; NVIDIA GPU: {extra('gpu')}; "
    f"Jetson: use JetPack's OpenCV (sudo apt install python3-opencv) and {extra('jetson')}"
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
            f"pip uninstall -y onnxruntime onnxruntime-gpu && {extra('gpu')} (or {extra('runtime')} on a CPU)"
        )
    return None


def opencv_wheels() -> dict[str, str]:
    """pip's OpenCV wheels installed here (on a Jetson they shadow JetPack's OpenCV, which has GStreamer)."""
    return {name: version for name in OPENCV_WHEELS if (version := installed(name))}
