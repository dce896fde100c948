"""ONNX Runtime: the backend every machine has (CPU provider), with its GPU providers where the build carries them,
and the diagnostics that say in one line why a GPU provider did not start."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import sys
from pathlib import Path

import numpy as np

from ..contract import ModelInfo
from ..deps import onnxruntime_conflict
from ..errors import BadInput, DisError, ModelFileError
from .base import Backend, Kind, TensorSpec

log = logging.getLogger("disseg.runtime")


_ORT_TYPES = {
    "tensor(uint8)": np.uint8,
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}
_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


def ort_providers(path: Path, available: list[str], *, precision: str) -> list:
    """ONNX Runtime's best providers here, with the options our models need: TensorRT's engine and timing
    caches beside the model, INT8 for Q/DQ models, FP16 where the model asks for it."""
    chosen: list = []
    for name in (p for p in _PREFERRED if p in available):
        if name == "TensorrtExecutionProvider":
            cache = str(path.parent / f"{path.stem}.ort-trt-cache")
            chosen.append(
                (
                    name,
                    {
                        "trt_engine_cache_enable": True,
                        "trt_engine_cache_path": cache,
                        "trt_timing_cache_enable": True,
                        "trt_timing_cache_path": cache,
                        "trt_int8_enable": precision == "int8",
                        "trt_fp16_enable": precision in ("fp16", "int8"),
                    },
                )
            )
        else:
            chosen.append(name)
    return chosen


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
            "no NVIDIA driver here: install one (580+ for CUDA 13), or use 'disseg[runtime]' on a machine without a GPU"
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


def _provider_name(provider) -> str:
    return provider if isinstance(provider, str) else provider[0]


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with the best providers this build has (TensorRT, CUDA, CPU, in that order). `model` is a
    file or, for checks on a graph that was never saved (parity, calibration), its serialized bytes. A GPU
    provider that does not start is reported in one line (`provider_errors` holds why), not ONNX Runtime's
    own multi-line fallback messages."""

    name = "onnxruntime"

    def __init__(
        self, model: str | Path | bytes, *, providers: list | None = None, threads: int = 0, precision: str = "fp32"
    ) -> None:
        super().__init__()
        import onnxruntime as ort

        path = Path("in-memory.onnx") if isinstance(model, bytes) else Path(model)
        conflict = onnxruntime_conflict()
        if conflict:
            log.warning("%s", conflict)
        chosen = providers or ort_providers(path, ort.get_available_providers(), precision=precision)
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.session, raised = self._session(
            ort, model if isinstance(model, bytes) else str(path), path, options, chosen
        )
        self.providers = self.session.get_providers()
        self.provider_errors = self._report_missing([_provider_name(p) for p in chosen], self.providers, raised)
        self.inputs = {
            i.name: TensorSpec(i.name, tuple(i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
            for i in self.session.get_inputs()
        }
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.output_specs = {
            o.name: TensorSpec(o.name, tuple(o.shape), np.dtype(_ORT_TYPES.get(o.type, np.float32)))
            for o in self.session.get_outputs()
        }
        self._binding = self.session.io_binding() if self.providers[0] != "CPUExecutionProvider" else None

    @staticmethod
    def _session(ort, model: str | bytes, path: Path, options, providers: list):
        """A session on `providers`, and None; when the GPU providers raise but the CPU one loads the model, the
        failure is theirs: a CPU session and their error. When the CPU cannot load it either, the file is at fault."""
        gpu = [_provider_name(p) for p in providers if _provider_name(p) != "CPUExecutionProvider"]
        try:
            if not gpu:
                return ort.InferenceSession(model, options, providers=providers), None
            preload_gpu_libraries()
            return _quietly(lambda: ort.InferenceSession(model, options, providers=providers), ort), None
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
            first = str(err).splitlines()[0][:200] if str(err) else type(err).__name__
            if gpu:
                try:
                    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"]), first
                except Exception:
                    pass
            raise ModelFileError(
                f"{path}: ONNX Runtime cannot load it ({first}); re-export it with dis-export"
            ) from err

    @staticmethod
    def _report_missing(asked: list[str], running: list[str], raised: str | None) -> dict[str, str]:
        """The GPU providers asked for that did not start, and why (the error they `raised`, else the loader's
        reason). Falling back to the CPU is one warning line with the fix (CUDA's reason first: TensorRT runs on
        top of it); another GPU provider running the model instead is a note (TensorRT is optional beside CUDA)."""
        missing = {
            p: raised or provider_load_error(p) for p in asked if p not in running and p != "CPUExecutionProvider"
        }
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

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        try:
            if self._binding is None:
                return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
            # On a GPU provider, bind once per call so outputs are copied back in one transfer each.
            for name, array in feeds.items():
                self._binding.bind_cpu_input(name, array)
            for name in self.outputs:
                self._binding.bind_output(name, "cpu")
            self.session.run_with_iobinding(self._binding)
            return dict(zip(self.outputs, self._binding.copy_outputs_to_cpu()))
        except Exception as err:
            raise DisError(
                f"ONNX Runtime ({self.providers[0]}) failed to run the model: {str(err).splitlines()[0][:200]}"
            ) from err

    def close(self) -> None:
        self.session = None


def _quietly(create, ort):
    """Run `create` with ONNX Runtime's console output off: for each GPU provider it cannot start it logs errors and
    prints a fallback block; the backend reports the outcome in one line instead."""
    ort.set_default_logger_severity(4)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return create()
    finally:
        ort.set_default_logger_severity(2)


def cpu_backend(model: str | Path | bytes, *, threads: int = 0) -> OnnxRuntimeBackend:
    """ONNX Runtime on the CPU provider alone: the reference the export's parity gate and the calibration's
    accuracy checks run models on."""
    return OnnxRuntimeBackend(model, providers=["CPUExecutionProvider"], threads=threads)


def _open(path: Path, info: ModelInfo, *, cache_dir: Path | None = None, threads: int = 0) -> OnnxRuntimeBackend:
    if path.suffix != ".onnx":
        raise BadInput(f"{path} is a TensorRT engine; ONNX Runtime needs the .onnx it was built from")
    backend = OnnxRuntimeBackend(path, threads=threads, precision=info.precision)
    if info.precision == "int8" and backend.providers[0] == "CPUExecutionProvider":
        _say_int8_on_this_cpu(path)
    return backend


@functools.cache
def _say_int8_on_this_cpu(path: Path) -> None:
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


def _doctor_check(path: Path, info: ModelInfo) -> dict | None:
    if path.suffix != ".onnx":
        return None
    backend = _open(path, info)
    providers = backend.providers
    backend.close()
    return {"status": f"ok ({providers[0]})"}


KIND = Kind("onnxruntime", "ONNX Runtime", claims=lambda path: path.suffix == ".onnx", open=_open, check=_doctor_check)
