"""benchmarks/gpu_check.py, the script a lent GPU machine runs, kept working: its --smoke run on the CPU
trains, kills and resumes, compares reduced precision, runs the product's commands on the trained checkpoint, and
times eager PyTorch and ONNX Runtime with I/O binding; its time budget skips latency rows it has no time for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


def test_gpu_check_smoke_on_cpu(tmp_path):
    out = tmp_path / "gpu_check.json"
    # No time budget: the rows asserted on below must run however slow the machine is (a loaded 2-core machine ran
    # out of the default 420 s and got "skipped" rows); the budget itself has its own test below.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--budget-s", "inf", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    training = report["training"]
    assert training["resumed_equal_bitwise"] is True and training["steps"] == 6, training  # the CPU resumes exactly
    rows = report["fp16_numerics"]["rows"]
    assert [r["iters"] for r in rows] == [0, 3] and all(r["finite"] and r["label_agreement"] > 90 for r in rows)
    product = report["product"]
    assert product["doctor"]["exit"] == 0 and "onnxruntime" in product["doctor"]["report"], product["doctor"]
    for precision in ("fp32", "fp16"):
        row = product[precision]
        assert row["run_frames"] == 16 and row["run_backend"] == "onnxruntime (CPUExecutionProvider)", row
        assert row["bench_p50_ms"] > 0 and row["run_said"] == [], row  # the CPU build asks for no GPU provider
    assert abs(product["fp32"]["miou"] - product["pytorch_miou_t3"]) < 0.5, product  # export = checkpoint
    streams = product["streams"]  # 16 validation images: 4 streams of them ran as batches of 4
    assert streams["streams_1"]["batches"] == {"1": 16} and streams["streams_4"]["batches"] == {"4": 16}, streams
    latency = report["latency"]
    assert len(latency) == 4 and all(r["eager_ms"] > 0 and r["ort_iobinding_ms"] > 0 for r in latency), latency
    assert all(r["ort_vs_cpu_provider_label_agreement"] == 100.0 for r in latency)
    assert report["machine"]["device"] == "cpu" and "tensorrt" in report


def test_gpu_check_budget_skips_rows_and_says_so(tmp_path):
    out = tmp_path / "gpu_check.json"
    cmd = [sys.executable, str(SCRIPT), "--smoke", "--device", "cpu", "--skip", "training", "--budget-s", "0"]
    proc = subprocess.run([*cmd, "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())
    assert "training" not in report and "product" not in report
    assert [r["skipped"] for r in report["latency"]] == ["over --budget-s 0"] * 4, report["latency"]
