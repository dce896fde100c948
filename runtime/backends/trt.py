"""TensorRT and TensorRT for RTX: serialized engines (checked against their sidecar and this machine) and ONNX files
through the engine cache, built on first use.

Unverified: no machine of this project can run a TensorRT engine (docs/not-verified.md)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..contract import ModelInfo, file_sha256, read_sidecar
from ..deps import installed
from ..engine_cache import (
    FLAVOUR_NAMES,
    FLAVOURS,
    build_engine,
    built_for,
    cached_engine_path,
    cuda_device_count,
    import_trt,
    mismatch,
    tensorrt_logger,
    this_machine,
)
from ..errors import BadInput, DisError, ModelFileError
from .base import Backend, Kind, TensorSpec

log = logging.getLogger("disseg.runtime")


class TensorRTBackend(Backend):
    """A serialized TensorRT (or TensorRT for RTX) engine through the name-based API (TensorRT >= 10) and
    cuda-python: pinned host buffers sized for the largest batch, one stream, and a CUDA graph replayed for
    fixed-shape engines (plain enqueue where capture fails). Dynamic-batch engines run the batch given.

    Unverified: no machine of this project can run a TensorRT engine (docs/not-verified.md)."""

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

        self._trt, self._cudart = import_trt(flavour), cudart
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, int] = {}
        self._graph = self._graph_exec = self.stream = None
        self._logger = tensorrt_logger(self._trt)
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
        self.stream = self._cuda(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._describe()
        self._allocate()
        self._use_graph = use_cuda_graph and self.max_batch is None  # one graph per shape: fixed-batch engines only
        self._batch_set: int | None = None

    def _cuda(self, result, what: str):
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
            host_ptr = self._cuda(cudart.cudaMallocHost(nbytes), "cudaMallocHost")
            buffer = (np.ctypeslib.ctypes.c_byte * nbytes).from_address(host_ptr)
            self._host[name] = np.ctypeslib.as_array(buffer).view(dtype).reshape(shape)
            self._device[name] = self._cuda(cudart.cudaMalloc(nbytes), "cudaMalloc")
            if not self.context.set_tensor_address(name, self._device[name]):
                raise DisError(f"TensorRT refused the device address of {name!r}")

    def _enqueue(self, batch: int) -> None:
        cudart = self._cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.inputs:
            rows = self._host[name][:batch]
            self._cuda(
                cudart.cudaMemcpyAsync(self._device[name], rows.ctypes.data, rows.nbytes, h2d, self.stream), "copy in"
            )
        if not self.context.execute_async_v3(self.stream):
            raise DisError("TensorRT failed to run the engine (execute_async_v3 returned false; see its log above)")
        for name in self.outputs:
            rows = self._host[name][:batch]
            self._cuda(
                cudart.cudaMemcpyAsync(rows.ctypes.data, self._device[name], rows.nbytes, d2h, self.stream), "copy out"
            )

    def _capture(self, batch: int) -> None:
        """Record one run as a CUDA graph; where capture fails, log it and keep plain enqueue."""
        cudart = self._cudart
        self._enqueue(batch)  # the first run outside capture: TensorRT allocates lazily
        self._cuda(cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        try:
            self._cuda(
                cudart.cudaStreamBeginCapture(self.stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal),
                "cudaStreamBeginCapture",
            )
            try:
                self._enqueue(batch)
            finally:
                err, graph = cudart.cudaStreamEndCapture(self.stream)
                self._graph = graph if int(err) == 0 else None
            self._graph_exec = self._cuda(cudart.cudaGraphInstantiate(self._graph, 0), "cudaGraphInstantiate")
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
            self._cuda(self._cudart.cudaGraphLaunch(self._graph_exec, self.stream), "cudaGraphLaunch")
        else:
            self._enqueue(batch)
        self._cuda(self._cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
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
    try:
        import_trt(flavour)
        from cuda.bindings import runtime  # noqa: F401
    except (BadInput, ImportError):
        return False
    return True


def _engine_for_onnx(onnx_path: Path, cache_dir: Path | None) -> Path:
    """The cached engine for this ONNX on this TensorRT and GPU, built on first use (and rebuilt when stale)."""
    here = this_machine()
    engine = cached_engine_path(onnx_path, here, cache_dir=cache_dir)
    if engine.is_file():
        try:
            why = mismatch(read_sidecar(engine), here, onnx_sha256=file_sha256(onnx_path))
        except ModelFileError as err:
            why = str(err)
        if why is None:
            return engine
        log.warning("rebuilding %s: %s", engine.name, why)
    else:
        log.warning(
            "building a TensorRT engine for %s on this GPU (first use; cached as %s)", onnx_path.name, engine.name
        )
    build_engine(onnx_path, engine, flavour=here.flavour)
    return engine


def _open_engine(path: Path, info: ModelInfo) -> TensorRTBackend:
    """A serialized engine: it must fit this machine's TensorRT flavour, version and GPU exactly."""
    built = built_for(info)
    if built is None:
        raise ModelFileError(f"{path}: its sidecar has no engine facts. Rebuild: dis-export MODEL.onnx --engine")
    if not tensorrt_available(built.flavour):
        raise BadInput(
            f"{path} is a {FLAVOUR_NAMES[built.flavour]} engine but {built.flavour} (with cuda-python) is not "
            f"installed here; run the .onnx with --backend onnxruntime"
        )
    why = mismatch(info, this_machine(built.flavour))
    if why:
        raise ModelFileError(f"{why}. Rebuild: dis-export MODEL.onnx --engine")
    return TensorRTBackend(path, flavour=built.flavour, dla_core=info.extra["engine"].get("dla_core"))


def _open(path: Path, info: ModelInfo, *, cache_dir: Path | None = None, threads: int = 0) -> TensorRTBackend:
    if path.suffix != ".onnx":
        return _open_engine(path, info)
    return TensorRTBackend(_engine_for_onnx(path, cache_dir))


def _claims(model: Path | str) -> bool:
    """An engine always (only TensorRT runs one); an ONNX file where TensorRT and a GPU are here."""
    if not isinstance(model, Path):  # a URL: a served model
        return False
    return model.suffix != ".onnx" or (tensorrt_available() and cuda_device_count() > 0)


def _doctor_check(path: Path | str, info: ModelInfo) -> dict | None:
    """For an ONNX file: the engine cache entry and whether it fits; for an engine: what it was built for."""
    if not isinstance(path, Path):
        return None
    here = this_machine()
    if path.suffix == ".onnx":
        engine = cached_engine_path(path, here)
        cache: dict = {"path": str(engine), "exists": engine.is_file()}
        if engine.is_file():
            try:
                cache["fits"] = mismatch(read_sidecar(engine), here) or "yes"
            except ModelFileError as err:
                cache["fits"] = str(err)
        status = "ok" if engine.is_file() else "builds the cached engine on first use"
        return {"status": status, "engine_cache": cache}
    why = mismatch(info, here)
    built = built_for(info)
    engine = {"built_for": built.__dict__ if built else None, "fits": why or "yes"}
    return {"status": "ok" if why is None else {"error": why}, "engine": engine}


def _facts() -> dict:
    """What dis-doctor reports of TensorRT here: each flavour's version (None where absent), and cuda-python."""
    info: dict = {}
    for flavour in FLAVOURS:
        try:
            info[flavour] = import_trt(flavour).__version__
        except Exception:  # absent, or present and broken: not usable either way
            info[flavour] = None
    info["cuda-python"] = installed("cuda-python") or installed("cuda-bindings")
    return info


KIND = Kind("tensorrt", "TensorRT", claims=_claims, open=_open, check=_doctor_check, facts=_facts)
