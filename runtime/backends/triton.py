"""A model served by NVIDIA's Triton Inference Server, as a backend: `triton://HOST:PORT/NAME` (HTTP) or
`triton+grpc://HOST:PORT/NAME`. The model's contract comes from the server (the `disseg.*` parameters of its model
configuration, written by `dis-export --triton-repo` and `dis-serve`), so every command that takes a model file takes
a served one. Needs `tritonclient` (the `triton-client` install profile)."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import numpy as np

from ..contract import INPUT, METADATA_PREFIX, REMOTE_SCHEMES, ModelInfo, is_remote
from ..deps import extra, installed
from ..errors import BadInput, DisError, ModelFileError
from ..redaction import redact
from ..triton_repo import DEFAULT_PORTS
from .base import Backend, Kind, TensorSpec, scene_tag_feed

log = logging.getLogger("disseg.runtime")

SCHEME = "|".join(re.escape(s) for s in REMOTE_SCHEMES)
URL = re.compile(rf"^(?P<scheme>{SCHEME})://(?P<address>[^/\s]+)/(?P<name>[A-Za-z0-9_.\-]+)/?$")
TYPES = {"TYPE_UINT8": np.uint8, "TYPE_INT32": np.int32, "TYPE_FP32": np.float32}
WIRE = {np.uint8: "UINT8", np.float32: "FP32"}  # the request datatypes of the inputs a disseg model takes


def parse_url(url: str) -> tuple[str, str, str]:
    """(protocol, host:port, model name) of a triton:// URL; BadInput naming the form otherwise."""
    match = URL.match(url)
    if not match:
        raise BadInput(f"{redact(url)}: expected triton://HOST:PORT/NAME (HTTP) or triton+grpc://HOST:PORT/NAME")
    protocol, address = REMOTE_SCHEMES[match["scheme"]], match["address"]
    if "@" in address:
        raise BadInput(
            f"{redact(url)}: a triton:// URL carries no user or password (Triton's protocol has no login); give "
            f"triton://HOST:PORT/NAME and keep the server on a network only this box reaches"
        )
    if not re.search(r":\d+$", address):  # Triton's default ports
        address += f":{DEFAULT_PORTS[protocol]}"
    return protocol, address, match["name"]


def _client_module(protocol: str):
    try:
        if protocol == "grpc":
            import tritonclient.grpc as module
        else:
            import tritonclient.http as module
    except ImportError:
        raise BadInput(
            f"a triton:// model needs Triton's client library: {extra('triton-client')} ({protocol})"
        ) from None
    return module


class TritonBackend(Backend):
    """Requests to a Triton server; one client per backend (Triton batches concurrent clients itself)."""

    name = "triton"

    def __init__(self, url: str) -> None:
        super().__init__()
        self.url = url
        self.protocol, self.address, self.model = parse_url(url)
        self._tc = _client_module(self.protocol)
        self._client = self._tc.InferenceServerClient(self.address)
        config = self._config()
        self.config = config
        self._specs(config)

    def _config(self) -> dict:
        try:
            ready = self._client.is_model_ready(self.model)
            if not ready:
                raise BadInput(
                    f"{self.url}: the server at {self.address} has no ready model {self.model!r}{self._names()}; "
                    "check the name (dis-serve --model-name, or the repository's folder name)"
                )
            config = self._client.get_model_config(self.model, **({"as_json": True} if self.protocol == "grpc" else {}))
        except BadInput:
            raise
        except Exception as err:  # tritonclient raises its own exception, OSError or gevent's, by protocol
            raise BadInput(
                f"{self.url}: no Triton server answers at {self.address} ({_reason(err)}); start one with "
                "dis-serve MODEL, or check the address"
            ) from None
        return config.get("config", config)

    def _names(self) -> str:
        """' (it has a, b)' when the server lists its models (pytriton's server does not let clients ask)."""
        try:
            index = self._client.get_model_repository_index(**({"as_json": True} if self.protocol == "grpc" else {}))
        except Exception:
            return ""
        models = index.get("models", []) if isinstance(index, dict) else index
        return f" (it has {', '.join(m['name'] for m in models) or 'none'})"

    def _specs(self, config: dict) -> None:
        max_batch = int(config.get("max_batch_size", 0))
        self.max_batch = max_batch or None

        def shape(dims) -> tuple:
            dims = tuple(int(d) for d in dims)
            return (None, *dims) if max_batch else dims

        for entry in config.get("input", []):
            dtype = np.dtype(TYPES.get(entry["data_type"], np.uint8))
            self.inputs[entry["name"]] = TensorSpec(entry["name"], shape(entry["dims"]), dtype)
        for entry in config.get("output", []):
            dtype = np.dtype(TYPES.get(entry["data_type"], np.float32))
            self.output_specs[entry["name"]] = TensorSpec(entry["name"], shape(entry["dims"]), dtype)
        self.outputs = list(self.output_specs)
        if INPUT not in self.inputs:
            raise ModelFileError(f"{self.url}: the served model has no '{INPUT}' input; serve a disseg model")

    def info(self) -> ModelInfo:
        params = {
            k: v["string_value"] for k, v in self.config.get("parameters", {}).items() if k.startswith(METADATA_PREFIX)
        }
        return ModelInfo.from_metadata(params, source=self.url)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        requests = []
        for name, array in feeds.items():  # the image, and scene tags where the model takes them
            array = np.ascontiguousarray(array)
            requests.append(self._tc.InferInput(name, list(array.shape), WIRE[array.dtype.type]))
            requests[-1].set_data_from_numpy(array)
        wanted = [self._tc.InferRequestedOutput(name) for name in self.outputs]
        try:
            result = self._client.infer(self.model, requests, outputs=wanted)
        except Exception as err:
            raise DisError(f"{self.url}: the Triton server stopped answering ({_reason(err)})") from None
        return {name: result.as_numpy(name) for name in self.outputs}

    def close(self) -> None:
        try:
            self._client.close()
        except Exception:  # closing a client whose server is gone
            pass


def _reason(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text[:160]


def _open(model: Path | str, info: ModelInfo | None, *, cache_dir: Path | None = None, threads: int = 0):
    if not is_remote(model):
        raise BadInput(
            f"{model}: --backend triton runs a served model; give its triton://HOST:PORT/NAME (dis-serve serves a file)"
        )
    return TritonBackend(str(model))


def _doctor_check(model: Path | str, info: ModelInfo) -> dict | None:
    """A served model: one frame's round trip, and the batch the server takes."""
    if not is_remote(model):
        return None
    with TritonBackend(str(model)) as remote:
        frame = np.zeros((1, info.input_height, info.input_width, 3), np.uint8)
        start = time.perf_counter()
        remote.infer({INPUT: frame, **scene_tag_feed(remote, 1)})
        ms = (time.perf_counter() - start) * 1000
        return {"status": f"ok (one frame's round trip {ms:.1f} ms)", "server_max_batch": remote.max_batch}


def _facts() -> dict:
    return {"tritonclient": installed("tritonclient")}


KIND = Kind("triton", "Triton", claims=is_remote, open=_open, check=_doctor_check, facts=_facts, served=True)
