"""Inference backends behind one small interface (Polygraphy's runner shape): `inputs`, `outputs`,
`infer(dict[str, ndarray]) -> dict[str, ndarray]`, `close()`. The public `infer` checks names, dtypes
and shapes once; each backend implements `_infer`. Heavy imports stay inside the backend that needs them."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import BadInput, ModelFileError



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

    def __enter__(self) -> "Backend":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_ORT_TYPES = {"tensor(uint8)": np.uint8, "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(int32)": np.int32,
              "tensor(int64)": np.int64}
_PREFERRED = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")


class OnnxRuntimeBackend(Backend):
    """ONNX Runtime with the best providers this build has (TensorRT, CUDA, CPU, in that order)."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, *, providers: list[str] | None = None, threads: int = 0) -> None:
        super().__init__()
        import onnxruntime as ort

        available = ort.get_available_providers()
        chosen = providers or [p for p in _PREFERRED if p in available]
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=chosen)
        except Exception as err:  # onnxruntime raises its own Fail/InvalidGraph/... types
            raise ModelFileError(f"{path}: ONNX Runtime cannot load it ({str(err).splitlines()[0][:200]}); re-export it with dis-export") from err
        self.providers = self.session.get_providers()
        self.inputs = {i.name: TensorSpec(i.name, tuple(i.shape), np.dtype(_ORT_TYPES.get(i.type, np.float32)))
                       for i in self.session.get_inputs()}
        self.outputs = [o.name for o in self.session.get_outputs()]
        self._binding = self.session.io_binding() if self.providers[0] != "CPUExecutionProvider" else None

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self._binding is None:
            return dict(zip(self.outputs, self.session.run(self.outputs, feeds)))
        # On a GPU provider, bind once per call so outputs are copied back in one transfer each.
        for name, array in feeds.items():
            self._binding.bind_cpu_input(name, array)
        for name in self.outputs:
            self._binding.bind_output(name, "cpu")
        self.session.run_with_iobinding(self._binding)
        return dict(zip(self.outputs, self._binding.copy_outputs_to_cpu()))

    def close(self) -> None:
        self.session = None


class TensorRTBackend(Backend):
    """A serialized TensorRT engine through the name-based API (TensorRT >= 10) and cuda-python:
    pinned host buffers, one stream, and a CUDA graph replayed for the fixed-shape engine."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, *, use_cuda_graph: bool = True) -> None:
        super().__init__()
        import tensorrt as trt
        from cuda.bindings import runtime as cudart

        self._cudart = cudart
        self._logger = trt.Logger(trt.Logger.WARNING)
        runtime = trt.Runtime(self._logger)
        self.engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ModelFileError(f"{engine_path}: TensorRT could not deserialize it; rebuild: dis-export MODEL.onnx --engine")
        self.context = self.engine.create_execution_context()
        self.stream = self._check(cudart.cudaStreamCreate())
        self._host, self._device = {}, {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            if -1 in shape:  # dynamic batch: run at the profile's largest batch
                shape = tuple(self.engine.get_tensor_profile_shape(name, 0)[2]) if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else shape
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.inputs[name] = TensorSpec(name, shape, dtype)
                self.context.set_input_shape(name, shape)
            else:
                self.outputs.append(name)
        for name in list(self.inputs) + self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            nbytes = int(np.prod(shape)) * dtype.itemsize
            host_ptr = self._check(cudart.cudaMallocHost(nbytes))
            self._host[name] = np.ctypeslib.as_array((np.ctypeslib.ctypes.c_byte * nbytes).from_address(host_ptr)).view(dtype).reshape(shape)
            self._device[name] = self._check(cudart.cudaMalloc(nbytes))
            self.context.set_tensor_address(name, self._device[name])
        self._graph = None
        self._use_graph = use_cuda_graph

    def _check(self, result):
        err, *values = result if isinstance(result, tuple) else (result,)
        if int(err) != 0:
            raise ModelFileError(f"CUDA call failed: {err}")
        return values[0] if values else None

    def _enqueue(self) -> None:
        cudart = self._cudart
        kind_h2d, kind_d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.inputs:
            self._check(cudart.cudaMemcpyAsync(self._device[name], self._host[name].ctypes.data, self._host[name].nbytes, kind_h2d, self.stream))
        self.context.execute_async_v3(self.stream)
        for name in self.outputs:
            self._check(cudart.cudaMemcpyAsync(self._host[name].ctypes.data, self._device[name], self._host[name].nbytes, kind_d2h, self.stream))

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self._cudart
        for name, array in feeds.items():
            self._host[name][: len(array)] = array
        if self._use_graph and self._graph is None:
            self._enqueue()  # first run outside capture: TensorRT allocates lazily
            self._check(cudart.cudaStreamSynchronize(self.stream))
            self._check(cudart.cudaStreamBeginCapture(self.stream, cudart.cudaStreamCaptureMode.cudaStreamCaptureModeGlobal))
            self._enqueue()
            graph = self._check(cudart.cudaStreamEndCapture(self.stream))
            self._graph = self._check(cudart.cudaGraphInstantiate(graph, 0))
        if self._graph is not None:
            self._check(cudart.cudaGraphLaunch(self._graph, self.stream))
        else:
            self._enqueue()
        self._check(cudart.cudaStreamSynchronize(self.stream))
        batch = len(next(iter(feeds.values())))
        return {name: self._host[name][:batch].copy() for name in self.outputs}

    def close(self) -> None:
        cudart = getattr(self, "_cudart", None)
        if cudart is None:
            return
        for ptr in getattr(self, "_device", {}).values():
            cudart.cudaFree(ptr)
        for array in getattr(self, "_host", {}).values():
            cudart.cudaFreeHost(array.ctypes.data)
        if getattr(self, "stream", None) is not None:
            cudart.cudaStreamDestroy(self.stream)
        self._device, self._host, self.stream, self._cudart = {}, {}, None, None


def tensorrt_available() -> bool:
    try:
        import tensorrt  # noqa: F401
        from cuda.bindings import runtime  # noqa: F401
    except ImportError:
        return False
    return True
