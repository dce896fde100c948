"""Checkpoints: weights, optimizer, scheduler, RNG states, epoch and the full config, written atomically."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from disseg.runtime.atomic import atomic_write
from disseg.runtime.errors import ModelFileError

from .config import DISConfig
from .model import DIS

FORMAT = "disseg-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write {"format", "version", **state} to `path` atomically (temp file, fsync, rename)."""
    payload = {"format": FORMAT, "version": VERSION, **state}
    atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a disseg checkpoint with weights_only=True. Raises ModelFileError naming what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"{path}: no such checkpoint; train one with: dis-train --data DIR --out RUN")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, EOFError, ValueError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFileError(
            f"{path}: not a loadable disseg checkpoint (corrupt, truncated or another program's file: {first[:120]})"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: not a disseg checkpoint (no '{FORMAT}' marker); pass a RUN/best.pt written by dis-train"
        )
    if ckpt.get("version") != VERSION:
        raise ModelFileError(
            f"{path}: checkpoint version {ckpt.get('version')}, this disseg reads {VERSION}; retrain or use the "
            "matching disseg"
        )
    return ckpt


def model_from_checkpoint(path: str | Path) -> tuple[DIS, dict[str, Any]]:
    """Return (DIS model in eval mode with the checkpoint's weights, the checkpoint dict)."""
    ckpt = load_checkpoint(path)
    try:
        cfg = DISConfig.from_dict(ckpt["config"])
        model = DIS(cfg)
        model.load_state_dict(ckpt["model"])
    except (KeyError, ValueError, TypeError, RuntimeError) as err:
        raise ModelFileError(
            f"{path}: checkpoint does not fit this version's DIS model ({str(err).splitlines()[0][:160]}); retrain it"
        ) from err
    return model.eval(), ckpt
