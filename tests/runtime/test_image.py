import cv2
import numpy as np
import pytest

from disseg.runtime.errors import BadInput
from disseg.runtime.image import read_image, resize_labels, resize_to, to_bgr8


@pytest.mark.parametrize(
    "image,expected_pixel",
    [
        (np.full((4, 5), 7, np.uint8), [7, 7, 7]),  # grayscale
        (np.full((4, 5, 1), 9, np.uint8), [9, 9, 9]),
        (np.dstack([np.full((4, 5), v, np.uint8) for v in (1, 2, 3, 200)]), [1, 2, 3]),  # BGRA: alpha dropped
        (np.full((4, 5, 3), 0x1234, np.uint16), [0x12, 0x12, 0x12]),  # 16-bit: high byte
        (np.full((4, 5, 3), 0.5, np.float32), [128, 128, 128]),
    ],
)
def test_to_bgr8_accepts_common_formats(image, expected_pixel):
    out = to_bgr8(image)
    assert out.shape == (4, 5, 3) and out.dtype == np.uint8
    assert out[0, 0].tolist() == expected_pixel


@pytest.mark.parametrize(
    "image",
    [
        np.zeros((0, 5, 3), np.uint8),
        np.zeros((4, 5, 2), np.uint8),
        np.zeros((4, 5, 3), np.int8),
        np.zeros((2, 2, 2, 3), np.uint8),
    ],
)
def test_to_bgr8_rejects_with_a_reason(image):
    with pytest.raises(BadInput, match="expected"):
        to_bgr8(image)


def test_read_image_missing_and_corrupt(tmp_path):
    with pytest.raises(BadInput, match="no such image"):
        read_image(tmp_path / "nope.png")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg at all")
    with pytest.raises(BadInput, match="not a decodable image"):
        read_image(bad)
    good = tmp_path / "g.png"
    cv2.imwrite(str(good), np.full((3, 3), 200, np.uint8))
    assert read_image(good).shape == (3, 3, 3)


def test_resizing_round_trip_keeps_labels_discrete():
    img = np.random.default_rng(0).integers(0, 255, (37, 91, 3), dtype=np.uint8)
    assert resize_to(img, 64, 64).shape == (64, 64, 3)
    assert resize_to(np.zeros((1, 1, 3), np.uint8), 64, 64).shape == (64, 64, 3)
    labels = np.random.default_rng(1).integers(0, 5, (64, 64), dtype=np.uint8)
    back = resize_labels(labels, 37, 91)
    assert back.shape == (37, 91) and set(np.unique(back)) <= set(range(5))
