import pytest
import torch

from disseg.runtime.errors import BadInput
from disseg.train.config import DISConfig
from disseg.train.model import DIS, labelmap_scores

CLASSES = ("background", "a", "b")


@pytest.mark.parametrize(
    "backbone,stages,stride,expected",
    [
        ("resnet18", 2, 8, (128, 8)),
        ("resnet18", 4, 8, (512, 8)),
        ("resnet34", 3, 16, (256, 16)),
        ("resnet50", 4, 8, (2048, 8)),
        ("resnet101", 4, 16, (2048, 16)),
        ("mobilenet_v3_large", 4, 16, (960, 16)),
    ],
)
def test_backbones_give_the_stated_stride_and_channels(backbone, stages, stride, expected):
    model = DIS(DISConfig(class_names=CLASSES, backbone=backbone, stages=stages, output_stride=stride)).eval()
    with torch.no_grad():
        u1, v1, image_small = model.features(torch.zeros(1, 3, 64, 64))
        heads = model.heads(u1, v1)
    channels, out_stride = expected
    assert model.stride == out_stride
    assert u1.shape == (1, channels, 64 // out_stride, 64 // out_stride) and v1.shape == (1, channels)
    assert image_small.shape == (1, 3, *u1.shape[2:])
    assert heads.u3.shape == (1, 3, *u1.shape[2:]) and heads.z3.shape == image_small.shape and heads.v3.shape == (1, 3)


def test_check_size_explains_the_fix():
    model = DIS(DISConfig(class_names=CLASSES, stages=2))
    model.check_size(64, 96)
    with pytest.raises(BadInput, match="multiples of 8"):
        model.check_size(63, 64)


def test_invalid_config_is_refused():
    with pytest.raises(ValueError, match="available"):
        DISConfig(class_names=CLASSES, backbone="vgg").validate()
    with pytest.raises(ValueError, match="output stride 16"):
        DISConfig(class_names=CLASSES, backbone="mobilenet_v3_large", output_stride=8).validate()


def test_tags_gate_the_labelmap():
    cfg = DISConfig(class_names=CLASSES, tag_gate="multiply", suppress_absent=True)
    from disseg.train.model import Heads

    u3 = torch.zeros(1, 3, 2, 2)
    u3[:, 2] = 5.0  # class 2 scores highest everywhere
    v3 = torch.tensor([[-9.0, 9.0, -9.0]])  # but the tags say class 2 is absent
    z = torch.zeros(1)
    pred = labelmap_scores(cfg, Heads(u3, z, v3, z, z)).argmax(1)
    assert (pred != 2).all()
    # The multiplicative gate alone only shrinks a confident wrong class; suppression is what removes it.
    assert (labelmap_scores(cfg.replace(suppress_absent=False), Heads(u3, z, v3, z, z)).argmax(1) == 2).all()


def test_log_gate_is_a_product_of_probabilities():
    from disseg.train.model import Heads

    torch.manual_seed(0)
    u3, v3, z = torch.randn(2, 3, 4, 4), torch.randn(2, 3), torch.zeros(1)
    scores = labelmap_scores(DISConfig(class_names=CLASSES, tag_gate="log"), Heads(u3, z, v3, z, z))
    want = torch.softmax(u3, 1) * torch.sigmoid(v3)[:, :, None, None]
    assert torch.allclose(torch.softmax(scores, 1), want / want.sum(1, keepdim=True), atol=1e-6)
    assert torch.equal(labelmap_scores(DISConfig(class_names=CLASSES, tag_gate="none"), Heads(u3, z, v3, z, z)), u3)
