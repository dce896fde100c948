"""Training curves: RUN/metrics.csv (one row per epoch, rewritten atomically as training goes) and RUN/curves.png
(loss terms and validation mIoU over epochs), drawn with matplotlib when it is installed."""

from __future__ import annotations

import csv
import io
import logging
from pathlib import Path

from disseg.runtime.atomic import atomic_write, atomic_write_text
from disseg.runtime.deps import extra

log = logging.getLogger("disseg.train")
LOSS_COLUMNS = ("loss", "ce", "tag_bce", "image_mse", "weak_loss")
_warned = False


def rows(history: list[dict], *, stage: int | str, iters_test: int) -> list[dict]:
    """metrics.json's epochs as flat CSV rows: losses by term, learning rate, validation mIoU (at the model's own
    t, then per scored t), pixel accuracy and tag F1, seconds."""
    out = []
    for entry in history:
        own = next((v for v in entry["val"] if v["iters"] == iters_test), entry["val"][0])
        row = {
            "stage": stage,
            "epoch": entry["epoch"],
            **{k: entry.get(k) for k in LOSS_COLUMNS},
            "lr": entry.get("lr"),
            "val_miou": own["miou"],
            "val_pixel_acc": own["pixel_acc"],
            "val_tag_f1": own["tag_f1"],
        }
        row.update({f"val_miou_t{v['iters']}": v["miou"] for v in entry["val"]})
        row["seconds"] = entry.get("seconds")
        out.append(row)
    return out


def write_curves(out: Path, history: list[dict], *, stage: int | str, iters_test: int) -> Path | None:
    """Write RUN/metrics.csv and, with matplotlib, RUN/curves.png; returns the picture's path or None."""
    table = rows(history, stage=stage, iters_test=iters_test)
    columns = list(dict.fromkeys(k for row in table for k in row))
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(table)
    atomic_write_text(out / "metrics.csv", text.getvalue())
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        global _warned
        if not _warned:
            log.info(
                "no curves.png: matplotlib is not installed (%s); %s/metrics.csv has the numbers",
                extra("plot"),
                out,
            )
            _warned = True
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = [r["epoch"] for r in table]
    for name in LOSS_COLUMNS:
        values = [r[name] for r in table]
        if any(v for v in values if v is not None):
            left.plot(epochs, values, marker="o", label=name)
    left.set(xlabel="epoch", ylabel="training loss", title=f"stage {stage}: losses")
    readable_axes(left, epochs)
    left.legend(fontsize=8)
    for key in [c for c in columns if c.startswith("val_miou_t")]:
        right.plot(epochs, [r.get(key) for r in table], marker="o", label=f"t={key[len('val_miou_t') :]}")
    right.set(xlabel="epoch", ylabel="validation mIoU (%)", title="validation mIoU by refinement steps")
    readable_axes(right, epochs, percent=True)
    right.legend(fontsize=8)
    fig.tight_layout()
    picture = out / "curves.png"
    atomic_write(picture, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))
    plt.close(fig)
    return picture


def readable_axes(ax, xs: list, *, percent: bool = False) -> None:
    """Whole-number ticks at the points drawn, a margin of one step around a single point (matplotlib would span
    +-0.04 around it), the value axis from 0 (0-100 for percentages) so one point or a flat line reads as a level."""
    ax.set_xticks(xs)
    if len(set(xs)) == 1:
        ax.set_xlim(xs[0] - 1, xs[0] + 1)
    if percent:
        ax.set_ylim(0, 100)
    else:
        ax.set_ylim(bottom=0, top=max(ax.get_ylim()[1], 1e-6) * 1.1)
