"""The parity gate: PyTorch vs the exported graph on ONNX Runtime (CPU), per output and per iteration.

Like Polygraphy's comparator: max abs error of the scores and label agreement, with a threshold that
refuses to ship a model that disagrees.
"""

from __future__ import annotations

import numpy as np
import onnx
import torch

from disseg.runtime.backends import cpu_backend, infer_in_batches
from disseg.runtime.contract import INPUT, LABELS, SCORES
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
) -> dict:
    """Compare PyTorch (FP32) with the exported graph for every t in 0..iters and with the shipped file.

    Per-iteration rows come from probe graphs exported for each t the same way as the shipped one.
    Returns a JSON-able report whose "passed" says whether the shipped labels agree enough.
    """
    from .unroll import UnrolledDIS

    precision = "fp16" if fp16 else "fp32"
    threshold = THRESHOLDS[precision] if min_agreement is None else min_agreement
    h, w = images[0].shape[:2]
    batch = np.stack(images)
    rows = []
    with torch.no_grad():
        for t in range(iters + 1):
            labels_pt, scores_pt = UnrolledDIS(model, t, outputs=(LABELS, SCORES))(torch.from_numpy(batch))
            probe = export_graph(model, t, height=h, width=w, batch=None, outputs=(LABELS, SCORES), fp16=fp16)
            out = cpu_backend(probe.SerializeToString()).infer({INPUT: batch})
            labels_rt, scores_rt = out[LABELS], out[SCORES]
            rows.append(
                {
                    "iters": t,
                    "label_agreement": round(float(100 * (labels_rt == labels_pt.numpy()).mean()), 4),
                    "max_abs_score_error": float(np.abs(scores_rt - scores_pt.numpy()).max()),
                    "finite": bool(np.isfinite(scores_rt).all()),
                }
            )
        labels_pt = UnrolledDIS(model, iters)(torch.from_numpy(batch))[0].numpy()
    backend = cpu_backend(shipped.SerializeToString())
    fixed = backend.inputs[INPUT].shape[0]
    labels_rt = infer_in_batches(backend, INPUT, batch, fixed if isinstance(fixed, int) else len(batch))[LABELS]
    agreement = float(100 * (labels_rt == labels_pt).mean())
    finite = all(r["finite"] for r in rows)
    return {
        "precision": precision,
        "images": len(images),
        "source": source,
        "threshold_label_agreement": threshold,
        "outputs": {LABELS: {"label_agreement": round(agreement, 4)}},
        "per_iteration": rows,
        "passed": bool(agreement >= threshold and finite),
    }
