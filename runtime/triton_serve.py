"""dis-serve: a disseg model behind NVIDIA's Triton Inference Server, through nvidia-pytriton (Triton's own server
binary with its Python backend; the model runs in this process's Segmenter on ONNX Runtime or TensorRT). The tensors,
batching and `disseg.*` parameters are those of `dis-export --triton-repo` (runtime/triton_repo.py), so a client
cannot tell this server from NGC's Triton serving the repository."""

from __future__ import annotations

import logging
import os
import socket
import sysconfig
import tempfile
from pathlib import Path

import click
import numpy as np

from . import triton_leftovers as leftovers
from .backends import CHOICES, infer_in_batches
from .cli_util import MODEL, Command, handle_errors, max_batch_option, setup_logging, third_party_output
from .contract import INPUT, SCENE_TAGS
from .deps import extra
from .errors import BadInput, DisError
from .triton_repo import DEFAULT_PORTS, check_name, metadata_parameters, preferred_sizes, tensors

log = logging.getLogger("disseg.serve")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
EXIT_TIMEOUT_S = 3  # Triton's wait for in-flight requests on a stop


def use_own_libpython() -> str | None:
    """Triton's Python-backend stub loads libpython by name; when this interpreter is not the system's build
    (pyenv, a venv of another Python) the system's library is found first and the model fails to load with
    "'_thread.RLock' object has no attribute '_recursion_count'". Put this interpreter's own library first."""
    libdir, lib = sysconfig.get_config_var("LIBDIR"), sysconfig.get_config_var("LDLIBRARY")
    if not sysconfig.get_config_var("Py_ENABLE_SHARED") or not libdir or not (Path(libdir) / str(lib)).exists():
        return None
    old = os.environ.get("LD_LIBRARY_PATH")
    os.environ["LD_LIBRARY_PATH"] = libdir + (f":{old}" if old else "")
    return libdir


def check_port(host: str, port: int, option: str) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as err:
            raise BadInput(f"{option} {port} on {host}: cannot listen there ({err.strerror}); choose another") from None


def free_ports(n: int = 3, host: str = "127.0.0.1") -> list[int]:
    """`n` ports nothing listens on now (for the tests and benchmarks that start a server)."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind((host, 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _checked_tags(rows: np.ndarray, seg) -> np.ndarray:
    """A request's scene tags, held to the local runtime's rule (scene_tags.from_values: K values, finite, in 0..1);
    a request that breaks it is refused with that message (the client sees it as the request's error)."""
    from .scene_tags import from_values

    return np.stack([from_values(row, seg.info, what="scene_tags input") for row in np.asarray(rows, np.float32)])


def infer_function(seg):
    """Triton's batches through the Segmenter's backend: chunks of a fixed-batch model (padded), or whole."""
    from pytriton.decorators import batch

    @batch
    def infer(**inputs):
        images = inputs[INPUT]
        tags = {SCENE_TAGS: _checked_tags(inputs[SCENE_TAGS], seg)} if SCENE_TAGS in inputs else None
        outputs = infer_in_batches(seg.backend, INPUT, images, seg.batch_plan(len(images))[0], tags)
        return {name: np.ascontiguousarray(outputs[name]) for name in seg.info.outputs}

    return infer


def _attach_metadata(triton, name: str, params: dict[str, str]) -> None:
    """The contract as model-config parameters, as config.pbtxt carries them. pytriton (0.7) has no option for
    parameters: they join the backend parameters of the bound model's config record, which becomes the config
    Triton loads when the server starts (hence bind, then this, then run)."""
    manager = triton._model_manager
    model = next(m for m in manager.models if m.model_name == name)
    model._get_triton_model_config().backend_parameters.update(params)
    if getattr(manager, "_model_store_path", None) is not None:
        model.generate_model(manager._model_store_path)


def start(seg, *, name: str, host: str, ports: dict[str, int], max_batch: int, queue_delay_us: int, workspace: Path):
    """A running Triton serving `seg` (pytriton's Triton object; stop() it)."""
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig
    except ImportError:
        raise BadInput(f"dis-serve needs NVIDIA's Triton (nvidia-pytriton): {extra('serve')}") from None
    inputs, outputs = tensors(seg.info)
    config = TritonConfig(
        http_address=host, http_port=ports["http"], grpc_address=host, grpc_port=ports["grpc"],
        metrics_address=host, metrics_port=ports["metrics"], exit_timeout_secs=EXIT_TIMEOUT_S, log_verbose=0,
    )  # fmt: skip
    triton = Triton(config=config, workspace=str(workspace))
    triton.bind(
        model_name=name,
        infer_func=infer_function(seg),
        inputs=[Tensor(name=n, dtype=np.dtype(t), shape=tuple(d)) for n, t, d in inputs],
        outputs=[Tensor(name=n, dtype=np.dtype(t), shape=tuple(d)) for n, t, d in outputs],
        config=ModelConfig(
            max_batch_size=max_batch,
            batcher=DynamicBatcher(
                max_queue_delay_microseconds=queue_delay_us, preferred_batch_size=preferred_sizes(max_batch) or None
            ),
        ),
    )
    _attach_metadata(triton, name, metadata_parameters(seg.info))
    try:
        triton.run()
    except Exception as err:  # pytriton's errors when tritonserver does not start or the model does not load
        triton.stop()
        raise DisError(
            f"Triton did not start ({type(err).__name__}: {str(err)[:200]}); its log: dis-serve --verbose"
        ) from None
    return triton


@click.command(cls=Command, help="Serve a model through NVIDIA's Triton Inference Server (HTTP, gRPC, metrics).")
@click.argument("model", type=MODEL)
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on; others are your choice")
@click.option("--http-port", default=DEFAULT_PORTS["http"], show_default=True, type=click.IntRange(1, 65535))
@click.option("--grpc-port", default=DEFAULT_PORTS["grpc"], show_default=True, type=click.IntRange(1, 65535))
@click.option("--metrics-port", default=DEFAULT_PORTS["metrics"], show_default=True, type=click.IntRange(1, 65535))
@click.option("--model-name", default="disseg", show_default=True, help="the name clients ask for")
@max_batch_option("Triton's batches")
@click.option("--queue-delay-us", default=100, show_default=True, type=click.IntRange(0, 10_000_000))
@click.option("--backend", default="auto", show_default=True, type=click.Choice(CHOICES))
@handle_errors
def serve_cli(model, host, http_port, grpc_port, metrics_port, model_name, max_batch, queue_delay_us, backend) -> None:
    setup_logging()
    from .segmenter import Segmenter
    from .signals import StopOnSignals

    check_name(model_name)
    ports = {"http": http_port, "grpc": grpc_port, "metrics": metrics_port}
    if len(set(ports.values())) != 3:
        raise BadInput(f"--http-port, --grpc-port and --metrics-port must differ, got {sorted(ports.values())}")
    for kind, port in ports.items():
        check_port(host, port, f"--{kind}-port")
    if host not in LOOPBACK:
        log.warning("listening on %s: the model is reachable from other machines on this network", host)
    libdir = use_own_libpython()
    with StopOnSignals() as signals, Segmenter(model, backend=backend) as seg:
        leftovers.clean_predecessors()
        with tempfile.TemporaryDirectory(prefix=leftovers.WORKSPACE_PREFIX) as workspace:
            os.environ["TMPDIR"] = str(leftovers.mark(Path(workspace)))  # Triton's backends unpack in the workspace
            before = leftovers.unpacked_now()
            try:
                with third_party_output():
                    triton = start(
                        seg, name=model_name, host=host, ports=ports, max_batch=max_batch,
                        queue_delay_us=queue_delay_us, workspace=Path(workspace) / "triton",
                    )  # fmt: skip
                leftovers.record_unpacked(Path(workspace), before)
            except BaseException:
                leftovers.clean(Path(workspace), os.getpid())
                raise
            try:
                info = seg.info
                click.echo(
                    f"serving {model_name} ({Path(str(model)).name}: {info.precision}, {info.input_height}x"
                    f"{info.input_width}, {info.num_classes} classes, {seg.backend.name}) on http://{host}:{http_port} "
                    f"(gRPC {host}:{grpc_port}, metrics http://{host}:{metrics_port}/metrics); Ctrl-C or SIGTERM stops",
                )
                log.debug("Python backend stub uses libpython from %s", libdir)
                while not signals.event.wait(0.5):
                    pass
            finally:
                with third_party_output():
                    triton.stop()
                leftovers.clean(Path(workspace), os.getpid())  # a stub a client kept busy, shared memory
    click.echo(f"stopped {model_name}")
    signals.raise_if_stopped()
