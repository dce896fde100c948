"""Scene tags at run time on ONNX Runtime (no torch): a model exported with --scene-tags, fed by the Segmenter and
dis-run. The same checkpoint exported with and without them (scene_tags_model, tiny_onnx)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from disseg.runtime.contract import SCENE_TAGS, read_model_info
from disseg.runtime.errors import BadInput
from disseg.runtime.segmenter import Segmenter
from tests.conftest import one_line, run_cmd


def frames(count: int, seed: int = 0, size: tuple[int, int] = (72, 96)) -> list[np.ndarray]:
    """Frames with coloured rectangles on noise, of another size than the model's."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        image = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        for _ in range(4):
            y, x = rng.integers(0, size[0] - 20), rng.integers(0, size[1] - 20)
            image[y : y + 20, x : x + 30] = rng.integers(0, 256, 3)
        out.append(image)
    return out


@pytest.fixture(scope="module")
def pair(tiny_onnx, scene_tags_model):
    with Segmenter(tiny_onnx) as plain, Segmenter(scene_tags_model) as tagged:
        yield plain, tagged


def test_the_model_says_it_takes_scene_tags(scene_tags_model, tiny_onnx):
    info = read_model_info(scene_tags_model)
    assert info.scene_tags == "energy+mask" and read_model_info(tiny_onnx).scene_tags == ""
    with Segmenter(scene_tags_model) as seg:
        spec = seg.backend.inputs[SCENE_TAGS]
        assert spec.shape[1] == info.num_classes and spec.dtype == np.float32


def test_without_tags_the_tagged_model_is_the_plain_one(pair):
    """All-ones tags (what the runtime feeds when given none) reproduce the model exported without them."""
    plain, tagged = pair
    images = frames(6)
    ones = np.ones(tagged.info.num_classes, np.float32)
    for image in images:
        a, b, c = plain(image), tagged(image), tagged(image, scene_tags=ones)
        assert np.array_equal(a.labels, b.labels) and np.array_equal(b.labels, c.labels)
        np.testing.assert_allclose(a.tags, b.tags, atol=1e-5)


def test_tags_restrict_the_labels_and_move_the_tag_probabilities(pair):
    _, tagged = pair
    k = tagged.info.num_classes
    only = np.zeros(k, np.float32)
    only[[1, 2]] = 1  # no background: every pixel must take class 1 or 2
    moved = []
    for image in frames(4, seed=1):
        free, held = tagged(image), tagged(image, scene_tags=only)
        assert set(np.unique(held.labels)) <= {1, 2}
        assert set(np.unique(free.labels)) - {1, 2}  # it did label other classes without tags
        moved.append(held.tags - free.tags)
    moved = np.mean(moved, 0)
    assert (moved[[1, 2]] > 0).all() and (moved[[c for c in range(k) if c not in (1, 2)]] < 0).all(), moved
    single = np.zeros(k, np.float32)
    single[3] = 1
    assert set(np.unique(tagged(frames(1)[0], scene_tags=single).labels)) == {3}


def test_tags_by_name_keep_the_background(pair):
    _, tagged = pair
    names = tagged.class_names
    tagged.scene_tags = f"{names[1]}, {names[2].upper()}"  # names are matched ignoring case
    try:
        expected = np.zeros(len(names), np.float32)
        expected[[0, 1, 2]] = 1
        assert np.array_equal(tagged.scene_tags, expected)
        for image in frames(3, seed=2):
            assert set(np.unique(tagged(image).labels)) <= {0, 1, 2}
            assert np.array_equal(tagged(image).labels, tagged(image, scene_tags=expected).labels)
    finally:
        tagged.scene_tags = None


def test_tags_per_frame_in_one_batch(pair):
    _, tagged = pair
    k = tagged.info.num_classes
    a, b = np.zeros(k, np.float32), np.zeros(k, np.float32)
    a[[1, 4]], b[[2, 5]] = 1, 1
    images = frames(3, seed=3)
    batch = tagged.segment_batch(images, scene_tags=[a, b, None])
    assert tagged.batch_plan(3) == [3]  # one batch of three frames with three tag vectors
    singles = [tagged(images[0], scene_tags=a), tagged(images[1], scene_tags=b), tagged(images[2])]
    for one, many in zip(singles, batch):
        assert np.array_equal(one.labels, many.labels)
        np.testing.assert_allclose(one.tags, many.tags, atol=1e-6)
    assert set(np.unique(batch[0].labels)) <= {1, 4} and set(np.unique(batch[1].labels)) <= {2, 5}


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("ember,boat", ["unknown class 'boat'", "the model's classes are: background,"]),
        ([0.5, 1.0], ["expected 8 values in 0..1", "got 2 value(s)"]),
        ([2.0] * 8, ["outside 0..1"]),
        ("", ["no class named"]),
    ],
)
def test_bad_tags_are_one_clear_error(scene_tags_model, given, words):
    with pytest.raises(BadInput) as err:
        Segmenter(scene_tags_model, scene_tags=given)
    for word in words:
        assert word in str(err.value)


def test_a_model_without_the_input_refuses_tags(tiny_onnx, pair):
    with pytest.raises(BadInput, match="exported without scene tags.*dis-export CKPT --scene-tags"):
        Segmenter(tiny_onnx, scene_tags="ember")
    with pytest.raises(BadInput, match="exported without scene tags"):
        pair[0](frames(1)[0], scene_tags=np.ones(8, np.float32))


def _masks(folder) -> dict[str, np.ndarray]:
    """PNG masks as label maps (palette index = label), by file name."""
    from PIL import Image

    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_dis_run_takes_tags_per_stream(scene_tags_model, tmp_path):
    names = read_model_info(scene_tags_model).class_names
    for i, seed in enumerate((10, 11)):
        (tmp_path / f"in{i}").mkdir()
        for j, image in enumerate(frames(3, seed=seed)):
            cv2.imwrite(str(tmp_path / f"in{i}" / f"f{j}.png"), image)
    tag_file = tmp_path / "site.txt"
    tag_file.write_text(f"# the yard camera\nbackground 0\n{names[1]}, {names[3]}\n{names[4]} 0.3  # rarely\n")
    proc = run_cmd(
        "dis-run", str(scene_tags_model), "--source", str(tmp_path / "in0"), "--source", str(tmp_path / "in1"),
        "--scene-tags-file", str(tag_file), "--scene-tags-file", str(tag_file), "--masks", str(tmp_path / "m"),
        "--no-display", "--stats", str(tmp_path / "stats.json"),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # a soft value is shown with what it does: the model masks (energy+mask), and 0.3 is below the mask's 0.5
    assert f"s0 scene tags: {names[1]}, {names[3]}, {names[4]} 0.3 (below 0.5: masked)" in proc.stderr
    expected = np.zeros(len(names), np.float32)
    expected[[1, 3]], expected[4] = 1, 0.3
    with Segmenter(scene_tags_model, scene_tags=expected) as seg:
        for i, seed in enumerate((10, 11)):
            written = _masks(tmp_path / "m" / f"s{i}")
            assert len(written) == 3
            for j, image in enumerate(frames(3, seed=seed)):
                labels = written[f"f{j}.png"]
                assert np.array_equal(labels, seg(image).labels) and set(np.unique(labels)) <= {1, 3}
    assert json.loads((tmp_path / "stats.json").read_text())["frames"] == 6


def test_dis_run_tags_differ_between_streams(scene_tags_model, tmp_path):
    names = read_model_info(scene_tags_model).class_names
    (tmp_path / "in").mkdir()
    for j, image in enumerate(frames(2, seed=12)):
        cv2.imwrite(str(tmp_path / "in" / f"f{j}.png"), image)
    src = str(tmp_path / "in")
    proc = run_cmd(
        "dis-run", str(scene_tags_model), "--source", src, "--source", src, "--source", src,
        "--scene-tags", names[2], "--scene-tags", "-", "--scene-tags", names[5],
        "--masks", str(tmp_path / "m"), "--no-display",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    with Segmenter(scene_tags_model) as seg:
        for i, given in enumerate((names[2], None, names[5])):
            for name, labels in _masks(tmp_path / "m" / f"s{i}").items():
                image = cv2.imread(str(tmp_path / "in" / name))
                assert np.array_equal(labels, seg(image, scene_tags=given).labels), (i, name)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--scene-tags", "boat"], ["unknown class 'boat'", "background, "]),
        (["--scene-tags", "ember", "--scene-tags", "leaf"], ["2 scene-tag sets for 1 source(s)"]),
        (["--scene-tags", "ember", "--scene-tags-file", "x.txt"], ["not both"]),
        (["--scene-tags-file", "missing.txt"], ["--scene-tags-file missing.txt: cannot read it"]),
    ],
)
def test_dis_run_bad_tags_are_one_line_and_write_nothing(scene_tags_model, tmp_path, args, words):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "f.png"), frames(1)[0])
    (tmp_path / "x.txt").write_text("ember\n")
    proc = run_cmd(
        "dis-run", str(scene_tags_model), "--images", str(tmp_path / "in"), "--masks", str(tmp_path / "m"),
        "--no-display", *[a if not a.endswith(".txt") else str(tmp_path / a) for a in args],
    )  # fmt: skip
    one_line(proc, 2, *[w.replace("missing.txt", str(tmp_path / "missing.txt")) for w in words])
    assert not list(tmp_path.glob("m/**/*.png"))


def test_dis_run_refuses_tags_for_a_model_without_them(tiny_onnx, tmp_path):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "f.png"), frames(1)[0])
    proc = run_cmd(
        "dis-run", str(tiny_onnx), "--images", str(tmp_path / "in"), "--masks", str(tmp_path / "m"), "--no-display",
        "--scene-tags", "ember",
    )  # fmt: skip
    one_line(proc, 2, "exported without scene tags", "--scene-tags")


def test_dis_bench_feeds_the_second_input(scene_tags_model, tmp_path):
    """dis-bench times the backend alone, so it builds the scene_tags feed itself (all ones, batch 2)."""
    out = tmp_path / "bench.json"
    proc = run_cmd("dis-bench", str(scene_tags_model), "--batch", "2", "--runs", "3", "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    row = json.loads(out.read_text())["results"][0]
    assert (row["batch"], row["runs"], row["iterations_unrolled"]) == (2, 3, 3)
