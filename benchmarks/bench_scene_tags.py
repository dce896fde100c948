"""What the scene_tags input costs: the --scene-tags export (energy+mask, energy, mask) against the plain export at
the same number of refinement steps, ONNX Runtime CPU, batch 1, all variants timed in the same process in
interleaved rounds (this machine is shared and noisy: ratios, not absolute times, are the figure).

    python benchmarks/bench_scene_tags.py [--checkpoint runs/paper/seed0/s2_t10/last.pt] \
        [--json benchmarks/results/scene_tags_latency.json]

Without a checkpoint the model is DIS with random weights on the synthetic classes (the cost does not depend on
the weights); --size sets its input side.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from disseg.export.onnx_export import export_graph
from disseg.runtime.cli_util import write_json  # atomic
from disseg.runtime.contract import INPUT, SCENE_TAG_MODES, SCENE_TAGS
from disseg.runtime.cpu import machine_facts

T = (0, 1, 3, 5)
VARIANTS = ("", *SCENE_TAG_MODES)  # "" = the plain export


def load(checkpoint: Path | None, size: int):
    if checkpoint is not None:
        from disseg.train.checkpoint import model_from_checkpoint

        net, _ = model_from_checkpoint(checkpoint)
        return net, net.cfg.size
    from disseg.train.config import DISConfig
    from disseg.train.model import DIS
    from disseg.train.synth import SYNTH_CLASSES

    torch.manual_seed(0)
    return DIS(DISConfig(class_names=SYNTH_CLASSES, stages=2)).eval(), size


def sessions(net, t: int, size: int, threads: int) -> dict[str, ort.InferenceSession]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.intra_op_num_threads = threads
    out = {}
    for variant in VARIANTS:
        if variant == "energy" and t == 0:
            continue  # no step: dis-export refuses it
        proto = export_graph(
            net, t, height=size, width=size, batch=1, outputs=("labels",), fp16=False, scene_tags=variant
        )
        out[variant] = ort.InferenceSession(proto.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return out


def time_round(sess: ort.InferenceSession, feed: dict, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        sess.run(None, feed)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def measure(net, size: int, *, rounds: int, runs: int, threads: int) -> list[dict]:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (1, size, size, 3), dtype=np.uint8)
    tags = (rng.random((1, net.cfg.num_classes)) < 0.3).astype(np.float32)
    tags[0, 0] = 1
    rows = []
    for t in T:
        by_variant = sessions(net, t, size, threads)
        feeds = {v: {INPUT: image, **({SCENE_TAGS: tags} if v else {})} for v in by_variant}
        for v, sess in by_variant.items():  # warm-up
            time_round(sess, feeds[v], 3)
        samples: dict[str, list[float]] = {v: [] for v in by_variant}
        for _ in range(rounds):  # interleaved: every variant sees the same machine load
            for v, sess in by_variant.items():
                samples[v].append(time_round(sess, feeds[v], runs))
        plain = statistics.median(samples[""])
        for v, values in samples.items():
            ms = statistics.median(values)
            rows.append(
                {"t": t, "variant": v or "plain", "median_ms": round(ms, 3), "ratio_to_plain": round(ms / plain, 3)}
            )
            print(f"t={t} {v or 'plain':12s} {ms:8.3f} ms  x{ms / plain:.3f}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", type=Path)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    logging.disable(logging.WARNING)
    net, size = load(args.checkpoint, args.size)
    rows = measure(net, size, rounds=args.rounds, runs=args.runs, threads=args.threads)
    report = {
        "machine": machine_facts(),
        "model": str(args.checkpoint) if args.checkpoint else "random DIS, 2 stages, synthetic classes",
        "classes": net.cfg.num_classes,
        "input": f"{size}x{size}",
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "rounds": args.rounds,
        "runs_per_round": args.runs,
        "rows": rows,
    }
    if args.json:
        write_json(args.json, report)


if __name__ == "__main__":
    main()
