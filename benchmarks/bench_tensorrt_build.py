"""Which export kinds NVIDIA's builder takes, engine sizes, and export / ahead-of-time build times against t.

Builds with TensorRT for RTX on this machine's CPU, ahead of time for one compute capability (no GPU
needed); the engines cannot be run here. Export and build are timed in this process, one after the other.

    python benchmarks/bench_tensorrt_build.py RUN/best.pt --data DATA --json benchmarks/results/tensorrt_build.json
"""

from __future__ import annotations

import argparse
import logging
import platform
import tempfile
import time
from pathlib import Path

import onnx

from disseg.calibration.quantize import calibrate
from disseg.calibration.reader import frames_from_data
from disseg.export.model_file import save
from disseg.export.onnx_export import export_checkpoint
from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.contract import read_model_info
from disseg.runtime.cpu import machine_facts
from disseg.runtime.engine_cache import build_engine, import_trt
from disseg.train.checkpoint import model_from_checkpoint

FLOAT_KINDS = [  # (name, iters, fp16, batch or None for dynamic)
    ("t0", 0, False, 1),
    ("t1", 1, False, 1),
    ("t3", 3, False, 1),
    ("t5", 5, False, 1),
    ("t0_fp16", 0, True, 1),
    ("t3_fp16", 3, True, 1),
    ("t5_fp16", 5, True, 1),
    ("t3_batch2", 3, False, 2),
    ("t3_dynamic", 3, False, None),
]


def build(path: Path, arch: str) -> dict:
    start = time.perf_counter()
    try:
        build_engine(path, path.with_suffix(".engine"), gpu_arch=arch)
    except Exception as err:  # a refusal is a result here
        return {"builds": False, "error": str(err)[:300]}
    seconds = time.perf_counter() - start
    return {
        "builds": True,
        "build_s": round(seconds, 2),
        "engine_mb": round(path.with_suffix(".engine").stat().st_size / 1e6, 2),
    }


def _float_rows(net, checkpoint: Path, size: int, kinds: set | None, gpu_arch: str, tmp: Path) -> list[dict]:
    """Export each float kind asked for and build it: one row each."""
    rows = []
    for name, iters, fp16, batch in FLOAT_KINDS:
        if kinds is not None and name not in kinds:
            continue
        proto, info, seconds = export_checkpoint(
            net, checkpoint, iters=iters, height=size, width=size, batch=batch,
            outputs=("labels", "scores", "tags"), fp16=fp16,
        )  # fmt: skip
        path = tmp / f"{name}.onnx"
        save(proto, path)
        rows.append(
            {
                "kind": name,
                "iters": iters,
                "precision": info.precision,
                "batch": batch or "dynamic (1..8)",
                "export_s": round(seconds, 2),
                "onnx_mb": round(path.stat().st_size / 1e6, 2),
                **build(path, gpu_arch),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _int8_rows(data: Path, size: int, kinds: set | None, gpu_arch: str, tmp: Path) -> list[dict]:
    """Calibrate the t=3 FP32 export to INT8 for each target asked for, and build it: one row each."""
    rows = []
    fp32 = tmp / "t3.onnx"
    calib = frames_from_data(data, "train", size, size, 32)
    for target in [t for t in ("tensorrt", "cpu") if kinds is None or f"t3_int8_{t}" in kinds]:
        start = time.perf_counter()
        model, _ = calibrate(
            onnx.load(fp32), read_model_info(fp32), calib, calib[-8:],
            data=None, target=target, method="minmax", max_drop=100.0,
        )  # fmt: skip
        seconds = time.perf_counter() - start
        path = tmp / f"t3_int8_{target}.onnx"
        onnx.save(model, path)
        rows.append(
            {
                "kind": f"t3_int8_{target}",
                "iters": 3,
                "precision": "int8",
                "batch": 1,
                "calibrate_s": round(seconds, 2),
                "onnx_mb": round(path.stat().st_size / 1e6, 2),
                **build(path, gpu_arch),
            }
        )
        print(rows[-1], flush=True)
    return rows


def _print_table(rows: list[dict]) -> None:
    print("| kind | precision | batch | export (s) | ONNX (MB) | builds | AOT build (s) | engine (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['precision']} | {r['batch']} | {r.get('export_s', r.get('calibrate_s'))} | "
            f"{r['onnx_mb']} | "
            f"{'yes' if r['builds'] else 'NO'} | {r.get('build_s', '-')} | {r.get('engine_mb', '-')} |"
        )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="data set for INT8 calibration")
    ap.add_argument("--gpu-arch", default="sm86")
    ap.add_argument("--size", type=int, help="export size [default: the checkpoint's]")
    ap.add_argument("--kinds", help="comma list of kinds to run [default: all, INT8 included]")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    trt = import_trt("tensorrt_rtx")
    net, _ = model_from_checkpoint(args.checkpoint)
    size = args.size or net.cfg.size
    kinds = set(args.kinds.split(",")) if args.kinds else None
    with tempfile.TemporaryDirectory() as tmp:
        rows = _float_rows(net, args.checkpoint, size, kinds, args.gpu_arch, Path(tmp))
        rows += _int8_rows(args.data, size, kinds, args.gpu_arch, Path(tmp))
    result = {
        "checkpoint": str(args.checkpoint),
        "backbone": net.cfg.backbone,
        "stages": net.cfg.stages,
        "size": size,
        "builder": f"tensorrt_rtx {trt.__version__}",
        "gpu_arch": args.gpu_arch,
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} CPUs, no GPU",
        "rows": rows,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.json, {"host_cpu": machine_facts(), **result})
    _print_table(rows)


if __name__ == "__main__":
    main()
