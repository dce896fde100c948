"""The parity gate: PyTorch vs the exported graph on ONNX Runtime (CPU), per output and per iteration.

Like Polygraphy's comparator: max abs error of the scores and label agreement, with a threshold that
refuses to ship a model that disagrees.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch

from disseg.runtime.backends import cpu_backend, infer_in_batches
from disseg.runtime.contract import INPUT, LABELS, SCENE_TAGS, SCORES
from disseg.train.model import DIS

from .onnx_export import export_graph

THRESHOLDS = {"fp32": 99.9, "fp16": 99.0}  # minimum label agreement, percent


def parity_report(
    model: DIS,
    shipped: onnx.ModelProto,
    images: list[np.ndarray],
    *,
    iters: int,
    fp16: bool,
    source: str,
    min_agreement: float | None = None,
    scene_tags: str = "",
) -> dict:
    """Compare PyTorch (FP32) with the exported graph for every t in 0..iters and with the shipped file.

    Per-iteration rows come from probe graphs exported for each t the same way as the shipped one. A model with
    `scene_tags` is compared on drawn tag vectors (parity_tags), and its all-ones tags against PyTorch without tags.
    Returns a JSON-able report whose "passed" says whether the shipped labels agree enough.
    """
    from .unroll import UnrolledDIS

    precision = "fp16" if fp16 else "fp32"
    threshold = THRESHOLDS[precision] if min_agreement is None else min_agreement
    batch = np.stack(images)
    tags = parity_tags(len(images), model.cfg.num_classes) if scene_tags else None
    feeds = {INPUT: batch, **({SCENE_TAGS: tags} if scene_tags else {})}
    args = [torch.from_numpy(a) for a in feeds.values()]
    with torch.no_grad():
        rows = [_iteration_row(model, t, feeds, fp16=fp16, scene_tags=scene_tags) for t in range(iters + 1)]
        labels_pt = UnrolledDIS(model, iters, scene_tags=scene_tags)(*args)[0].numpy()
        untagged_pt = UnrolledDIS(model, iters)(args[0])[0].numpy() if scene_tags else None
    backend = cpu_backend(shipped.SerializeToString())
    fixed = backend.inputs[INPUT].shape[0]
    step = fixed if isinstance(fixed, int) else len(batch)
    labels_rt = infer_in_batches(backend, INPUT, batch, step, {k: v for k, v in feeds.items() if k != INPUT})[LABELS]
    agreement = float(100 * (labels_rt == labels_pt).mean())
    report = {
        "precision": precision,
        "images": len(images),
        "source": source,
        "threshold_label_agreement": threshold,
        "outputs": {LABELS: {"label_agreement": round(agreement, 4)}},
        "per_iteration": rows,
    }
    passed = agreement >= threshold and all(r["finite"] for r in rows)
    if scene_tags:  # all-ones tags (what the runtimes feed when given none) against the model without tags
        ones = infer_in_batches(backend, INPUT, batch, step)[LABELS]
        untagged = float(100 * (ones == untagged_pt).mean())
        report["scene_tags"] = {
            "use": scene_tags,
            "drawn_tags_per_image": [int(row.sum()) for row in tags],
            "all_ones_vs_untagged_label_agreement": round(untagged, 4),
        }
        passed = passed and untagged >= threshold
    return {**report, "passed": bool(passed)}


def _iteration_row(model: DIS, t: int, feeds: dict, *, fp16: bool, scene_tags: str) -> dict:
    """PyTorch against a probe graph exported for `t` steps (as the shipped one is), on the same feeds."""
    from .unroll import UnrolledDIS

    h, w = feeds[INPUT].shape[1:3]
    labels_pt, scores_pt = UnrolledDIS(model, t, outputs=(LABELS, SCORES), scene_tags=scene_tags)(
        *[torch.from_numpy(a) for a in feeds.values()]
    )
    probe = export_graph(
        model, t, height=h, width=w, batch=None, outputs=(LABELS, SCORES), fp16=fp16, scene_tags=scene_tags
    )
    out = cpu_backend(probe.SerializeToString()).infer(feeds)
    labels_rt, scores_rt = out[LABELS], out[SCORES]
    return {
        "iters": t,
        "label_agreement": round(float(100 * (labels_rt == labels_pt.numpy()).mean()), 4),
        "max_abs_score_error": float(np.abs(scores_rt - scores_pt.numpy()).max()),
        "finite": bool(np.isfinite(scores_rt).all()),
    }


def parity_tags(count: int, classes: int, *, seed: int = 7) -> np.ndarray:
    """Scene tags the parity gate feeds: per image each class kept with probability 1/2 (class 0, background, always),
    and every fourth image all ones."""
    rng = np.random.default_rng(seed)
    tags = (rng.random((count, classes)) < 0.5).astype(np.float32)
    tags[:, 0] = 1
    tags[3::4] = 1
    return tags
