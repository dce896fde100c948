"""ONNX Runtime's diagnostics, apart from its runner (backends/onnxrt.py), as Polygraphy keeps loaders apart from
runners: why a GPU provider did not start and what fixes it, in one line; the CUDA libraries pip brought, loaded
before a session needs them; the INT8-on-this-CPU note; and what dis-doctor reports of ONNX Runtime here."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import sys
from pathlib import Path

from ..deps import extra, installed, onnxruntime_conflict

log = logging.getLogger("disseg.runtime")

# ONNX Runtime's GPU providers live in shared libraries of their own, loaded when a session asks for them.
_PROVIDER_LIBRARIES = {
    "TensorrtExecutionProvider": "onnxruntime_providers_tensorrt",
    "CUDAExecutionProvider": "onnxruntime_providers_cuda",
}
_SHORT = {"TensorrtExecutionProvider": "TensorRT", "CUDAExecutionProvider": "CUDA"}


def cuda_fix(why: str) -> str:
    """What to do when ONNX Runtime's CUDA provider did not start for `why`: the driver when libcuda is missing,
    JetPack's libraries on a Jetson, pip's CUDA and cuDNN elsewhere."""
    if "libcuda.so" in why:
        return (
            f"no NVIDIA driver here: install one (580+ for CUDA 13), or on a machine without a GPU {extra('runtime')}"
        )
    if Path("/etc/nv_tegra_release").is_file():
        return "JetPack's CUDA and cuDNN are missing: sudo apt install nvidia-jetpack; dis-doctor shows the rest"
    if "cannot open shared object" in why:
        return (
            "pip install 'onnxruntime-gpu[cuda,cudnn]' brings CUDA 13 and cuDNN 9 (a driver older than 580, CUDA 12: "
            "'onnxruntime-gpu[cuda,cudnn]<1.27')"
        )
    return "dis-doctor shows the GPU and driver"


@functools.cache
def preload_gpu_libraries() -> None:
    """CUDA and cuDNN from pip (onnxruntime-gpu[cuda,cudnn]) live in site-packages/nvidia, where the dynamic loader
    never looks; ONNX Runtime's preload_dlls loads them before a session needs them. Skipped where torch is
    imported (it loaded its own) or no such folder sits beside onnxruntime (system CUDA, JetPack)."""
    import onnxruntime as ort

    nvidia = Path(ort.__file__).resolve().parent.parent / "nvidia"
    if "torch" in sys.modules or not nvidia.is_dir() or not hasattr(ort, "preload_dlls"):
        return
    with contextlib.redirect_stdout(io.StringIO()):  # it prints a line for each library it does not find
        try:
            ort.preload_dlls()
        except Exception as err:  # a failed preload leaves the provider's own load to say what is missing
            log.debug("onnxruntime.preload_dlls: %s", err)


def provider_load_error(provider: str) -> str:
    """Why ONNX Runtime's `provider` did not start here: the dynamic loader's words for the library it lacks, or,
    when its library loads, the GPU or driver."""
    import onnxruntime as ort

    name = _PROVIDER_LIBRARIES.get(provider)
    capi = Path(ort.__file__).resolve().parent / "capi"
    library = next((p for p in (capi / f"lib{name}.so", capi / f"{name}.dll") if p.is_file()), None) if name else None
    if library is None:
        return "this ONNX Runtime build does not carry it"
    try:
        ctypes.CDLL(str(library))
    except OSError as err:
        return str(err).splitlines()[0][:200]
    return "its libraries load, but it did not start: no usable GPU or driver here?"


def report_missing(asked: list[str], running: list[str], raised: str | None) -> dict[str, str]:
    """The GPU providers asked for that did not start, and why (the error they `raised`, else the loader's
    reason). Falling back to the CPU is one warning line with the fix (CUDA's reason first: TensorRT runs on
    top of it); another GPU provider running the model instead is a note (TensorRT is optional beside CUDA)."""
    missing = {p: raised or provider_load_error(p) for p in asked if p not in running and p != "CPUExecutionProvider"}
    if missing and running[0] == "CPUExecutionProvider":
        provider = "CUDAExecutionProvider" if "CUDAExecutionProvider" in missing else next(iter(missing))
        fix = (
            cuda_fix(missing[provider])
            if provider == "CUDAExecutionProvider"
            else "dis-doctor shows what this machine has"
        )
        log.warning(
            "ONNX Runtime's %s provider did not start (%s): running on the CPU; %s",
            _SHORT.get(provider, provider),
            missing[provider],
            fix,
        )
    elif missing:
        for provider, why in missing.items():
            log.info("ONNX Runtime's %s provider is not usable here (%s)", _SHORT.get(provider, provider), why)
    return missing


@functools.cache
def say_int8_on_this_cpu(path: Path) -> None:
    """An INT8 model on a CPU without int8 dot-product instructions may be slower than its FP32 model: one line,
    nothing switched."""
    from ..cpu import read_cpu

    cpu = read_cpu()
    if not cpu.int8_dot:
        log.warning(
            "%s is INT8, but this CPU (%s) lacks int8 dot-product instructions: it may run slower than the FP32 "
            ".onnx it was calibrated from (dis-doctor shows the CPU)",
            path.name,
            cpu.model,
        )


def facts() -> dict:
    """What dis-doctor reports of ONNX Runtime here: the packages, the providers, the CUDA a GPU build needs."""
    info: dict = {"onnxruntime": installed("onnxruntime"), "onnxruntime-gpu": installed("onnxruntime-gpu")}
    conflict = onnxruntime_conflict()
    if conflict:
        info["warning"] = conflict
    try:
        import onnxruntime as ort
    except ImportError:
        info["error"] = f"ONNX Runtime is not installed: {extra('runtime')} (CPU) or {extra('gpu')}"
        return info
    info["version"], info["providers"] = ort.__version__, ort.get_available_providers()
    cuda = getattr(getattr(ort, "capi", None), "build_and_package_info", None)
    if getattr(cuda, "cuda_version", None):  # a GPU build: which CUDA it needs, and whether pip brought one
        nvidia = Path(ort.__file__).resolve().parent.parent / "nvidia"
        info["built_for_cuda"] = cuda.cuda_version
        info["pip_cuda_libraries"] = sorted(p.name for p in nvidia.iterdir()) if nvidia.is_dir() else None
    return info
