"""Inference backends behind one small interface (Polygraphy's runner shape): `inputs`, `outputs`,
`infer(dict[str, ndarray]) -> dict[str, ndarray]`, `close()`. The public `infer` checks names, dtypes
and shapes once; each backend implements `_infer`. Heavy imports stay inside the backend that needs them."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import io
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .choices import BACKENDS  # noqa: F401 (the backends' names, with the classes that implement them)
from .deps import onnxruntime_conflict
from .errors import BadInput, DisError, ModelFileError

log = logging.getLogger("disseg.runtime")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple  # ints, or a string / None for a dynamic dimension
    dtype: np.dtype


class Backend:
    name = "backend"

    def __init__(self) -> None:
        self.inputs: dict[str, TensorSpec] = {}
        self.outputs: list[str] = []
        self.output_specs: dict[str, TensorSpec] = {}  # where the backend knows them (checked against the metadata)
        self.max_batch: int | None = None  # the largest batch a dynamic-batch model takes, None: no limit

    def infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model. Raises BadInput when a feed's name, dtype or shape does not fit the model."""
        if set(feeds) != set(self.inputs):
            raise BadInput(f"model inputs are {sorted(self.inputs)}, got {sorted(feeds)}")
        for name, array in feeds.items():
            spec = self.inputs[name]
            if array.dtype != spec.dtype:
                raise BadInput(f"input {name!r}: expected {spec.dtype}, got {array.dtype}")
            if len(array.shape) != len(spec.shape) or any(
                isinstance(d, int) and d != a for d, a in zip(spec.shape, array.shape)
            ):
                raise BadInput(f"input {name!r}: expected shape {spec.shape}, got {array.shape}")
        return self._infer(feeds)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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


def infer_in_batches(backend: Backend, input_name: str, frames: np.ndarray, step: int) -> dict[str, np.ndarray]:
    """All of `frames` through `backend`, `step` at a time; the last chunk is padded with copies of its last
    frame (a fixed-batch model takes whole batches only) and the outputs trimmed back to len(frames). The one
    place batches are padded: the Segmenter, the parity gate and calibration all come here."""
    outputs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(frames), step):
        chunk = frames[i : i + step]
        if len(chunk) < step:
            chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), 0)])
        for name, value in backend.infer({input_name: chunk}).items():
            outputs.setdefault(name, []).append(value)
    return {name: np.concatenate(parts)[: len(frames)] for name, parts in outputs.items()}


class TensorRTBackend(Backend):
    """A serialized TensorRT (or TensorRT for RTX) engine through the name-based API (TensorRT >= 10) and
    cuda-python: pinned host buffers sized for the largest batch, one stream, and a CUDA graph replayed for
    fixed-shape engines (plain enqueue where capture fails). Dynamic-batch engines run the batch given.

    Unverified: no machine of this project can run a TensorRT engine (README, "What is not verified")."""

    name = "tensorrt"

    def __init__(
        self,
        engine_path: str | Path,
        *,
        flavour: str | None = None,
        dla_core: int | None = None,
        use_cuda_graph: bool = True,
    ) -> None:
        super().__init__()
        from cuda.bindings import runtime as cudart

        from .engine_cache import import_trt

        self._trt, self._cudart = import_trt(flavour), cudart
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        self._graph = self._graph_exec = self.stream = None
        self._logger = self._trt.Logger(self._trt.Logger.WARNING)
        self._runtime = self._trt.Runtime(self._logger)
        if dla_core is not None:
            self._runtime.DLA_core = int(dla_core)
        self.engine = self._runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ModelFileError(
                f"{engine_path}: TensorRT could not deserialize it; rebuild: dis-export MODEL.onnx --engine"
            )
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise DisError(f"{engine_path}: TensorRT could not create an execution context (out of GPU memory?)")
        self.stream = self._check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._describe()
        self._allocate()
        self._use_graph = use_cuda_graph and self.max_batch is None  # one graph per shape: fixed-batch engines only
        self._batch_set: int | None = None

    def _check(self, result, what: str):
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise DisError(f"CUDA {what} failed: {err}")
        return values[0] if values else None

    def _describe(self) -> None:
        trt = self._trt
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            if self.engine.get_tensor_mode(name) != trt.TensorIOMode.INPUT:
                self.outputs.append(name)
                dims = tuple(int(d) if d >= 0 else None for d in self.engine.get_tensor_shape(name))
                self.output_specs[name] = TensorSpec(name, dims, dtype)
                continue
            shape = tuple(self.engine.get_tensor_shape(name))
            if shape[0] == -1:
                self.max_batch = int(self.engine.get_tensor_profile_shape(name, 0)[2][0])
                shape = (None, *shape[1:])
            self.inputs[name] = TensorSpec(name, shape, dtype)

    def _set_batch(self, batch: int) -> None:
        for name, spec in self.inputs.items():
            if not self.context.set_input_shape(name, (batch, *spec.shape[1:])):
                raise DisError(
                    f"TensorRT refused batch {batch} for input {name!r} (engine profile: 1..{self.max_batch})"
                )
        self._batch_set = batch

    def _allocate(self) -> None:
        """Buffers for the largest batch; a smaller batch uses their leading rows."""
        cudart = self._cudart
        self._set_batch(self.max_batch or next(iter(self.inputs.values())).shape[0])
        for name in list(self.inputs) + self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            host_ptr = self._check(cudart.cudaMallocHost(nbytes), "cudaMallocHost")
            buffer = (np.ctypeslib.ctypes.c_byte * nbytes).from_address(host_ptr)
            self._host[name] = np.ctypeslib.as_array(buffer).view(dtype).reshape(shape)
            self._device[name] = self._check(cudart.cudaMalloc(nbytes), "cudaMalloc")
            if not self.context.set_tensor_address(name, self._device[name]):
                raise DisError(f"TensorRT refused the device address of {name!r}")

    def _enqueue(self, batch: int) -> None:
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.inputs:
            rows = self._host[name][:batch]
            self._check(
                cudart.cudaMemcpyAsync(self._device[name], rows.ctypes.data, rows.nbytes, h2d, self.stream), "copy in"
            )
        if not self.context.execute_async_v3(self.stream):
            raise DisError("TensorRT failed to run the engine (execute_async_v3 returned false; see its log above)")
        for name in self.outputs:
            rows = self._host[name][:batch]
            self._check(
                cudart.cudaMemcpyAsync(rows.ctypes.data, self._device[name], rows.nbytes, d2h, self.stream), "copy out"
            )

    def _capture(self, batch: int) -> None:
        """Record one run as a CUDA graph; where capture fails, log it and keep plain enqueue."""
        cudart = self._cudart
        self._enqueue(batch)  # the first run outside capture: TensorRT allocates lazily
        self._check(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        try:
            self._check(
                cudart.cudaStreamBeginCapture(self.stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal),
                "cudaStreamBeginCapture",
            )
            try:
                self._enqueue(batch)
            finally:
                err, graph = cudart.cudaStreamEndCapture(self.stream)
                self._graph = graph if int(err) == 0 else None
            self._graph_exec = self._check(cudart.cudaGraphInstantiate(self._graph, 0), "cudaGraphInstantiate")
        except DisError as err:
            log.warning("CUDA graph capture failed (%s); running without a graph", err)
            self._release_graph()
            self._use_graph = False

    def _release_graph(self) -> None:
        if self._graph_exec is not None:
            self._cudart.cudaGraphExecDestroy(self._graph_exec)
        if self._graph is not None:
            self._cudart.cudaGraphDestroy(self._graph)
        self._graph = self._graph_exec = None

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        batch = len(next(iter(feeds.values())))
        if self.max_batch is not None:
            if batch > self.max_batch:
                raise BadInput(
                    f"batch {batch} is over this engine's maximum {self.max_batch}; rebuild it with a larger "
                    "--max-batch"
                )
            if batch != self._batch_set:
                self._set_batch(batch)
        for name, array in feeds.items():
            self._host[name][:batch] = array
        if self._use_graph and self._graph_exec is None:
            self._capture(batch)
        if self._graph_exec is not None:
            self._check(self._cudart.cudaGraphLaunch(self._graph_exec, self.stream), "cudaGraphLaunch")
        else:
            self._enqueue(batch)
        self._check(self._cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        return {name: self._host[name][:batch].copy() for name in self.outputs}

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        self._release_graph()
        self.context = self.engine = None
        for ptr in self._device.values():
            cudart.cudaFree(ptr)
        for array in self._host.values():
            cudart.cudaFreeHost(array.ctypes.data)
        if self.stream is not None:
            cudart.cudaStreamDestroy(self.stream)
        self._device, self._host, self.stream, self._cudart = {}, {}, None, None


def tensorrt_available(flavour: str | None = None) -> bool:
    """TensorRT (of `flavour`, or either) and cuda-python are importable; says nothing of a GPU."""
    from .engine_cache import import_trt

    try:
        import_trt(flavour)
        from cuda.bindings import runtime  # noqa: F401
    except (BadInput, ImportError):
        return False
    return True
