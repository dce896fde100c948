"""Foreign segmentation networks as their users export them (torch.onnx.export), for dis-import's tests.

torchvision's FCN, DeepLabV3 and LRASPP are built with weights=None (nothing is downloaded here). An untrained net
labels every pixel alike, which would make any parity check pass trivially, so each gets BatchNorm statistics
measured on random images and a re-drawn classifier: its labels then vary over the frame. Three small nets cover
the other forms: logits at 1/8 of the input size, an integer label map, and a dynamic batch and size.
"""

from __future__ import annotations

import contextlib
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


# Families people deploy, built with their own constructors and random weights (nothing downloaded), exported as
# their users export them. segmentation-models-pytorch: every architecture with two encoders.
SMP_ARCHS = ("Unet", "UnetPlusPlus", "FPN", "PSPNet", "DeepLabV3Plus", "Linknet", "MAnet", "Segformer")
SMP_ENCODERS = ("resnet34", "mobilenet_v2")
FAMILY_SIZE = 64


def smp_net(arch: str, encoder: str, num_classes: int) -> nn.Module:
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    net = getattr(smp, arch)(encoder_name=encoder, encoder_weights=None, classes=num_classes)
    return varied(net, num_classes, FAMILY_SIZE)


class LogitsOf(nn.Module):
    """A Hugging Face model's `.logits`, as optimum's ONNX export gives them (input pixel_values, output logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).logits


def hf_segformer(folder: Path, names: list[str]) -> tuple[nn.Module, Path]:
    """transformers' SegformerForSemanticSegmentation from a small config (logits at 1/4 of the input), exported to
    FOLDER/model.onnx beside the config.json and preprocessor_config.json that save_pretrained and optimum write."""
    from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

    torch.manual_seed(0)
    config = SegformerConfig(
        num_labels=len(names), id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
        depths=[1, 1, 1, 1], hidden_sizes=[16, 32, 64, 128], decoder_hidden_size=64, num_attention_heads=[1, 2, 4, 8],
    )  # fmt: skip
    model = SegformerForSemanticSegmentation(config)
    net = varied(LogitsOf(model), len(names), FAMILY_SIZE)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "model.onnx"
    example = (torch.rand(1, 3, FAMILY_SIZE, FAMILY_SIZE),)
    torch.onnx.export(net, example, str(path), input_names=["pixel_values"], output_names=["logits"])
    model.config.to_json_file(str(folder / "config.json"))
    SegformerImageProcessor().save_pretrained(str(folder))
    return net, path


def build_families(folder: Path, names: list[str]) -> dict[str, tuple[nn.Module, Path]]:
    """Every family model of the tests: name -> (the library's module, its exported ONNX)."""
    models = {}
    for arch in SMP_ARCHS:
        for encoder in SMP_ENCODERS:
            name = f"smp-{arch}-{encoder}"
            net = smp_net(arch, encoder, len(names))
            models[name] = (net, export(net, folder / f"{name}.onnx", FAMILY_SIZE))
    models["hf-segformer"] = hf_segformer(folder / "hf-segformer", names)
    return models


def ultralytics_sem(folder: Path, names: list[str]):
    """Ultralytics' YOLO26n semantic segmentation from its own YAML (nc set to len(names), random weights), exported
    by Ultralytics' own `export(format="onnx")`: an ArgMax in the graph, class names in the ONNX metadata.
    Ultralytics is AGPL-3.0: a test-only dependency (.ci/run installs it), never a runtime one."""
    import ultralytics
    import yaml
    from ultralytics import YOLO

    config = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/26/yolo26-sem.yaml").read_text())
    config["nc"] = len(names)
    folder.mkdir(parents=True, exist_ok=True)
    recipe = folder / "yolo26n-sem.yaml"  # the file name carries the scale, n, as Ultralytics reads it
    recipe.write_text(yaml.safe_dump(config))
    torch.manual_seed(0)
    model = YOLO(str(recipe))
    model.model.names = dict(enumerate(names))
    varied(model.model, len(names), FAMILY_SIZE)
    with contextlib.chdir(folder):  # Ultralytics writes the export into the working directory
        return model, (folder / model.export(format="onnx", imgsz=FAMILY_SIZE, simplify=False)).resolve()
