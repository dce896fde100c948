"""What every backend is: a model's inputs and outputs as `TensorSpec`s, `Backend.infer` with its checks, and the
`Kind` record through which the backend table (`backends/__init__.py`) names, chooses and probes a backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import SCENE_TAGS, ModelInfo
from ..errors import BadInput


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

    def info(self) -> ModelInfo:
        """The model's contract as the backend knows it: only a served model's backend (its `Kind.served`) has one;
        a file's contract is read from the file (contract.read_model_info)."""
        raise NotImplementedError(f"{self.name} reads no model contract; read it from the file")

    def close(self) -> None:
        pass

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Kind:
    """One row of the backend table.

    `claims(model)`: with `--backend auto`, whether this backend should try the model (a Path, or a URL string
    such as triton://...) here; the table is tried in order and a claimant that fails hands over to the next, with
    one warning line. `open(model, info, cache_dir=, threads=)`: the opened backend, or a DisError saying why not
    (`info` is None for a served model). `check(model, info)`: what dis-doctor reports for MODEL, as {"status":
    "ok ..." or what is wrong, other report keys...}, or None when the backend has nothing to say about this kind
    of model. `facts()`: what dis-doctor reports about this machine for the backend (versions, providers, what to
    install). `served`: the model lives on a server, which the backend asks for its contract (`Backend.info`)
    instead of a file; a served model runs on its own kind only."""

    name: str  # as --backend takes it, and dis-doctor's key for `facts`
    title: str  # as messages name it
    claims: Callable[[Path | str], bool]
    open: Callable[..., Backend]
    check: Callable[[Path | str, ModelInfo], dict[str, Any] | None]
    facts: Callable[[], dict[str, Any]]
    served: bool = False


def scene_tag_feed(backend: Backend, count: int) -> dict[str, np.ndarray]:
    """All-ones scene tags (the model without tags) for `count` frames, when the model takes them; else nothing."""
    spec = backend.inputs.get(SCENE_TAGS)
    if spec is None:
        return {}
    return {SCENE_TAGS: np.ones((count, *spec.shape[1:]), np.float32)}


def infer_in_batches(
    backend: Backend, input_name: str, frames: np.ndarray, step: int, extra: dict[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """All of `frames` through `backend`, `step` at a time; the last chunk is padded with copies of its last
    frame (a fixed-batch model takes whole batches only) and the outputs trimmed back to len(frames). `extra`: other
    inputs, one row per frame (scene tags; all ones when the model takes them and none are given). The one place
    batches are padded: the Segmenter, the parity gate and calibration all come here."""
    feeds = {input_name: frames, **(scene_tag_feed(backend, len(frames)) if extra is None else extra)}
    outputs: dict[str, list[np.ndarray]] = {}
    for i in range(0, len(frames), step):
        chunks = {}
        for name, array in feeds.items():
            chunk = array[i : i + step]
            if len(chunk) < step:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), 0)])
            chunks[name] = chunk
        for name, value in backend.infer(chunks).items():
            outputs.setdefault(name, []).append(value)
    return {name: np.concatenate(parts)[: len(frames)] for name, parts in outputs.items()}
