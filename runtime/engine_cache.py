"""TensorRT engines from our ONNX files: build (explicitly asked for), sidecar contract, and cache checks.

Two flavours of NVIDIA's builder: TensorRT (`tensorrt`: desktops, servers, JetPack) and TensorRT for RTX
(`tensorrt_rtx`, which also builds ahead of time, on a machine without a GPU, for a named compute
capability). An engine runs only under the flavour, TensorRT major.minor.patch and compute capability it
was built for, and a TensorRT engine only on the GPU model it was built on.

The TensorRT modules are imported only inside the functions that need them; the sidecar, cache keys and
mismatch rules run anywhere and are tested on any machine.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .atomic import atomic_write
from .choices import DEFAULT_MAX_BATCH
from .contract import SCENE_TAGS, ModelInfo, file_sha256, read_model_info, write_sidecar
from .deps import extra
from .errors import BadInput, ModelFileError

FLAVOURS = ("tensorrt", "tensorrt_rtx")
FLAVOUR_NAMES = {"tensorrt": "TensorRT", "tensorrt_rtx": "TensorRT for RTX"}
INSTALL_HINT = (
    f"{extra('tensorrt-cu13')} (desktop/server; CUDA 12 drivers: {extra('tensorrt-cu12')}), JetPack's "
    f"python3-libnvinfer (Jetson), or {extra('tensorrt-rtx')} (TensorRT for RTX)"
)


@dataclass(frozen=True)
class Target:
    """What an engine is valid for."""

    flavour: str  # "tensorrt" | "tensorrt_rtx"
    tensorrt_version: str  # major.minor.patch
    compute_capability: str  # "87"
    gpu_name: str | None  # None: built ahead of time, for any GPU of that compute capability


def short_version(version: str) -> str:
    """'10.3.0.30' -> '10.3.0': the Python wheels and C++ headers agree on major.minor.patch only."""
    return ".".join(str(version).split(".")[:3])


def import_trt(flavour: str | None = None):
    """The TensorRT module of `flavour`, or the first one installed (TensorRT before TensorRT for RTX)."""
    if flavour is not None and flavour not in FLAVOURS:
        raise BadInput(f"unknown TensorRT flavour {flavour!r}; choose from {', '.join(FLAVOURS)}")
    for name in [flavour] if flavour else FLAVOURS:
        try:
            return importlib.import_module(name)
        except (ImportError, OSError):
            continue
    raise BadInput(f"{flavour or 'TensorRT'} is not installed here; {INSTALL_HINT}")


def cuda_device_count() -> int:
    """CUDA devices visible through cuda-python; 0 when cuda-python or a driver is missing."""
    try:
        from cuda.bindings import runtime as cudart

        err, count = cudart.cudaGetDeviceCount()
    except Exception:  # ImportError, or a driver library that fails to load
        return 0
    return int(count) if int(err) == 0 else 0


def local_gpu() -> tuple[str, str]:
    """(name, compute capability as '87') of CUDA device 0. Raises BadInput naming what is missing."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        raise BadInput(
            "cuda-python 12.8+ (module cuda.bindings) is not installed; it comes with the tensorrt extras: "
            + INSTALL_HINT
        ) from None
    if cuda_device_count() == 0:
        raise BadInput(
            "no CUDA GPU is visible here; run on a GPU machine, or build ahead of time for a named GPU with "
            "TensorRT for RTX: dis-export MODEL.onnx --engine --gpu-arch sm86"
        )
    err, props = cudart.cudaGetDeviceProperties(0)
    if int(err) != 0:
        raise BadInput(f"cannot read the GPU's properties ({err}); check the NVIDIA driver (nvidia-smi)")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.strip("\x00 "), f"{props.major}{props.minor}"


def this_machine(flavour: str | None = None) -> Target:
    """The Target an engine must have to run here (TensorRT installed and a GPU visible)."""
    trt = import_trt(flavour)
    name, cc = local_gpu()
    return Target(trt.__name__, short_version(trt.__version__), cc, name)


def parse_gpu_arch(text: str) -> str:
    """'sm86', 'sm_86', '86' or '8.6' -> '86'."""
    match = re.fullmatch(r"(?:sm_?)?(\d+)\.?(\d+)?", text.strip().lower())
    if not match:
        raise BadInput(f"--gpu-arch {text!r}: expected a compute capability such as sm86 (RTX 30xx), sm89 or sm120")
    return match.group(1) + (match.group(2) or "")


def build_target(trt, gpu_arch: str | None) -> Target:
    """What the engine about to be built will be valid for, read before the build (minutes) starts."""
    version = short_version(trt.__version__)
    if gpu_arch is None:
        name, cc = local_gpu()
        return Target(trt.__name__, version, cc, name)
    if trt.__name__ != "tensorrt_rtx":
        raise BadInput(
            f"--gpu-arch builds ahead of time, which only TensorRT for RTX does ({extra('tensorrt-rtx')}); "
            "TensorRT builds for the GPU it runs on: drop --gpu-arch and build on the target"
        )
    cc = parse_gpu_arch(gpu_arch)
    known = sorted(n[2:] for n in dir(trt.ComputeCapability) if re.fullmatch(r"SM\d+", n))
    if cc not in known:
        raise BadInput(f"--gpu-arch {gpu_arch}: TensorRT for RTX {version} builds for sm{', sm'.join(known)}")
    return Target(trt.__name__, version, cc, None)


def engine_facts(
    info: ModelInfo,
    *,
    onnx_sha256: str,
    target: Target,
    dla_core: int | None = None,
    max_batch: int | None = None,
    notes: tuple[str, ...] = (),
) -> ModelInfo:
    """The ONNX model's contract plus what makes an engine valid only on one TensorRT and GPU."""
    extra = dict(info.extra)
    extra["engine"] = {
        "flavour": target.flavour,
        "tensorrt_version": target.tensorrt_version,
        "gpu_name": target.gpu_name,
        "compute_capability": target.compute_capability,
        "ahead_of_time": target.gpu_name is None,
        "dla_core": dla_core,
        "max_batch": max_batch,
        "notes": list(notes),
    }
    return info.replace(onnx_sha256=onnx_sha256, extra=extra)


def built_for(info: ModelInfo) -> Target | None:
    """The Target recorded in an engine's sidecar (sidecars from before flavours were TensorRT's)."""
    facts = info.extra.get("engine")
    if not isinstance(facts, dict) or "tensorrt_version" not in facts or "compute_capability" not in facts:
        return None
    return Target(
        str(facts.get("flavour", "tensorrt")),
        short_version(str(facts["tensorrt_version"])),
        str(facts["compute_capability"]),
        facts.get("gpu_name"),
    )


def mismatch(info: ModelInfo, here: Target, *, onnx_sha256: str | None = None) -> str | None:
    """Why an engine described by `info` cannot run on `here`, or None when it fits."""
    built = built_for(info)
    if built is None:
        return "its sidecar has no engine facts"
    if built.flavour != here.flavour:
        return f"engine was built with {built.flavour}; this machine runs {here.flavour}"
    if built.tensorrt_version != here.tensorrt_version or built.compute_capability != here.compute_capability:
        return (
            f"engine was built for TensorRT {built.tensorrt_version} on sm_{built.compute_capability}; "
            f"this machine has {here.tensorrt_version} on sm_{here.compute_capability}"
        )
    if built.gpu_name is not None and built.gpu_name != here.gpu_name:
        return f"engine was built on {built.gpu_name}, this GPU is {here.gpu_name}"
    if onnx_sha256 is not None and info.onnx_sha256 != onnx_sha256:
        return "engine was built from a different ONNX file (sha256 differs)"
    return None


def tensorrt_logger(trt):
    """A TensorRT logger that hands TensorRT's messages (warnings and up) to Python's logging as the "tensorrt"
    logger: a command keeps them in its log file and shows the last ones when it fails; an application that embeds
    the runtime sees them in its own logging. trt.Logger would print them on the process's stderr instead."""
    levels = {
        trt.ILogger.Severity.INTERNAL_ERROR: logging.CRITICAL,
        trt.ILogger.Severity.ERROR: logging.ERROR,
        trt.ILogger.Severity.WARNING: logging.WARNING,
    }

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg) -> None:
            if severity in levels:
                logging.getLogger("tensorrt").log(levels[severity], "%s", msg)

    return _Logger()


def cached_engine_path(onnx_path: str | Path, target: Target, cache_dir: str | Path | None = None) -> Path:
    """Where the engine for this ONNX and Target lives: `<stem>.trt10.3.0.sm87.engine` (`.rtx1.7.1.` for RTX)
    beside it."""
    onnx_path = Path(onnx_path)
    folder = Path(cache_dir) if cache_dir else onnx_path.parent
    tag = "rtx" if target.flavour == "tensorrt_rtx" else "trt"
    return folder / f"{onnx_path.stem}.{tag}{target.tensorrt_version}.sm{target.compute_capability}.engine"


def check_dla(info: ModelInfo, target: Target, dla_core: int | None) -> None:
    """DLA runs FP16 and INT8 layers only: an FP32 strongly typed network would silently run on the GPU."""
    if dla_core is None:
        return
    if target.flavour != "tensorrt":
        raise BadInput(
            "--dla-core: DLA is a Jetson accelerator; TensorRT for RTX has none. Build on the Jetson with TensorRT"
        )
    if info.precision == "fp32":
        raise BadInput(
            "--dla-core: DLA runs only FP16 and INT8 layers, and this model is FP32 (strongly typed, it would run on "
            "the GPU); export with --fp16 or calibrate it with dis-calibrate --target tensorrt"
        )


def onnx_bytes_for_tensorrt(onnx_path: Path, info: ModelInfo) -> tuple[bytes, tuple[str, ...]]:
    """The ONNX TensorRT is given, and notes on what was changed for it. TensorRT has no asymmetric
    quantization: a `dis-calibrate --target cpu` model gets symmetric int8 scales over the same ranges."""
    quantization = info.extra.get("quantization") or {}
    if info.precision == "int8" and quantization.get("target") == "cpu":
        from .qdq import symmetric_int8

        return symmetric_int8(onnx_path), (
            "asymmetric uint8 activations re-quantized to symmetric int8 over the same "
            "calibrated ranges (TensorRT has no zero points); dis-calibrate --target tensorrt "
            "calibrates for TensorRT directly",
        )
    return Path(onnx_path).read_bytes(), ()


def _network(trt, logger, data: bytes, onnx_path: Path):
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = "; ".join(str(parser.get_error(i)).splitlines()[0] for i in range(parser.num_errors))
        raise ModelFileError(f"{onnx_path}: {trt.__name__} could not parse it: {errors[:400]}")
    return builder, network, parser


def _config(
    trt,
    builder,
    info: ModelInfo,
    target: Target,
    *,
    workspace_gib: float,
    dla_core: int | None,
    max_batch: int,
    timing_cache: Path | None,
):
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if target.flavour == "tensorrt_rtx":
        config.num_compute_capabilities = 1
        cc = (
            trt.ComputeCapability.CURRENT
            if target.gpu_name
            else getattr(trt.ComputeCapability, f"SM{target.compute_capability}")
        )
        config.set_compute_capability(cc, 0)
    if dla_core is not None:
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = dla_core
        config.set_flag(trt.BuilderFlag.GPU_FALLBACK)
    blob = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(blob), ignore_mismatch=False)
    if info.batch == "dynamic":
        profile = builder.create_optimization_profile()
        shape = (info.input_height, info.input_width, 3)
        profile.set_shape(info.input_name, (1, *shape), (1, *shape), (max_batch, *shape))
        if info.scene_tags:
            k = info.num_classes
            profile.set_shape(SCENE_TAGS, (1, k), (1, k), (max_batch, k))
        config.add_optimization_profile(profile)
    if hasattr(trt, "IProgressMonitor"):  # TensorRT 10+: a bar per build phase (minutes of tactic timing on a GPU)
        config.progress_monitor = build_progress(trt)
    return config


def build_progress(trt):
    """A TensorRT progress monitor that shows the builder's top-level phases as progress bars on a terminal (and
    keeps the phases' names in `phases`, for the log and the tests)."""
    from .console import progress

    class _Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self.bars: dict[str, object] = {}
            self.phases: list[str] = []

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            self.phases.append(phase_name)
            if parent_phase is None:
                self.bars[phase_name] = progress(desc=phase_name, total=num_steps, unit="step")

        def step_complete(self, phase_name, step) -> bool:
            if phase_name in self.bars:
                self.bars[phase_name].update()
            return True  # False would cancel the build

        def phase_finish(self, phase_name) -> None:
            bar = self.bars.pop(phase_name, None)
            if bar is not None:
                bar.close()

    return _Monitor()


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    flavour: str | None = None,
    gpu_arch: str | None = None,
    workspace_gib: float = 2.0,
    timing_cache: str | Path | None = None,
    dla_core: int | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    announce: Callable[[], None] | None = None,
) -> ModelInfo:
    """Build a serialized engine from one of our ONNX files as a strongly typed network (precision comes
    from the ONNX: FP32, FP16 casts or INT8 Q/DQ; no builder precision flags) and write it with its
    sidecar. Returns the sidecar's contract. What the engine is for (GPU, or `gpu_arch` ahead of time with
    TensorRT for RTX) is settled before the build. Raises BadInput for what the user can fix and
    ModelFileError when TensorRT cannot parse or build the model."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    timing_cache = Path(timing_cache) if timing_cache is not None else None
    info = read_model_info(onnx_path)
    trt = import_trt(flavour)
    target = build_target(trt, gpu_arch)
    check_dla(info, target, dla_core)
    data, notes = onnx_bytes_for_tensorrt(onnx_path, info)
    if announce is not None:  # everything the user can fix was checked: the build itself starts
        announce()
    logger = tensorrt_logger(trt)
    builder, network, _parser = _network(trt, logger, data, onnx_path)
    config = _config(
        trt,
        builder,
        info,
        target,
        workspace_gib=workspace_gib,
        dla_core=dla_core,
        max_batch=max_batch,
        timing_cache=timing_cache,
    )
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ModelFileError(f"{onnx_path}: {trt.__name__} failed to build an engine (see its log above)")
    if timing_cache is not None:
        cache = memoryview(config.get_timing_cache().serialize())
        atomic_write(timing_cache, lambda tmp: Path(tmp).write_bytes(cache))
    atomic_write(engine_path, lambda tmp: Path(tmp).write_bytes(memoryview(serialized)))
    facts = engine_facts(
        info,
        onnx_sha256=file_sha256(onnx_path),
        target=target,
        dla_core=dla_core,
        max_batch=max_batch if info.batch == "dynamic" else None,
        notes=notes,
    )
    write_sidecar(engine_path, facts)
    return facts
