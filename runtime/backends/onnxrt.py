"""ONNX Runtime: the backend every machine has (CPU provider), with its GPU providers where the build carries them.
This is the runner; why a provider did not start, and what dis-doctor reports, live in onnxrt_diagnostics.py."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from ..contract import ModelInfo
from ..deps import onnxruntime_conflict
from ..errors import BadInput, DisError, ModelFileError
from .base import Backend, Kind, TensorSpec
from .onnxrt_diagnostics import facts, preload_gpu_libraries, report_missing, say_int8_on_this_cpu

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
        self.provider_errors = report_missing([_provider_name(p) for p in chosen], self.providers, raised)
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
        say_int8_on_this_cpu(path)
    return backend


def _doctor_check(path: Path | str, info: ModelInfo) -> dict | None:
    if not isinstance(path, Path) or path.suffix != ".onnx":
        return None
    backend = _open(path, info)
    providers = backend.providers
    backend.close()
    return {"status": f"ok ({providers[0]})"}


def _claims(model: Path | str) -> bool:
    return isinstance(model, Path) and model.suffix == ".onnx"


KIND = Kind("onnxruntime", "ONNX Runtime", claims=_claims, open=_open, check=_doctor_check, facts=facts)
