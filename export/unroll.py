"""The refinement loop unrolled into a fixed-iteration graph with preprocessing inside (uint8 BGR in, labels out)."""

from __future__ import annotations

import torch
from torch import nn

from disseg.runtime.contract import LABELS, MASKED_SCORE, OUTPUTS, SCENE_TAG_MODES, SCORES, TAGS
from disseg.train.model import DIS, upsampled_scores
from disseg.train.refine import refine, scene_tag_weight


def label_map(scores: torch.Tensor, num_classes: int) -> torch.Tensor:
    """argmax over classes as the contract's label type. TensorRT 10 converts to uint8 only from FLOAT or HALF
    (NvInferRuntimeBase.h, DataType::kUINT8), so uint8 labels go ArgMax -> float -> uint8, never int -> uint8."""
    index = scores.argmax(1)
    if num_classes > 256:
        return index.to(torch.int32)
    return index.float().to(torch.uint8)


class UnrolledDIS(nn.Module):
    """forward(image: B x H x W x 3 uint8 BGR[, scene_tags: B x K float]) -> labels B x H x W (uint8; int32 past
    256 classes) [, scores B x K x H x W, tags B x K].

    Runs exactly `iters` refinement steps with the explicit energy gradient; no autograd and no ONNX
    Loop, and every step reads the same weights, so the exported file shares one set of initializers.
    With `scene_tags` (a mode of contract.SCENE_TAG_MODES) the graph takes the run-time tags: "energy" puts them in
    the energy's tag term (train/refine.py; off for an image whose tags are all ones), "mask" sinks the classes
    whose tag is below 0.5 before the argmax; all-ones tags give the model without tags.
    """

    MODEL_SCOPE = "model"  # the attribute holding the DIS: torch.onnx scopes its nodes "model.<module>..."

    def __init__(self, model: DIS, iters: int, *, outputs: tuple[str, ...] = (LABELS,), scene_tags: str = "") -> None:
        super().__init__()
        unknown = set(outputs) - set(OUTPUTS)
        if unknown or LABELS not in outputs:
            raise ValueError(f"outputs must include {LABELS!r} and come from {OUTPUTS}, got {outputs}")
        if scene_tags and scene_tags not in SCENE_TAG_MODES:
            raise ValueError(f"scene_tags must be one of {SCENE_TAG_MODES}, got {scene_tags!r}")
        self.model = model.eval()
        self.iters = iters
        self.outputs = tuple(o for o in OUTPUTS if o in outputs)
        self.scene_tags = scene_tags
        self.register_buffer("bgr_to_rgb", torch.tensor([2, 1, 0]), persistent=False)

    def forward(self, image: torch.Tensor, scene_tags: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
        m, cfg = self.model, self.model.cfg
        # TensorRT takes a uint8 network input only into a Cast: convert first, then reorder.
        x = image.float().permute(0, 3, 1, 2).index_select(1, self.bgr_to_rgb) / 255.0
        u1, v1, image_small = m.features(m.normalize(x))
        energy_tags = {}
        if "energy" in self.scene_tags:
            energy_tags = {"tags": scene_tags, "tag_weight": scene_tag_weight(scene_tags, cfg.tag_weight)}
        u1, v1 = refine(m, u1, v1, image_small, steps=self.iters, step_size=cfg.step_size, **energy_tags)
        heads = m.heads(u1, v1)
        scores = upsampled_scores(cfg, heads, image.shape[1], image.shape[2])
        if "mask" in self.scene_tags:
            scores = torch.where(scene_tags[:, :, None, None] < 0.5, torch.full_like(scores, MASKED_SCORE), scores)
        result = {
            LABELS: label_map(scores, cfg.num_classes),
            SCORES: scores.float(),
            TAGS: torch.sigmoid(heads.v3).float(),
        }
        return tuple(result[name] for name in self.outputs)
