import numpy as np
import pytest

from disseg.runtime.metrics import ConfusionMatrix, TagF1, tags_from_labels


def test_confusion_matrix_counts_and_ignores_void():
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 255]])
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 0]])
    cm = ConfusionMatrix(3)
    cm.update(pred, truth)
    # rows = truth, columns = prediction; the two void pixels are not counted
    assert cm.matrix.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    iou = cm.iou()
    assert iou[0] == pytest.approx(1 / 3)  # tp 1, fp 1, fn 1
    assert iou[1] == pytest.approx(2 / 3)
    assert iou[2] == pytest.approx(1 / 2)
    assert cm.miou() == pytest.approx(100 * (1 / 3 + 2 / 3 + 1 / 2) / 3)
    assert cm.pixel_accuracy() == pytest.approx(100 * 4 / 6)


def test_absent_class_is_left_out_of_the_mean():
    cm = ConfusionMatrix(4)
    cm.update(np.array([0, 1]), np.array([0, 1]))
    assert np.isnan(cm.iou()[3])
    assert cm.miou() == pytest.approx(100.0)
    summary = cm.summary(["a", "b", "c", "d"])
    assert summary["per_class_iou"]["d"] is None and summary["per_class_iou"]["a"] == 100.0


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError):
        ConfusionMatrix(2).update(np.zeros(3), np.zeros(4))


def test_tag_f1_excludes_background():
    f1 = TagF1()
    f1.update(np.array([1, 1, 0, 1]), np.array([0, 1, 1, 1]))  # background disagreement must not count
    assert f1.f1() == pytest.approx(100 * 2 * 2 / (2 * 2 + 0 + 1))
    assert TagF1().f1() is None


def test_tags_from_labels_skip_void():
    tags = tags_from_labels(np.array([[0, 3], [255, 3]]), 4)
    assert tags.tolist() == [1, 0, 0, 1]
