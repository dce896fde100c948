"""TensorRT engines from our ONNX files: build (explicitly asked for), sidecar contract, and cache checks.

`tensorrt` is imported only inside the functions that need it. Everything here but `build_engine`
and `trt_facts` runs without TensorRT, so the cache logic is tested on any machine.
"""
from __future__ import annotations

import json
from pathlib import Path

from .atomic import atomic_write, atomic_write_text
from .contract import ModelInfo, file_sha256, read_model_info
from .errors import ModelFileError



def sidecar_path(engine: str | Path) -> Path:
    return Path(str(engine) + ".json")


def engine_facts(info: ModelInfo, *, onnx_sha256: str, tensorrt_version: str, gpu_name: str, compute_capability: str,
                 dla_core: int | None = None) -> ModelInfo:
    """The ONNX model's contract plus what makes an engine valid only on one TensorRT and GPU."""
    extra = dict(info.extra)
    extra["engine"] = {"tensorrt_version": tensorrt_version, "gpu_name": gpu_name,
                       "compute_capability": compute_capability, "dla_core": dla_core}
    return info.replace(onnx_sha256=onnx_sha256, extra=extra)


def write_sidecar(engine: str | Path, info: ModelInfo) -> Path:
    """Write `<engine>.json`: the contract's keys (unprefixed JSON), readable from C++ without Python."""
    path = sidecar_path(engine)
    atomic_write_text(path, json.dumps({"disseg": {k[len("disseg."):]: json.loads(v) for k, v in info.to_metadata().items()}}, indent=2))
    return path


def read_sidecar(engine: str | Path) -> ModelInfo:
    path = sidecar_path(engine)
    if not path.is_file():
        raise ModelFileError(f"{engine}: no sidecar {path.name}; rebuild the engine with: dis-export MODEL.onnx --engine")
    try:
        data = json.loads(path.read_text())["disseg"]
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise ModelFileError(f"{path}: corrupt engine sidecar ({type(err).__name__}); rebuild with: dis-export MODEL.onnx --engine") from err
    return ModelInfo.from_metadata({"disseg." + k: json.dumps(v) for k, v in data.items()}, source=str(path))


def mismatch(info: ModelInfo, *, tensorrt_version: str, gpu_name: str, compute_capability: str, onnx_sha256: str | None = None) -> str | None:
    """Why an engine described by `info` cannot run here, or None when it fits."""
    facts = info.extra.get("engine")
    if not facts:
        return "its sidecar has no engine facts"
    if facts["tensorrt_version"] != tensorrt_version or facts["compute_capability"] != compute_capability:
        return (f"engine was built for TensorRT {facts['tensorrt_version']} on sm_{facts['compute_capability']}; "
                f"this machine has {tensorrt_version} on sm_{compute_capability}")
    if facts["gpu_name"] != gpu_name:
        return f"engine was built on {facts['gpu_name']}, this GPU is {gpu_name}"
    if onnx_sha256 is not None and info.onnx_sha256 != onnx_sha256:
        return "engine was built from a different ONNX file (sha256 differs)"
    return None


def cached_engine_path(onnx_path: str | Path, *, tensorrt_version: str, compute_capability: str, cache_dir: str | Path | None = None) -> Path:
    """Where the engine for this ONNX, TensorRT version and GPU lives: `<stem>.trt<ver>.sm<cc>.engine` beside it."""
    onnx_path = Path(onnx_path)
    folder = Path(cache_dir) if cache_dir else onnx_path.parent
    return folder / f"{onnx_path.stem}.trt{tensorrt_version}.sm{compute_capability}.engine"


def trt_facts() -> tuple[str, str, str]:
    """(TensorRT version, GPU name, compute capability as '87') of this machine. Needs tensorrt and a GPU."""
    import tensorrt as trt
    from cuda.bindings import runtime as cudart

    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise ModelFileError("no CUDA GPU is visible; TensorRT engines need one (use --backend onnxruntime)")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return trt.__version__, name.strip("\x00 "), f"{props.major}{props.minor}"


def build_engine(onnx_path: str | Path, engine_path: str | Path, *, workspace_gib: float = 2.0,
                 timing_cache: str | Path | None = None, dla_core: int | None = None) -> ModelInfo:
    """Build a serialized engine from one of our ONNX files as a strongly typed network (precision comes
    from the ONNX: FP32, FP16 casts or INT8 Q/DQ; no builder precision flags) and write it with its
    sidecar. Returns the sidecar's contract. Raises ModelFileError when TensorRT cannot parse or build it."""
    import tensorrt as trt

    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    info = read_model_info(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelFileError(f"{onnx_path}: TensorRT could not parse it: {errors[:300]}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    cache = None
    if timing_cache is not None and Path(timing_cache).is_file():
        cache = config.create_timing_cache(Path(timing_cache).read_bytes())
    else:
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    if info.batch == "dynamic":
        profile = builder.create_optimization_profile()
        shape = (info.input_height, info.input_width, 3)
        profile.set_shape(info.input_name, (1, *shape), (1, *shape), (int(info.extra.get("max_batch", 8)), *shape))
        config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelFileError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    if timing_cache is not None:
        data = memoryview(config.get_timing_cache().serialize())
        atomic_write(timing_cache, lambda tmp: Path(tmp).write_bytes(data))
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(memoryview(serialized)))
    version, gpu, cc = trt_facts()
    facts = engine_facts(info, onnx_sha256=file_sha256(onnx_path), tensorrt_version=version, gpu_name=gpu,
                         compute_capability=cc, dla_core=dla_core)
    write_sidecar(engine_path, facts)
    return facts
