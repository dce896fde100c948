"""dis-import on the families people deploy, for docs/import.md's table: every segmentation-models-pytorch
architecture with two encoders, transformers' SegFormer and Ultralytics' YOLO26n-sem, built as the tests build them
(tests/foreign_models.py: random weights, BatchNorm settled, head redrawn), each imported in FP32 and FP16, its
labels held to the library model's own answer on generated frames (PyTorch's argmax; Ultralytics' own predict), and
built by TensorRT for RTX ahead of time (sm86), timed.

    python benchmarks/bench_families.py --json benchmarks/results/families.json

Needs torch, segmentation-models-pytorch, transformers, ultralytics (test-only, AGPL-3.0) and tensorrt-rtx."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("YOLO_AUTOINSTALL", "false")

from disseg.export.foreign import parity_frames  # noqa: E402
from disseg.runtime.cli_util import write_json  # noqa: E402 (atomic)
from disseg.runtime.cpu import machine_facts  # noqa: E402
from tests.export.test_families import library_labels, wrapped_labels  # noqa: E402
from tests.foreign_models import FAMILY_SIZE, build_families, ultralytics_sem  # noqa: E402

BIN = Path(sys.executable).parent
NAMES = ["background", "road", "car", "person", "tree", "sky", "building", "sign"]


def _run(*args: str) -> tuple[int, float, str]:
    start = time.perf_counter()
    proc = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True)
    return proc.returncode, time.perf_counter() - start, (proc.stderr.strip().splitlines() or [""])[-1]


def _row(name: str, source: Path, reference, folder: Path) -> dict:
    frames = parity_frames(FAMILY_SIZE, FAMILY_SIZE, 8, seed=13)
    theirs = reference(frames)
    row: dict = {"model": name}
    for precision, flags in (("fp32", []), ("fp16", ["--fp16", "--min-agreement", "0"])):
        model = folder / f"{name}.{precision}.onnx"
        code, seconds, said = _run("dis-import", str(source), "-o", str(model), "--force", *flags)
        row[f"{precision}_import_s"] = round(seconds, 1)
        row[f"{precision}_agreement"] = (
            round(100 * float((wrapped_labels(model, frames) == theirs).mean()), 3) if code == 0 else said[:160]
        )
    code, seconds, said = _run("dis-export", str(folder / f"{name}.fp32.onnx"), "--engine", "--gpu-arch", "sm86",
                               "-o", str(folder / f"{name}.engine"))  # fmt: skip
    row["trt_rtx_build_s"] = round(seconds, 1) if code == 0 else f"failed: {said[:160]}"
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, (net, source) in build_families(folder, NAMES).items():
            rows.append(_row(name, source, lambda frames, net=net: library_labels(net, frames), folder))
        yolo, source = ultralytics_sem(folder / "ultralytics", NAMES)

        def predicted(frames):
            found = yolo.predict(list(frames), imgsz=FAMILY_SIZE, verbose=False)
            return np.stack([r.semantic_mask.data.cpu().numpy() for r in found])

        rows.append(_row("ultralytics-yolo26n-sem", source, predicted, folder))
    if args.json:
        write_json(args.json, {"host_cpu": machine_facts(), "input": f"{FAMILY_SIZE}x{FAMILY_SIZE}", "rows": rows})


if __name__ == "__main__":
    main()
