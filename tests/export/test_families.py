"""The segmentation families people deploy, through dis-import with no per-family code: segmentation-models-pytorch
(every architecture, two encoders each), transformers' SegFormer (logits at 1/4, class names and preprocessing read
from the config files beside the export) and Ultralytics' YOLO26 semantic segmentation (its own ONNX export: an ArgMax
inside, class names and preprocessing read from its metadata). Each model is built with its library's own constructor
and random weights (tests/foreign_models.py) and held to the library model's own answer; representatives run through
dis-run, dis-eval, the C ABI (tests/cpp) and a TensorRT-for-RTX build, and take run-time scene tags."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.conftest import run_cmd

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from disseg.export.foreign import parity_frames  # noqa: E402
from disseg.runtime.contract import read_model_info  # noqa: E402
from disseg.runtime.segmenter import Segmenter  # noqa: E402
from tests.foreign_models import FAMILY_SIZE, SMP_ARCHS, SMP_ENCODERS  # noqa: E402

NAMES = [f"smp-{a}-{e}" for a in SMP_ARCHS for e in SMP_ENCODERS] + ["hf-segformer"]
THROUGH = ("smp-Unet-resnet34", "smp-DeepLabV3Plus-mobilenet_v2", "hf-segformer")  # the tools, and TensorRT
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])


def library_labels(net, frames_bgr: np.ndarray) -> np.ndarray:
    """The library model's own answer in PyTorch: ImageNet-normalised RGB, logits resized to the frame (bilinear,
    as the libraries' own post-processing does), argmax."""
    x = torch.from_numpy(((frames_bgr[..., ::-1] / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        logits = torch.cat([net(x[i : i + 1]) for i in range(len(x))])
        logits = torch.nn.functional.interpolate(logits, size=x.shape[-2:], mode="bilinear", align_corners=False)
    return logits.argmax(1).numpy()


def wrapped_labels(model, frames_bgr: np.ndarray, **options) -> np.ndarray:
    with Segmenter(model, backend="onnxruntime", **options) as seg:
        return np.stack([r.labels for r in seg.segment_batch(list(frames_bgr))])


@pytest.fixture(scope="module")
def imported(family_models, tiny_data, tmp_path_factory) -> dict:
    """THROUGH imported with the data set's class names (given inline for smp; SegFormer's config.json has them)."""
    from disseg.runtime.dataset import list_samples

    folder = tmp_path_factory.mktemp("imported")
    names = ["--classes", ",".join(list_samples(tiny_data, "val")[0])]
    out = {}
    for name in THROUGH:
        out[name] = folder / f"{name}.onnx"
        given = [] if name.startswith("hf-") else names
        run_cmd("dis-import", str(family_models[name][1]), "-o", str(out[name]), *given, check=True)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_a_family_model_imports_at_parity_with_its_library(family_models, tiny_data, tmp_path, name):
    net, source = family_models[name]
    model = tmp_path / "m.onnx"
    run_cmd("dis-import", str(source), "-o", str(model), check=True)  # no flags: nothing to tell it
    assert json.loads(model.with_suffix(".parity.json").read_text())["passed"]
    frames = parity_frames(FAMILY_SIZE, FAMILY_SIZE, 6, seed=13)
    theirs = library_labels(net, frames)
    assert len(np.unique(theirs)) > 1  # varied labels: agreement means something
    assert (wrapped_labels(model, frames) == theirs).mean() >= 0.999
    info = read_model_info(model)
    if name == "hf-segformer":  # config.json's id2label and preprocessor_config.json's mean/std were read
        from disseg.runtime.dataset import list_samples

        assert list(info.class_names) == list(list_samples(tiny_data, "val")[0])
        assert info.extra["import"]["read_from"] == ["config.json's id2label", "preprocessor_config.json"]
        assert info.resize == "stretch"  # transformers' image processor resizes without keeping the aspect
        assert info.extra["import"]["output_size"] == [FAMILY_SIZE // 4, FAMILY_SIZE // 4]


@pytest.mark.parametrize("name", THROUGH)
def test_dis_run_and_dis_eval_take_a_family_model(family_models, imported, tiny_data, tmp_path, name):
    from PIL import Image

    from disseg.runtime.dataset import list_samples, load_eval_item
    from disseg.runtime.metrics import ConfusionMatrix

    images = tmp_path / "images"
    images.mkdir()
    frames = parity_frames(FAMILY_SIZE, FAMILY_SIZE, 3, seed=4)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(images / f"{i}.png"), frame)
    run_cmd("dis-run", str(imported[name]), "--images", str(images), "--masks", str(tmp_path / "masks"),
            "--no-display", check=True)  # fmt: skip
    masks = np.stack([np.array(Image.open(tmp_path / "masks" / f"{i}.png")) for i in range(3)])
    assert (masks == library_labels(family_models[name][0], frames)).mean() >= 0.999
    report = tmp_path / "eval.json"
    run_cmd("dis-eval", str(imported[name]), "--data", str(tiny_data), "--json", str(report), check=True)
    names, samples = list_samples(tiny_data, "val")
    matrix = ConfusionMatrix(len(names))
    items = [load_eval_item(s, len(names), FAMILY_SIZE, FAMILY_SIZE) for s in samples]
    reference = library_labels(family_models[name][0], np.stack([it["bgr"] for it in items]))
    for item, labels in zip(items, reference):
        matrix.update(cv2.resize(labels.astype(np.uint8), item["mask"].shape[::-1], interpolation=0), item["mask"])
    assert json.loads(report.read_text())["results"][0]["miou"] == pytest.approx(matrix.summary(names)["miou"], abs=0.5)


@pytest.mark.parametrize("name", THROUGH)
def test_tensorrt_for_rtx_builds_a_family_model(imported, tmp_path, name):
    if os.environ.get("CI"):
        import tensorrt_rtx  # noqa: F401  (.ci/run installs it: never skip there)
    else:
        pytest.importorskip("tensorrt_rtx")
    engine = tmp_path / "m.engine"
    run_cmd("dis-export", str(imported[name]), "--engine", "--gpu-arch", "sm86", "-o", str(engine), check=True)
    sidecar = json.loads(engine.with_name("m.engine.json").read_text())["disseg"]
    assert engine.stat().st_size > 50_000 and sidecar["extra"]["import"]["source"].endswith(".onnx")


@pytest.mark.parametrize("name", ["smp-Unet-resnet34", "hf-segformer"])
def test_scene_tags_mask_a_family_model(family_models, tmp_path, name):
    """dis-import --scene-tags: all ones give the library's labels; a class tagged absent never appears."""
    model = tmp_path / "tagged.onnx"
    run_cmd("dis-import", str(family_models[name][1]), "-o", str(model), "--scene-tags", check=True)
    frames = parity_frames(FAMILY_SIZE, FAMILY_SIZE, 6, seed=17)
    theirs = library_labels(family_models[name][0], frames)
    classes = read_model_info(model).class_names
    assert (wrapped_labels(model, frames) == theirs).mean() >= 0.999
    common = int(np.bincount(theirs.ravel()).argmax())
    tags = ",".join(c for i, c in enumerate(classes) if i != common)
    masked = wrapped_labels(model, frames, scene_tags=tags)
    assert not (masked == common).any() and (masked == theirs)[theirs != common].mean() >= 0.999


def ultralytics_predict(onnx_path, frames) -> np.ndarray:
    """Ultralytics' own predict() on its own ONNX export (ONNX Runtime under its AutoBackend): its LetterBox into the
    fixed input, RGB, 0..1, the class map cut out of the letterbox and brought back to the frame (nearest)."""
    from ultralytics import YOLO

    found = YOLO(str(onnx_path), task="semantic").predict(list(frames), imgsz=FAMILY_SIZE, verbose=False)
    return np.stack([r.semantic_mask.data.cpu().numpy() for r in found])


@pytest.mark.parametrize("size", [(FAMILY_SIZE, FAMILY_SIZE), (96, 160), (160, 96), (50, 120), (480, 640)])
def test_ultralytics_semantic_segmentation_imports_as_its_own_predict_sees_it(ultralytics_model, tiny_data, tmp_path,
                                                                               size):  # fmt: skip
    """Against Ultralytics' own predict() on frames of the model's size and of other shapes: disseg letterboxes as
    Ultralytics does (its metadata says the model is Ultralytics'), so the labels agree whatever the aspect ratio."""
    from disseg.runtime.dataset import list_samples

    _, source = ultralytics_model
    model = tmp_path / "yolo.onnx"
    proc = run_cmd("dis-import", str(source), "-o", str(model), check=True)  # no flags: its metadata says it all
    info = read_model_info(model)
    assert list(info.class_names) == list(list_samples(tiny_data, "val")[0]) and info.mean == (0.0, 0.0, 0.0)
    assert info.resize == "letterbox" and "letterboxed" in proc.stderr
    assert info.extra["import"]["output_kind"] == "labels" and "Ultralytics metadata" in proc.stderr
    frames = parity_frames(*size, 4, seed=13)
    theirs = ultralytics_predict(source, frames)
    assert len(np.unique(theirs)) > 1
    assert (wrapped_labels(model, frames) == theirs).mean() >= 0.999  # measured: 100 % on every shape


def test_ultralytics_model_runs_in_dis_run_and_builds_with_tensorrt_for_rtx(ultralytics_model, tmp_path):
    from PIL import Image

    _, source = ultralytics_model
    model = tmp_path / "yolo.onnx"
    run_cmd("dis-import", str(source), "-o", str(model), check=True)
    images = tmp_path / "images"
    images.mkdir()
    frames = parity_frames(FAMILY_SIZE, FAMILY_SIZE, 3, seed=4)
    for i, frame in enumerate(frames):
        cv2.imwrite(str(images / f"{i}.png"), frame)
    run_cmd("dis-run", str(model), "--images", str(images), "--masks", str(tmp_path / "masks"), "--no-display",
            check=True)  # fmt: skip
    masks = np.stack([np.array(Image.open(tmp_path / "masks" / f"{i}.png")) for i in range(3)])
    assert (masks == ultralytics_predict(source, frames)).mean() >= 0.999
    if os.environ.get("CI"):
        import tensorrt_rtx  # noqa: F401
    else:
        pytest.importorskip("tensorrt_rtx")
    engine = tmp_path / "yolo.engine"
    run_cmd("dis-export", str(model), "--engine", "--gpu-arch", "sm86", "-o", str(engine), check=True)
    assert json.loads(engine.with_name("yolo.engine.json").read_text())["disseg"]["extra"]["import"]["read_from"]


@pytest.mark.parametrize("name", ["smp-Unet-resnet34", "smp-FPN-resnet34", "hf-segformer"])
def test_a_family_model_imports_in_fp16_within_the_gate(family_models, tmp_path, name):
    """dis-import --fp16 (the family network in FP16, pre- and post-processing FP32): >= 99 % of the library's
    labels (measured 99.79, 99.99 and 99.96 %; three untrained MobileNetV2 models fall under it: docs/import.md)."""
    net, source = family_models[name]
    model = tmp_path / "half.onnx"
    run_cmd("dis-import", str(source), "-o", str(model), "--fp16", check=True)
    assert read_model_info(model).precision == "fp16"
    frames = parity_frames(FAMILY_SIZE, FAMILY_SIZE, 6, seed=13)
    assert (wrapped_labels(model, frames) == library_labels(net, frames)).mean() >= 0.99
