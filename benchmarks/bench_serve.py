"""The cost of serving through Triton: requests per second and p50/p95 latency through `dis-serve` at concurrency 1, 4
and 16 (HTTP clients, each its own connection), against the local Segmenter on the same frames in the same run, and
the batch sizes Triton formed (its metrics: inferences / executions).

    python benchmarks/bench_serve.py MODEL.onnx --requests 64 --json benchmarks/results/serve.json

Run it where `disseg[runtime,serve]` is installed. The server and the clients share this machine's cores, so on a
small CPU the figures are the overhead of the hop and of batching, not what a GPU server behind a network gives.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.cpu import machine_facts
from disseg.runtime.segmenter import Segmenter
from disseg.runtime.triton_serve import free_ports

BIN = Path(sys.executable).parent


def start_server(model: Path, max_batch: int, delay_us: int, log: Path) -> tuple[subprocess.Popen, list[int]]:
    ports = free_ports(3)
    names = ("--http-port", "--grpc-port", "--metrics-port")
    args = [str(BIN / "dis-serve"), str(model), *[a for n, p in zip(names, ports) for a in (n, str(p))]]
    args += ["--max-batch", str(max_batch), "--queue-delay-us", str(delay_us)]
    out = open(log, "w")  # kept open for the server's life
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while "serving" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"dis-serve did not start (exit {proc.poll()})")
        time.sleep(0.2)
    return proc, ports


def metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    names = ("nv_inference_request_success", "nv_inference_exec_count", "nv_inference_count")
    return {n: sum(float(v) for v in re.findall(rf"^{n}{{[^}}]*}} (\S+)$", text, re.M)) for n in names}


def load(model: str, frames: list[np.ndarray], concurrency: int, requests: int) -> dict:
    """`requests` single-frame requests spread over `concurrency` clients (threads, one Segmenter each)."""
    latencies: list[float] = []
    lock = threading.Lock()

    def client(count: int) -> None:
        with Segmenter(model) as seg:
            seg(frames[0])  # connect and warm up outside the timing
            for i in range(count):
                t = time.perf_counter()
                seg(frames[i % len(frames)])
                with lock:
                    latencies.append((time.perf_counter() - t) * 1000)

    per = [requests // concurrency + (i < requests % concurrency) for i in range(concurrency)]
    threads = [threading.Thread(target=client, args=(n,)) for n in per]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    a = np.asarray(latencies)
    return {
        "concurrency": concurrency,
        "requests": len(a),
        "requests_per_s": round(len(a) / wall, 2),
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p95_ms": round(float(np.percentile(a, 95)), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path)
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--queue-delay-us", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (240, 320, 3), dtype=np.uint8) for _ in range(8)]
    with tempfile.TemporaryDirectory() as tmp:
        proc, ports = start_server(args.model, args.max_batch, args.queue_delay_us, Path(tmp) / "serve.out")
        url = f"triton://127.0.0.1:{ports[0]}/disseg"
        rows = []
        try:
            for concurrency in (1, 4, 16):
                local = load(str(args.model), frames, concurrency, args.requests)
                before = metrics(ports[2])
                served = load(url, frames, concurrency, args.requests)
                after = metrics(ports[2])
                executions = after["nv_inference_exec_count"] - before["nv_inference_exec_count"]
                inferences = after["nv_inference_count"] - before["nv_inference_count"]
                served["mean_batch_formed"] = round(inferences / max(executions, 1), 2)
                served["executions"] = int(executions)
                rows.append(
                    {
                        "concurrency": concurrency,
                        "local": local,
                        "served": served,
                        "served_rps_ratio": round(served["requests_per_s"] / local["requests_per_s"], 3),
                        "served_p50_ratio": round(served["p50_ms"] / local["p50_ms"], 3),
                    }
                )
                print(json.dumps(rows[-1]), flush=True)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
    report = {
        "model": str(args.model),
        "max_batch": args.max_batch,
        "queue_delay_us": args.queue_delay_us,
        "frames": "240x320 uint8, resized to the model by each side",
        "local": "the Segmenter on this machine, one per client thread (ONNX Runtime CPU)",
        "served": "dis-serve on 127.0.0.1 (Triton 2.51 via nvidia-pytriton), HTTP clients, one per thread",
        "rows": rows,
        "host_cpu": machine_facts(),
    }
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
