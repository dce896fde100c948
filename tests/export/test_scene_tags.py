"""dis-export --scene-tags: the unrolled graph with the run-time tags in its energy and/or as a mask, against PyTorch
and against masking done by hand on the plain model's scores."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

torch = pytest.importorskip("torch")

from disseg.export.unroll import UnrolledDIS  # noqa: E402
from disseg.runtime.backends import cpu_backend  # noqa: E402
from disseg.runtime.contract import INPUT, MASKED_SCORE, SCENE_TAGS, read_model_info  # noqa: E402
from disseg.train.checkpoint import model_from_checkpoint  # noqa: E402
from tests.conftest import one_line, run_cmd  # noqa: E402


@pytest.fixture(scope="module")
def exports(tiny_run, tmp_path_factory):
    """mode -> ONNX of tiny_run's checkpoint, 3 steps, labels + scores + tags, dynamic batch ("" = no tags)."""
    folder = tmp_path_factory.mktemp("scene_tags")
    made = {}

    def get(mode: str):
        if mode not in made:
            out = folder / f"{mode or 'plain'}.onnx"
            tags = ["--scene-tags", mode] if mode else []
            flags = ["--iters", "3", "--outputs", "labels,scores,tags", "--dynamic-batch", *tags, "--tag-weight", "2"]
            run_cmd("dis-export", str(tiny_run / "best.pt"), *flags, "-o", str(out), check=True)
            made[mode] = out
        return made[mode]

    return get


def _images(tiny_data, n: int = 6) -> np.ndarray:
    from disseg.runtime.image import read_image, resize_to

    paths = sorted((tiny_data / "JPEGImages").glob("*"))[:n]
    return np.stack([resize_to(read_image(p), 64, 64) for p in paths])


def _tags(n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    tags = (rng.random((n, k)) < 0.4).astype(np.float32)
    tags[:, 0] = rng.random(n) < 0.5  # background sometimes absent, so masking must relabel
    tags[-1] = 1
    tags[1, :] = 0.5  # soft: in the energy as a target of 0.5, kept by the mask (>= 0.5)
    return tags


def test_metadata_graph_and_parity_report(exports):
    path = exports("energy+mask")
    info = read_model_info(path)
    assert info.scene_tags == "energy+mask" and info.tag_weight == 2.0
    graph = onnx.load(str(path)).graph
    inputs = {i.name: i.type.tensor_type for i in graph.input}
    assert list(inputs) == [INPUT, SCENE_TAGS]
    assert inputs[SCENE_TAGS].elem_type == onnx.TensorProto.FLOAT
    assert inputs[SCENE_TAGS].shape.dim[1].dim_value == info.num_classes
    report = json.loads(path.with_suffix(".parity.json").read_text())
    assert report["passed"] and report["scene_tags"]["all_ones_vs_untagged_label_agreement"] == 100.0
    drawn = report["scene_tags"]["drawn_tags_per_image"]
    assert min(drawn) < info.num_classes and max(drawn) == info.num_classes  # some tags, and all ones
    plain = read_model_info(exports(""))
    assert plain.scene_tags == "" and [i.name for i in onnx.load(str(exports(""))).graph.input] == [INPUT]


@pytest.mark.parametrize("mode", ["energy+mask", "energy", "mask"])
def test_onnx_runtime_equals_pytorch_with_tags(exports, tiny_run, tiny_data, mode):
    net, _ = model_from_checkpoint(tiny_run / "best.pt")
    net.cfg = net.cfg.replace(tag_weight=2.0)
    images = _images(tiny_data)
    tags = _tags(len(images), net.cfg.num_classes)
    out = cpu_backend(exports(mode).read_bytes()).infer({INPUT: images, SCENE_TAGS: tags})
    with torch.no_grad():
        labels, scores, probs = UnrolledDIS(net, 3, outputs=("labels", "scores", "tags"), scene_tags=mode)(
            torch.from_numpy(images), torch.from_numpy(tags)
        )
    assert (out["labels"] == labels.numpy()).mean() > 0.999
    np.testing.assert_allclose(out["tags"], probs.numpy(), atol=1e-4)
    plain = cpu_backend(exports("").read_bytes()).infer({INPUT: images})
    changed = (out["labels"] != plain["labels"]).mean()
    if "energy" in mode:  # the tags moved the tag probabilities of the images that have some
        assert np.abs(out["tags"][:-1] - plain["tags"][:-1]).max() > 1e-3
        np.testing.assert_allclose(out["tags"][-1], plain["tags"][-1], atol=1e-5)  # all ones: untouched
    if "mask" in mode:
        assert changed > 0.05, changed
        for row, lab in zip(tags, out["labels"]):
            assert set(np.unique(lab)) <= set(np.flatnonzero(row >= 0.5).tolist())


def test_mask_alone_is_masking_the_plain_models_scores(exports, tiny_data):
    """With --scene-tags mask the graph is the plain model's argmax over the allowed classes, nothing else."""
    images = _images(tiny_data)
    k = read_model_info(exports("")).num_classes
    tags = _tags(len(images), k, seed=1)
    plain = cpu_backend(exports("").read_bytes()).infer({INPUT: images})
    masked = np.where(tags[:, :, None, None] < 0.5, MASKED_SCORE, plain["scores"]).argmax(1)
    out = cpu_backend(exports("mask").read_bytes()).infer({INPUT: images, SCENE_TAGS: tags})
    assert np.array_equal(out["labels"], masked)
    np.testing.assert_allclose(out["tags"], plain["tags"], atol=1e-6)  # the mask leaves the refinement alone


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (
            ["--iters", "0", "--scene-tags", "energy"],
            ["--scene-tags energy", "no refinement step", "--scene-tags mask"],
        ),
        (["--iters", "3", "--scene-tags", "energy", "--tag-weight", "0"], ["the tag weight is 0"]),
        (["--scene-tags", "--deepstream", "DS"], ["nvinfer feeds a model one input"]),
        (["--scene-tags", "sometimes"], ["'sometimes' is not one of 'energy+mask', 'energy', 'mask'"]),
    ],
)
def test_export_refusals_are_one_line(tiny_run, tmp_path, flags, words):
    flags = [str(tmp_path / f) if f == "DS" else f for f in flags]
    proc = run_cmd("dis-export", str(tiny_run / "best.pt"), *flags, "-o", str(tmp_path / "m.onnx"))
    one_line(proc, 2, *words)
    assert not (tmp_path / "m.onnx").exists()


def test_without_steps_the_tags_only_mask(tiny_run, tmp_path):
    out = tmp_path / "t0.onnx"
    proc = run_cmd("dis-export", str(tiny_run / "best.pt"), "--iters", "0", "--scene-tags", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "the tags only mask absent classes" in proc.stderr
    assert read_model_info(out).scene_tags == "mask"


def test_an_onnx_model_or_deepstream_from_one_refuses(exports, tmp_path):
    proc = run_cmd("dis-export", str(exports("")), "--scene-tags", "--engine")
    one_line(proc, 2, "--scene-tags and --tag-weight export a checkpoint")
    proc = run_cmd("dis-export", str(exports("mask")), "--deepstream", str(tmp_path / "ds"))
    one_line(proc, 2, "takes scene tags", "nvinfer")
    assert not (tmp_path / "ds" / "model.onnx").exists()
