"""The DIS network (docs/method.md) on torchvision backbones. Tensors in, tensors out; no data-dependent
control flow."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from .config import DISConfig
from .weights import load_into


class Heads(NamedTuple):
    u3: torch.Tensor  # labelmap logits, B x K x h x w
    z3: torch.Tensor  # reconstructed (normalised) image, B x 3 x h x w
    v3: torch.Tensor  # tag logits, B x K
    a1: torch.Tensor  # pre-activation of the image subnet's first ReLU
    a2: torch.Tensor  # pre-activation of its second ReLU


def _dilate(layer: nn.Module, dilation: int) -> None:
    """Turn a strided residual stage into a dilated stride-1 one (works for Basic and Bottleneck blocks)."""
    for module in layer.modules():
        if isinstance(module, nn.Conv2d):
            module.stride = (1, 1)
            if module.kernel_size == (3, 3):
                module.dilation = (dilation, dilation)
                module.padding = (dilation, dilation)


def build_backbone(cfg: DISConfig, *, pretrained: str | None = None) -> tuple[nn.Module, int, int]:
    """Return (backbone, output channels, output stride) for `cfg.backbone`; `pretrained` names weights to load
    (train/weights.py: 'imagenet', a file or a URL)."""
    name = cfg.backbone
    if name == "mobilenet_v3_large":
        net = torchvision.models.mobilenet_v3_large(weights=None, dilated=True)
        if pretrained:
            load_into(net, pretrained, name)
        return net.features, net.features[-1].out_channels, 16
    net = getattr(torchvision.models, name)(weights=None)
    if pretrained:
        load_into(net, pretrained, name)
    layers = [net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4]
    stride, dilation = 8, 1
    for layer in layers[6 : 4 + cfg.stages]:
        if stride < cfg.output_stride:
            stride *= 2
        else:
            dilation *= 2
            _dilate(layer, dilation)
    kept = layers[: 4 + cfg.stages]
    channels = [m for m in kept[-1].modules() if isinstance(m, nn.Conv2d)][-1].out_channels
    return nn.Sequential(*kept), channels, stride


class DIS(nn.Module):
    """u1 = backbone(I); v1 = linear(avgpool(u1)); labelmap, image and tag subnets as docs/method.md."""

    FEATURE_MODULES = ("backbone", "image_fc")  # what `features` runs: the part reduced precision may touch

    def __init__(self, cfg: DISConfig, *, pretrained: str | None = None) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.backbone, channels, self.stride = build_backbone(cfg, pretrained=pretrained)
        assert self.stride == cfg.feature_stride, (self.stride, cfg.feature_stride)  # one size rule (config.py)
        k = cfg.num_classes
        self.image_fc = nn.Linear(channels, channels)  # v1
        self.seg = nn.Conv2d(channels, k, 3, padding=1)  # Subnet-1: u3 = conv3x3(u1 + up(v1))
        self.rec_a = nn.Conv2d(k, k, 5, padding=2)  # Subnet-2: K -> K -> 16 -> 3
        self.rec_b = nn.Conv2d(k, 16, 3, padding=1)
        self.rec_c = nn.Conv2d(16, 3, 3, padding=1)
        self.tag = nn.Linear(channels, k)  # Subnet-3: v3 = linear(avgpool(u1) + v1)
        self.register_buffer("mean", torch.tensor(cfg.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(cfg.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, image: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1] -> the normalised network input."""
        return (image - self.mean) / self.std

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Normalised input -> (u1, v1, I_small), I_small being the input averaged down to u1's size."""
        u1 = self.backbone(x)
        v1 = self.image_fc(u1.mean((2, 3)))
        return u1, v1, F.avg_pool2d(x, self.stride)

    def heads(self, u1: torch.Tensor, v1: torch.Tensor) -> Heads:
        u3 = self.seg(u1 + v1[:, :, None, None])
        a1 = self.rec_a(u3)
        a2 = self.rec_b(F.relu(a1))
        z3 = self.rec_c(F.relu(a2))
        v3 = self.tag(u1.mean((2, 3)) + v1)
        return Heads(u3, z3, v3, a1, a2)

    def check_size(self, height: int, width: int) -> None:
        """Raise BadInput unless the backbone maps height x width onto a whole feature grid (DISConfig.feature_grid)."""
        self.cfg.feature_grid(height, width)


def labelmap_scores(cfg: DISConfig, heads: Heads) -> torch.Tensor:
    """Final class scores: u3 gated by the tags (cfg.tag_gate: y = u3 * sigmoid(v3), the paper's form;
    u3 + log sigmoid(v3), the product of probabilities; or u3 alone). With cfg.suppress_absent, classes
    whose tag probability is below 0.5 sink (background kept)."""
    tag_prob = torch.sigmoid(heads.v3)[:, :, None, None]
    if cfg.tag_gate == "multiply":
        scores = heads.u3 * tag_prob
    elif cfg.tag_gate == "log":
        scores = heads.u3 + F.logsigmoid(heads.v3)[:, :, None, None]
    else:
        scores = heads.u3
    if cfg.suppress_absent:
        present = tag_prob >= 0.5
        present = torch.cat([torch.ones_like(present[:, :1]), present[:, 1:]], 1)  # background always kept
        scores = torch.where(present, scores, torch.full_like(scores, -1e4))
    return scores


def upsampled_scores(cfg: DISConfig, heads: Heads, height: int, width: int) -> torch.Tensor:
    """labelmap_scores resized (bilinear) to the input resolution: what argmax turns into labels."""
    return F.interpolate(labelmap_scores(cfg, heads), size=(height, width), mode="bilinear", align_corners=False)
