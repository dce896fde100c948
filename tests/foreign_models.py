"""Foreign segmentation networks as their users export them (torch.onnx.export), for dis-import's tests.

torchvision's FCN, DeepLabV3 and LRASPP are built with weights=None (nothing is downloaded here). An untrained net
labels every pixel alike, which would make any parity check pass trivially, so each gets BatchNorm statistics
measured on random images and a re-drawn classifier: its labels then vary over the frame. Three small nets cover
the other forms: logits at 1/8 of the input size, an integer label map, and a dynamic batch and size.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

TORCHVISION = ("fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large")
SIZE = 96  # the torchvision models' export size (FCN's stride 8 leaves a 12 x 12 grid)


def varied(model: nn.Module, num_classes: int, size: int = SIZE) -> nn.Module:
    """BatchNorm statistics from random images, the final classifier re-drawn: an untrained net whose labels vary."""
    generator = torch.Generator().manual_seed(0)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # a plain average over the passes below
            module.reset_running_stats()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(4, 3, size, size, generator=generator) * torch.rand(4, 3, 1, 1, generator=generator))
        for module in model.modules():
            if isinstance(module, nn.Conv2d) and module.out_channels == num_classes:
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator))
                if module.bias is not None:
                    module.bias.zero_()
    return model.eval()


class Eighth(nn.Module):
    """Logits at 1/8 of the input size, as many segmentation heads give them before their own upsampling."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, 8, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, 2, 1),
            nn.ReLU(),
            nn.Conv2d(16, num_classes, 3, 2, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class FullSize(Eighth):
    """Logits upsampled to the input size inside the net (any batch and size)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(self.body(x), size=x.shape[-2:], mode="bilinear", align_corners=False)


class LabelMap(FullSize):
    """An integer label map (int64 N x H x W): the argmax is inside the foreign graph."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x).argmax(1)


def export(model: nn.Module, path: Path, size: int, *, dynamic: bool = False) -> Path:
    """torch.onnx.export as a user runs it: input named `input`, output `out`."""
    example = torch.rand(1 if not dynamic else 2, 3, size, size)
    shapes = None
    if dynamic:
        shapes = ({0: torch.export.Dim("batch", max=64), 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC},)
    torch.onnx.export(
        model.eval(), (example,), str(path), input_names=["input"], output_names=["out"], dynamic_shapes=shapes
    )
    return path


def build_all(folder: Path, num_classes: int) -> dict[str, Path]:
    """Every foreign model of the tests, exported into `folder`; `num_classes` for the small nets."""
    from torchvision.models import segmentation

    torch.manual_seed(0)
    models = {}
    for name in TORCHVISION:
        net = getattr(segmentation, name)(weights=None, weights_backbone=None)
        models[name] = export(varied(net, 21), folder / f"{name}.onnx", SIZE)
    models["eighth"] = export(varied(Eighth(num_classes), num_classes, 64), folder / "eighth.onnx", 64)
    models["label_map"] = export(varied(LabelMap(5), 5, 64), folder / "label_map.onnx", 64)
    models["dynamic"] = export(
        varied(FullSize(num_classes), num_classes, 64), folder / "dynamic.onnx", 64, dynamic=True
    )
    classifier = nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))
    models["classifier"] = export(classifier, folder / "classifier.onnx", 32)
    return models
