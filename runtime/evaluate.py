"""Scoring exported models (ONNX, engines) with the same samples, resizing and metrics as training."""

from __future__ import annotations

from pathlib import Path

from .console import progress
from .dataset import list_samples, load_eval_item, scan
from .errors import BadInput
from .image import resize_labels
from .metrics import ConfusionMatrix, TagF1, tags_from_labels
from .segmenter import Segmenter


def evaluate_exported(
    model: str | Path,
    data: str | Path,
    *,
    split: str = "val",
    iters: list[int] | None = None,
    backend: str = "auto",
    batch: int = 8,
) -> list[dict]:
    """Return one result row (`dis-eval --json`, docs/training.md) for the model's own iteration count."""
    with Segmenter(model, backend=backend) as seg:
        info = seg.info
        if iters is not None and iters != [info.iterations]:
            raise BadInput(
                f"{model} has {info.iterations} refinement steps built in; drop --iters or export with --iters "
                f"{iters[0]}"
            )
        if split == "weak":
            raise BadInput(
                "--split weak needs the tags in the energy, which exported models do not take; score the .pt checkpoint"
            )
        names, samples = list_samples(data, split)
        if tuple(names) != info.class_names:
            raise BadInput(f"{data} has classes {list(names)}, the model {list(info.class_names)}")
        samples = scan(samples, info.num_classes)
        matrix, tags_f1 = ConfusionMatrix(info.num_classes), TagF1()
        for i in progress(range(0, len(samples), batch), desc="eval", unit="batch"):
            items = [
                load_eval_item(s, info.num_classes, info.input_height, info.input_width, resize=False)
                for s in samples[i : i + batch]
            ]
            for item, result in zip(items, seg.segment_batch([it["bgr"] for it in items])):
                if item["mask"] is None:
                    continue
                matrix.update(resize_labels(result.labels, *item["mask"].shape), item["mask"])
                if result.tags is not None:
                    tags_f1.update(result.tags, tags_from_labels(item["mask"], info.num_classes))
    return [{"iters": info.iterations, **matrix.summary(info.class_names), "tag_f1": tags_f1.f1()}]
