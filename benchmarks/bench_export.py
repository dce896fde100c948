"""Export figures for a checkpoint: per t in 0,1,3,5 and FP32/FP16 — export time, ONNX size, parity
(label agreement, max score error per iteration), mIoU of checkpoint vs ONNX; and latency ratios
measured in one process: ONNX Runtime vs PyTorch eager (same model, same input) and t=3 vs t=0.

    python benchmarks/bench_export.py RUN/best.pt --data data/synth --json benchmarks/results/export.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

from disseg.export.model_file import save
from disseg.export.onnx_export import export_checkpoint, held_out_images
from disseg.export.parity import parity_report
from disseg.export.unroll import UnrolledDIS
from disseg.runtime.backends import cpu_backend
from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.contract import INPUT
from disseg.runtime.cpu import machine_facts
from disseg.runtime.evaluate import evaluate_exported
from disseg.train.checkpoint import model_from_checkpoint


def latency_ms(fn, runs: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def _export_rows(net, args, images, source: str, tmp: Path) -> tuple[list[dict], dict]:
    """Export each t in --iters at FP32 and FP16, each through the parity gate (and dis-eval with --data): the
    rows, and the files by (t, fp16)."""
    rows, paths = [], {}
    size = net.cfg.size
    for fp16 in (False, True):
        for t in [int(v) for v in args.iters.split(",")]:
            proto, info, seconds = export_checkpoint(
                net, args.checkpoint, iters=t, height=size, width=size, batch=1, outputs=("labels",), fp16=fp16
            )
            report = parity_report(net, proto, images, iters=t, fp16=fp16, source=source)
            path = tmp / f"t{t}{'_fp16' if fp16 else ''}.onnx"
            save(proto, path)
            paths[(t, fp16)] = path
            row = {
                "iters": t,
                "precision": info.precision,
                "export_s": round(seconds, 2),
                "onnx_mb": round(path.stat().st_size / 1e6, 3),
                "label_agreement": report["outputs"]["labels"]["label_agreement"],
                "per_iteration": report["per_iteration"],
            }
            if args.data is not None and not fp16:
                row["miou_onnx"] = evaluate_exported(path, args.data, backend="onnxruntime")[0]["miou"]
            rows.append(row)
            print(json.dumps({k: v for k, v in row.items() if k != "per_iteration"}), flush=True)
    return rows, paths


def _latency(net, images, paths: dict, runs: int) -> dict:
    """Latency, same process, same input: PyTorch eager against ONNX Runtime (CPU), at t = 0 and t = 3."""
    x = torch.from_numpy(images[0][None].copy())
    lat = {}
    for t in (0, 3):
        module = UnrolledDIS(net, t).eval()
        backend = cpu_backend(paths[(t, False)])
        feed = {INPUT: x.numpy()}
        with torch.no_grad():
            lat[f"torch_t{t}_ms"] = latency_ms(partial(module, x), runs)
        lat[f"ort_t{t}_ms"] = latency_ms(partial(backend.infer, feed), runs)
    lat["ort_over_torch_t3"] = round(lat["ort_t3_ms"] / lat["torch_t3_ms"], 3)
    lat["ort_over_torch_t0"] = round(lat["ort_t0_ms"] / lat["torch_t0_ms"], 3)
    lat["ort_t3_over_t0"] = round(lat["ort_t3_ms"] / lat["ort_t0_ms"], 3)
    print(json.dumps(lat), flush=True)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", type=Path)
    ap.add_argument("--iters", default="0,1,3,5")
    ap.add_argument("--runs", type=int, default=40)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    torch.set_num_threads(2)
    net, ckpt = model_from_checkpoint(args.checkpoint)
    size = net.cfg.size
    images, source = held_out_images(args.data, size, size, 8)
    with tempfile.TemporaryDirectory() as tmp:
        rows, paths = _export_rows(net, args, images, source, Path(tmp))
        lat = _latency(net, images, paths, args.runs)
    result = {
        "checkpoint": str(args.checkpoint),
        "input": f"{size}x{size}",
        "parity_images": source,
        "exports": rows,
        "latency": lat,
    }
    if args.data is not None:
        from disseg.train.cli import _eval_checkpoint

        result["miou_checkpoint"] = {
            r["iters"]: r["miou"]
            for r in _eval_checkpoint(
                args.checkpoint, args.data, "val", [int(v) for v in args.iters.split(",")], 8, "cpu", {}
            )
        }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, {"host_cpu": machine_facts(), **result})


if __name__ == "__main__":
    main()
