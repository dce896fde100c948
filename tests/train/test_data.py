import logging

import numpy as np
import pytest
import torch
from PIL import Image

from disseg.runtime.dataset import list_samples, read_mask, read_weak_tags, scan
from disseg.runtime.errors import BadInput
from disseg.runtime.metrics import TagF1, tags_from_labels
from disseg.train.data import TrainSet
from disseg.train.synth import write_dataset


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_synth_is_deterministic_for_a_seed(tmp_path):
    kw = dict(num_train=3, num_val=2, num_weak=3, size=48)
    write_dataset(tmp_path / "a", seed=5, **kw)
    write_dataset(tmp_path / "b", seed=5, **kw)
    write_dataset(tmp_path / "c", seed=6, **kw)
    a, b, c = _files(tmp_path / "a"), _files(tmp_path / "b"), _files(tmp_path / "c")
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_weak_tags_are_noisy_like_idw(tmp_path):
    write_dataset(tmp_path / "d", num_train=1, num_val=1, num_weak=60, size=48, seed=1, tag_drop=0.3, tag_add=0.1)
    names, weak = list_samples(tmp_path / "d", "weak")
    f1 = TagF1()
    for s in weak:
        given = np.zeros(len(names))
        given[list(s.tags)] = 1
        f1.update(given, tags_from_labels(read_mask(s.mask, len(names)), len(names)))
    assert 40 < f1.f1() < 95  # noisy, not useless
    clean = tmp_path / "clean"
    write_dataset(clean, num_train=1, num_val=1, num_weak=20, size=48, seed=1, tag_drop=0.0, tag_add=0.0)
    f1 = TagF1()
    for s in list_samples(clean, "weak")[1]:
        given = np.zeros(len(names))
        given[list(s.tags)] = 1
        f1.update(given, tags_from_labels(read_mask(s.mask, len(names)), len(names)))
    assert f1.f1() == 100.0


def test_tags_file_format(tmp_path):
    path = tmp_path / "tags.txt"
    path.write_text("# comment\nimg1 dog cat  # trailing comment\nimg2\n")
    assert read_weak_tags(path, ("background", "cat", "dog")) == {"img1": (0, 1, 2), "img2": (0,)}
    path.write_text("img1 unicorn\n")
    with pytest.raises(BadInput, match=r"tags.txt:1: unknown class 'unicorn'"):
        read_weak_tags(path, ("background", "cat"))


def _save_mask(path, labels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def test_folder_layout_and_sbd_layout(tmp_path):
    import cv2

    root = tmp_path / "folder"
    for split in ("train", "val"):
        (root / split / "images").mkdir(parents=True)
        cv2.imwrite(str(root / split / "images" / "x.png"), np.zeros((8, 8, 3), np.uint8))
        _save_mask(root / split / "masks" / "x.png", np.ones((8, 8)))
    (root / "classes.txt").write_text("background\nthing\n")
    names, samples = list_samples(root, "train")
    assert names == ("background", "thing") and samples[0].mask == root / "train" / "masks" / "x.png"

    voc = tmp_path / "voc"
    (voc / "JPEGImages").mkdir(parents=True)
    cv2.imwrite(str(voc / "JPEGImages" / "a.jpg"), np.zeros((8, 8, 3), np.uint8))
    _save_mask(voc / "SegmentationClassAug" / "a.png", np.zeros((8, 8)))
    (voc / "ImageSets" / "SegmentationAug").mkdir(parents=True)
    (voc / "ImageSets" / "SegmentationAug" / "train_aug.txt").write_text("a\n")
    names, samples = list_samples(voc, "train")
    assert len(names) == 21 and samples[0].mask == voc / "SegmentationClassAug" / "a.png"


def test_corrupt_files_are_skipped_and_counted(tmp_path, caplog):
    write_dataset(tmp_path / "d", num_train=4, num_val=1, num_weak=0, size=32)
    (tmp_path / "d" / "JPEGImages" / "train_00001.jpg").write_bytes(b"garbage")
    (tmp_path / "d" / "SegmentationClass" / "train_00002.png").write_bytes(b"garbage")
    names, samples = list_samples(tmp_path / "d", "train")
    with caplog.at_level(logging.WARNING):
        good = scan(samples, len(names))
    assert [s.image.stem for s in good] == ["train_00000", "train_00003"]
    assert "train_00001.jpg" in caplog.text and "train_00002.png" in caplog.text and "skipped 2 of 4" in caplog.text


def test_label_outside_classes_names_file_and_value(tmp_path):
    write_dataset(tmp_path / "d", num_train=2, num_val=1, num_weak=0, size=32)
    bad = tmp_path / "d" / "SegmentationClass" / "train_00001.png"
    _save_mask(bad, np.full((32, 32), 42))
    names, samples = list_samples(tmp_path / "d", "train")
    with pytest.raises(BadInput, match=r"train_00001.png: label value 42 is outside the 8 classes"):
        scan(samples, len(names))


def test_augmentation_moves_image_and_mask_together(tmp_path):
    import cv2

    # Each class is painted its own grey level; after random scale/crop/flip, every labelled pixel must
    # still carry its class's grey level (up to interpolation at edges).
    root = tmp_path / "f"
    (root / "train" / "images").mkdir(parents=True)
    labels = np.zeros((60, 80), np.uint8)
    labels[10:40, 5:30] = 1
    labels[20:55, 45:75] = 2
    cv2.imwrite(str(root / "train" / "images" / "x.png"), np.repeat((labels * 100)[..., None], 3, 2).astype(np.uint8))
    _save_mask(root / "train" / "masks" / "x.png", labels)
    (root / "classes.txt").write_text("bg\na\nb\n")
    names, samples = list_samples(root, "train")
    ds = TrainSet(samples, 3, 48, seed=0)
    for epoch in range(4):
        ds.set_epoch(epoch)
        item = ds[0]
        grey, mask = item["image"][0], item["mask"]
        for c in (0, 1, 2):
            inside = mask == c
            inner = torch.from_numpy(cv2.erode(inside.numpy().astype(np.uint8), np.ones((5, 5))).astype(bool))
            if inner.any():
                assert torch.allclose(grey[inner], torch.full_like(grey[inner], c * 100 / 255), atol=0.02)
    ds.set_epoch(1)
    first = ds[0]["mask"]
    ds.set_epoch(2)
    ds.set_epoch(1)
    assert torch.equal(first, ds[0]["mask"])  # seeded by (seed, epoch, index)
