"""Segmentation and tag metrics in NumPy, shared by training-time evaluation and exported models."""

from __future__ import annotations

import numpy as np

IGNORE_INDEX = 255


class ConfusionMatrix:
    """Accumulates a num_classes x num_classes confusion matrix (rows: truth, columns: prediction)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, target: np.ndarray) -> None:
        """Add one labelmap (or a batch); pixels labelled 255 in `target` are ignored."""
        pred = np.asarray(pred).reshape(-1).astype(np.int64)
        target = np.asarray(target).reshape(-1).astype(np.int64)
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.size} pixels, target {target.size}")
        keep = target != IGNORE_INDEX
        k = self.num_classes
        self.matrix += np.bincount(target[keep] * k + pred[keep], minlength=k * k).reshape(k, k)

    def iou(self) -> np.ndarray:
        """Per-class IoU in [0, 1]; NaN for classes absent from both truth and prediction."""
        tp = np.diag(self.matrix).astype(np.float64)
        union = self.matrix.sum(0) + self.matrix.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(union > 0, tp / union, np.nan)

    def miou(self) -> float:
        """Mean IoU in percent over the classes that occur."""
        iou = self.iou()
        return float(100 * np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")

    def pixel_accuracy(self) -> float:
        total = self.matrix.sum()
        return float(100 * np.trace(self.matrix) / total) if total else float("nan")

    def summary(self, class_names: list[str] | tuple[str, ...]) -> dict:
        """Return {"miou", "pixel_acc", "per_class_iou": {name: % or None}} (percent)."""
        per_class = {
            name: (None if np.isnan(v) else round(float(100 * v), 3)) for name, v in zip(class_names, self.iou())
        }
        return {"miou": round(self.miou(), 3), "pixel_acc": round(self.pixel_accuracy(), 3), "per_class_iou": per_class}


def tags_from_labels(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Image-level tags (num_classes,) float32 from a labelmap: 1 for every class present (void ignored)."""
    present = np.unique(np.asarray(labels))
    tags = np.zeros(num_classes, np.float32)
    tags[present[present < num_classes]] = 1.0
    return tags


class TagF1:
    """Micro-averaged F1 of predicted vs true image-level tags, background (class 0) excluded."""

    def __init__(self) -> None:
        self.tp = self.fp = self.fn = 0

    def update(self, pred: np.ndarray, truth: np.ndarray) -> None:
        pred = np.asarray(pred)[..., 1:] > 0.5
        truth = np.asarray(truth)[..., 1:] > 0.5
        self.tp += int((pred & truth).sum())
        self.fp += int((pred & ~truth).sum())
        self.fn += int((~pred & truth).sum())

    def f1(self) -> float | None:
        denom = 2 * self.tp + self.fp + self.fn
        return round(100.0 * 2 * self.tp / denom, 3) if denom else None
