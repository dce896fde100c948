"""Model and method configuration. Every choice the paper leaves open is a field here, saved in checkpoints."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from disseg.runtime.contract import IMAGENET_MEAN, IMAGENET_STD

TAG_GATES = ("multiply", "log", "none")
RULED_OUT = ("ignore", "relabel")  # what stage 2 does with a pseudo-label pixel whose class the cleaned tags rule out
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "mobilenet_v3_large")


@dataclasses.dataclass(frozen=True)
class DISConfig:
    class_names: tuple[str, ...]
    backbone: str = "resnet18"
    output_stride: int = 8  # 8 or 16 (resnets); mobilenet_v3_large is 16
    stages: int = 4  # residual stages of a resnet kept (2..4); fewer is faster on CPUs
    size: int = 256  # training crop and default export size (pixels, square)
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # Losses (docs/method.md): CE(u3, L) + lambda_tags BCE(v3, T) + lambda_image ||z3 - I_small||^2
    lambda_tags: float = 1.0
    lambda_image: float = 1.0
    weak_weight: float = 1.0  # weight of the weak (tag-only) images' loss in stage 2
    pseudo_threshold: float = 0.0  # stage-2 pseudo-label pixels whose class probability is below this are ignored
    # A pseudo-label pixel whose best class the cleaned tags rule out: ignored, or relabelled with the best class
    # the tags allow (background always allowed): the tags then choose between look-alike classes.
    pseudo_ruled_out: str = "ignore"
    # Refinement: E = 1/2 ||z3 - I_small||^2 / N  (+ tag_weight * BCE(v3, T) / K with tags), N = 3 h w
    step_size: float = 30.0
    tag_weight: float = 0.3
    iters_train: int = 10  # refinement steps that make stage-2 pseudo labels (more is better up to 10 on the
    # hard preset: benchmarks/paper_claims.py)
    iters_test: int = 0  # refinement steps at test time (the exported default)
    # The training loss taken after this many refinement steps, backpropagated through them (0: on the backbone's
    # features, as the paper). Trains the heads for the features they will see at t_test = train_through.
    train_through: int = 0
    tag_gate: str = (
        "none"  # how tags gate the labelmap: multiply (y = u3 * sigmoid(v3)), log (u3 + log sigmoid(v3)), none
    )
    suppress_absent: bool = False  # at test time, sink classes whose tag probability < 0.5 (background kept)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DISConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown config keys {sorted(unknown)}")
        d = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
        return cls(**d)

    def replace(self, **changes: Any) -> DISConfig:
        return dataclasses.replace(self, **changes)

    @property
    def feature_stride(self) -> int:
        """The backbone's output stride: mobilenet_v3_large 16; a resnet cut after stage 2 is at 8 whatever is asked,
        deeper ones at output_stride (the rest dilated). build_backbone builds exactly this (a test holds them
        equal)."""
        if self.backbone == "mobilenet_v3_large":
            return 16
        return 8 if self.stages == 2 else self.output_stride

    def feature_grid(self, height: int, width: int) -> tuple[int, int]:
        """The feature grid for a height x width input, or BadInput naming sizes that fit. The one size rule: the
        CLI, training, evaluation and export all ask it."""
        from disseg.runtime.errors import BadInput

        stride = self.feature_stride
        if height % stride or width % stride or height < 2 * stride or width < 2 * stride:
            near = max(2, round(height / stride)) * stride
            where = f"{self.backbone}" + (
                f" cut after stage {self.stages}" if self.backbone != "mobilenet_v3_large" else ""
            )
            raise BadInput(
                f"input size {height}x{width} does not fit {where} at output stride {stride}; use multiples of "
                f"{stride} of at least {2 * stride} (e.g. --size {near})"
            )
        return height // stride, width // stride

    def validate(self) -> None:
        """Raise ValueError with a fix for configurations the network cannot take."""
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; available: {', '.join(BACKBONES)}")
        if self.output_stride not in (8, 16):
            raise ValueError(f"output_stride must be 8 or 16, got {self.output_stride}")
        if self.backbone == "mobilenet_v3_large" and self.output_stride != 16:
            raise ValueError("mobilenet_v3_large has output stride 16; pass --output-stride 16")
        if not 2 <= self.stages <= 4:
            raise ValueError(f"stages must be 2, 3 or 4, got {self.stages}")
        if self.pseudo_ruled_out not in RULED_OUT:
            raise ValueError(f"pseudo_ruled_out must be one of {', '.join(RULED_OUT)}, got {self.pseudo_ruled_out!r}")
        if self.tag_gate not in TAG_GATES:
            raise ValueError(f"tag_gate must be one of {', '.join(TAG_GATES)}, got {self.tag_gate!r}")
        if self.num_classes < 2:
            raise ValueError("need at least 2 classes (background and one more)")


@dataclass
class TrainOptions:
    """How one run trains (not saved with the model). dis-train's options take their defaults from here and from
    DISConfig (a test holds them equal)."""

    data: Path
    out: Path
    stage: int = 1
    init: Path | None = None
    epochs: int = 10
    batch: int = 8
    optimizer: str = "sgd"
    lr: float | None = None  # default: 0.01 (SGD, DeepLab) or 1e-3 (AdamW)
    weight_decay: float = 1e-4
    device: str = "cpu"
    seed: int = 0
    resume: bool = False
    pretrained: str | None = None  # train/weights.py: 'imagenet', a file or a URL
    eval_iters: tuple[int, ...] = field(default_factory=tuple)  # extra t values scored each epoch
    max_train: int | None = None  # use only the first N fully labelled images (for label-budget studies)
    freeze_bn: bool = False  # keep batch-norm statistics fixed (small batches, fine-tuning)
    steps_per_epoch: int | None = None  # default: one pass over the larger training set
    dist_backend: str = "auto"  # under torchrun: nccl, gloo, or auto (NCCL where CUDA is)
    clip_grad: float = 5.0  # max gradient norm (0: off); SGD at DeepLab's lr diverges from scratch without it
