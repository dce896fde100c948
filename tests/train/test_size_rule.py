"""One size rule (DISConfig.feature_grid): every backbone x stages x output stride, at sizes around the
boundaries, either takes a training step or is refused with BadInput before any work. The CLI asks the
same rule: the case issue 12 found (`--stages 3 --output-stride 16 --size 264`, a traceback from the loss)
is now one line and exit 2."""

from __future__ import annotations

import pytest
import torch

from disseg.runtime.errors import BadInput
from disseg.train.config import BACKBONES, DISConfig
from disseg.train.engine import _losses, weighted
from disseg.train.model import DIS
from tests.conftest import run_cmd

CLASSES = ("background", "a", "b")
COMBOS = [
    (b, s, o)
    for b in BACKBONES
    for s in (2, 3, 4)
    for o in (8, 16)
    if b != "mobilenet_v3_large" or (o == 16 and s == 4)
]


@pytest.mark.parametrize("backbone, stages, stride", COMBOS)
def test_every_combination_trains_a_step_or_refuses(backbone, stages, stride):
    cfg = DISConfig(class_names=CLASSES, backbone=backbone, stages=stages, output_stride=stride)
    model = DIS(cfg)
    assert model.stride == cfg.feature_stride
    s = cfg.feature_stride
    for size in (2 * s - 8, 2 * s, 2 * s + 8, 3 * s):
        try:
            grid = cfg.feature_grid(size, size)
        except BadInput as err:
            assert size % s or size < 2 * s, (size, s)
            assert f"multiples of {s}" in str(err) and "\n" not in str(err)
            continue
        x = torch.rand(1, 3, size, size)
        labels = torch.randint(0, 3, (1, size, size))
        tags = torch.zeros(1, 3)
        with torch.no_grad():
            u1, _, image_small = model.features(model.normalize(x))
        assert tuple(u1.shape[-2:]) == grid == tuple(image_small.shape[-2:])
        loss = weighted(cfg, _losses(model, x, labels, tags))
        loss.backward()
        assert torch.isfinite(loss)


def test_issue_case_is_one_line_exit_2(tiny_data, tmp_path):
    proc = run_cmd(
        "dis-train",
        "--data",
        str(tiny_data),
        "--out",
        str(tmp_path / "o"),
        "--stages",
        "3",
        "--output-stride",
        "16",
        "--size",
        "264",
        "--epochs",
        "1",
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "does not fit resnet18 cut after stage 3 at output stride 16" in proc.stderr.strip().splitlines()[-1]
