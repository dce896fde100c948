"""INT8 figures: dis-calibrate --target cpu and --target tensorrt on an FP32 export; latency of each
against the FP32 model on ONNX Runtime CPU in one process, and the mIoU drop on the val split.

    python benchmarks/bench_int8.py MODEL.onnx --data data/synth --json benchmarks/results/int8.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.cpu import machine_facts

BIN = Path(sys.executable).parent


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--runs", type=int, default=60)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    result = {"model": str(args.model)}
    with tempfile.TemporaryDirectory() as tmp:
        outs = {}
        for target in ("cpu", "tensorrt"):
            out = Path(tmp) / f"{target}.onnx"
            subprocess.run(
                [BIN / "dis-calibrate", args.model, "--data", args.data, "--target", target, "-o", out], check=True
            )
            outs[target] = out
            result[target] = json.loads(out.with_suffix(".quant.json").read_text())
        bench = Path(tmp) / "bench.json"
        # interleave-free but same process: dis-bench runs all three models back to back
        subprocess.run(
            [BIN / "dis-bench", args.model, outs["cpu"], outs["tensorrt"], "--runs", str(args.runs), "--json", bench],
            check=True,
        )
        rows = json.loads(bench.read_text())["results"]
        fp32, cpu, trt = rows
        result["latency"] = {
            "fp32_p50_ms": fp32["p50_ms"],
            "int8_cpu_p50_ms": cpu["p50_ms"],
            "int8_trt_qdq_p50_ms": trt["p50_ms"],
            "speedup_cpu": round(fp32["p50_ms"] / cpu["p50_ms"], 3),
            "speedup_trt_qdq_on_cpu": round(fp32["p50_ms"] / trt["p50_ms"], 3),
        }
    print(
        json.dumps(
            {
                "latency": result["latency"],
                "cpu_drop": result["cpu"]["int8"]["drop"],
                "trt_drop": result["tensorrt"]["int8"]["drop"],
                "trt_agreement": result["tensorrt"]["int8"]["label_agreement"],
            },
            indent=1,
        )
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, {"host_cpu": machine_facts(), **result})


if __name__ == "__main__":
    main()
