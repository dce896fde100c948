"""Pretrained backbone weights: torchvision's ImageNet weights (downloaded into torch's cache on first use, with
torchvision's hash check), or a state dict from a file or URL (e.g. a company mirror).

Downloads go through torch.hub.load_state_dict_from_url: a temporary file that is renamed into the cache only
when complete and (where the file name carries one) matching its hash, then loaded with weights_only=True.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path
from urllib.parse import urlsplit

import torch
import torchvision

from disseg.runtime.errors import BadInput

IMAGENET = "imagenet"


def imagenet_url(backbone: str) -> str:
    """torchvision's URL of the default ImageNet weights of `backbone`."""
    return torchvision.models.get_model_weights(backbone).DEFAULT.url


def cache_path(url: str) -> Path:
    """Where torch keeps a downloaded file: $TORCH_HOME/hub/checkpoints/<file name>."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlsplit(url).path)


def _from_url(url: str) -> dict:
    target = cache_path(url)
    fix = f"copy the file to {target} (or pass --pretrained PATH), or train without --pretrained"
    try:
        return torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        reason = getattr(err, "reason", None) or err
        raise BadInput(f"cannot download {url} ({reason}); {fix}") from None
    except RuntimeError as err:
        if "invalid hash value" in str(err):
            raise BadInput(
                f"{url}: the download does not match the hash in its name (damaged or not that file); {fix}"
            ) from None
        target.unlink(missing_ok=True)  # complete but unreadable: never leave it in the cache
        raise BadInput(f"{url}: not a readable state dict ({str(err).splitlines()[0][:120]}); {fix}") from None
    except Exception as err:  # unpickling refused by weights_only, truncated zip, ...
        target.unlink(missing_ok=True)
        raise BadInput(f"{url}: not a readable state dict ({type(err).__name__}); {fix}") from None


def _from_file(path: str) -> dict:
    if not Path(path).is_file():
        raise BadInput(
            f"--pretrained {path}: no such file; pass a state dict (.pth), a URL, or --pretrained alone for ImageNet"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BadInput(
            f"--pretrained {path}: not a readable state dict ({type(err).__name__}); export one with "
            f"torch.save(model.state_dict(), path)"
        ) from None


def state_dict(source: str, backbone: str) -> dict:
    """The weights `--pretrained source` names: 'imagenet' (torchvision's), a URL, or a file."""
    if source == IMAGENET:
        return _from_url(imagenet_url(backbone))
    if urlsplit(source).scheme in ("http", "https", "file"):
        return _from_url(source)
    return _from_file(source)


def load_into(model: torch.nn.Module, source: str, backbone: str) -> None:
    """Load the weights into a torchvision `backbone` model (before it is cut); a state dict for another model is
    refused with the keys that differ."""
    weights = state_dict(source, backbone)
    if isinstance(weights, dict) and "state_dict" in weights and isinstance(weights["state_dict"], dict):
        weights = weights["state_dict"]
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as err:
        raise BadInput(f"--pretrained {source}: not {backbone} weights ({str(err).splitlines()[0][:160]})") from None
