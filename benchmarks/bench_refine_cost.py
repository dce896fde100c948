"""What the unrolled refinement costs on ONNX Runtime CPU, relative to t=0, for random-weight models
of several depths (the refinement's cost is fixed by K and the feature map; the backbone's is not).

    python benchmarks/bench_refine_cost.py --json benchmarks/results/refine_cost.json
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from disseg.export.onnx_export import export_graph
from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.cpu import machine_facts
from disseg.train.config import DISConfig
from disseg.train.model import DIS
from disseg.train.synth import SYNTH_CLASSES


def median_ms(sess: ort.InferenceSession, feed: dict, runs: int) -> float:
    for _ in range(5):
        sess.run(None, feed)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    torch.manual_seed(0)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    feed = {"image": np.random.default_rng(0).integers(0, 255, (1, args.size, args.size, 3), dtype=np.uint8)}
    rows = []
    for stages in (2, 4):
        net = DIS(DISConfig(class_names=SYNTH_CLASSES, stages=stages)).eval()
        ms = {}
        with tempfile.TemporaryDirectory() as tmp:
            for t in (0, 3):
                path = Path(tmp) / f"t{t}.onnx"
                proto = export_graph(
                    net, t, height=args.size, width=args.size, batch=1, outputs=("labels",), fp16=False
                )
                path.write_bytes(proto.SerializeToString())
                ms[t] = median_ms(
                    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"]), feed, args.runs
                )
        rows.append(
            {
                "backbone": f"resnet18, {stages} stages, stride 8",
                "t0_ms": round(ms[0], 2),
                "t3_ms": round(ms[3], 2),
                "t3_over_t0": round(ms[3] / ms[0], 3),
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    if args.json:
        write_json(args.json, {"host_cpu": machine_facts(), **{"input": f"{args.size}x{args.size}", "results": rows}})


if __name__ == "__main__":
    main()
