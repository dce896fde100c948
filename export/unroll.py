"""The refinement loop unrolled into a fixed-iteration graph with preprocessing inside (uint8 BGR in, labels out)."""
from __future__ import annotations

import torch
from torch import nn

from disseg.train.model import DIS, upsampled_scores
from disseg.train.refine import refine

OUTPUTS = ("labels", "scores", "tags")


class UnrolledDIS(nn.Module):
    """forward(image: B x H x W x 3 uint8 BGR) -> labels B x H x W (uint8; int32 past 256 classes)
    [, scores B x K x H x W, tags B x K].

    Runs exactly `iters` refinement steps with the explicit energy gradient; no autograd and no ONNX
    Loop, and every step reads the same weights, so the exported file shares one set of initializers.
    """

    def __init__(self, model: DIS, iters: int, *, outputs: tuple[str, ...] = ("labels",)) -> None:
        super().__init__()
        unknown = set(outputs) - set(OUTPUTS)
        if unknown or "labels" not in outputs:
            raise ValueError(f"outputs must include 'labels' and come from {OUTPUTS}, got {outputs}")
        self.model = model.eval()
        self.iters = iters
        self.outputs = tuple(o for o in OUTPUTS if o in outputs)
        self.register_buffer("bgr_to_rgb", torch.tensor([2, 1, 0]), persistent=False)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        m, cfg = self.model, self.model.cfg
        x = image.permute(0, 3, 1, 2).index_select(1, self.bgr_to_rgb).float() / 255.0
        u1, v1, image_small = m.features(m.normalize(x))
        u1, v1 = refine(m, u1, v1, image_small, steps=self.iters, step_size=cfg.step_size)
        heads = m.heads(u1, v1)
        scores = upsampled_scores(cfg, heads, image.shape[1], image.shape[2])
        labels = scores.argmax(1).to(torch.uint8 if cfg.num_classes <= 256 else torch.int32)
        result = {"labels": labels, "scores": scores, "tags": torch.sigmoid(heads.v3)}
        return tuple(result[name] for name in self.outputs)
