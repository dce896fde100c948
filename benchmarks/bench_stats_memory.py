"""Resident memory of dis-run's per-frame statistics over a long run (no model: the Stats object alone).

python benchmarks/bench_stats_memory.py --frames 40000 --json benchmarks/results/stats_memory.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.cpu import machine_facts
from disseg.runtime.pipeline import WINDOW, Stats, _rss_mb
from disseg.runtime.segmenter import Result
from disseg.runtime.sources import Frame


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=40_000)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    stats = Stats(tuple(f"c{i}" for i in range(8)))
    image, labels = np.zeros((8, 8, 3), np.uint8), np.zeros((320, 320), np.uint8)
    result = Result(labels, timings={"preprocess_ms": 1.0, "infer_ms": 2.0, "postprocess_ms": 0.5})
    rss = {}
    for i in range(args.frames + 1):
        if i % 5000 == 0:
            rss[i] = round(_rss_mb(), 2)
        stats.add(Frame(i, image, "x", time.perf_counter()), result, time.perf_counter())
    out = {"window_frames": WINDOW, "rss_mb_by_frame": rss}
    print(json.dumps(out))
    if args.json:
        write_json(args.json, {"host_cpu": machine_facts(), **out})


if __name__ == "__main__":
    main()
