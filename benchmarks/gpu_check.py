"""One script for a machine with a CUDA GPU: everything this project cannot check on its CPUs, into one JSON.

    python benchmarks/gpu_check.py --json $OUT/gpu_check.json            # on the GPU machine, < 8 min on an H100
    python benchmarks/gpu_check.py --smoke --device cpu --json out.json  # a tiny run anywhere (CI runs it)

1. CUDA training with bf16 autocast (dis-train --device cuda, a few hundred steps), killed with SIGKILL
   after its second epoch and resumed: final weights against an uninterrupted run, and steps/s.
2. FP16 numerics: the unrolled module on the trained weights under FP16 autocast against FP32: label
   agreement, max score error, NaN/Inf.
3. The product on this machine, as a user types it, on the trained checkpoint: dis-doctor --json, dis-export
   (t = 3, FP32 and FP16; parity gate on), dis-eval of the checkpoint in PyTorch and of each export through the
   runtime (the provider it picks), dis-run over the validation images (stats: provider, FPS) and dis-bench, and
   1 against 4 streams through one dis-run on a dynamic-batch export (aggregate FPS, batch sizes run).
4. Latency, 512x512 (batch 1 and 8, t = 0 and 3, FP32 and FP16, resnet18 and resnet101, random weights):
   PyTorch eager, PyTorch CUDA-graph replay, ONNX Runtime's CUDA provider with I/O binding (labels against
   its CPU provider); TensorRT where it is installed. Rows start while --budget-s lasts, batch 1 first; the
   rest are listed as skipped.
Each part runs on its own; one that cannot run records why; the JSON is rewritten after each part, so a run cut
short keeps what it measured. Works without installing disseg (it links the repository's folders into a
temporary `disseg` package). Missing packages travel as wheels (benchmarks/gpu_kit.sh): on the lent GPU
machines, onnxconverter-common (FP16 export) and onnxruntime-gpu 1.31.1 (CUDA provider).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def bootstrap() -> str:
    """Make `import disseg.*` work from this checkout; returns the folder to put on PYTHONPATH."""
    try:
        import disseg.runtime  # noqa: F401

        return ""
    except ImportError:
        pass
    folder = Path(tempfile.mkdtemp(prefix="disseg-pkg-"))
    (folder / "disseg").mkdir()
    for name in ("train", "export", "runtime", "calibration"):
        (folder / "disseg" / name).symlink_to(ROOT / name)
    sys.path.insert(0, str(folder))
    return str(folder)


PKG_PATH = bootstrap()

import numpy as np  # noqa: E402
import torch  # noqa: E402

COMMANDS = {
    "dis-data": ("disseg.train.cli", "data_cli"),
    "dis-train": ("disseg.train.cli", "train_cli"),
    "dis-eval": ("disseg.train.cli", "eval_cli"),
    "dis-export": ("disseg.export.cli", "export_cli"),
    "dis-run": ("disseg.runtime.cli", "run_cli"),
    "dis-bench": ("disseg.runtime.cli", "bench_cli"),
    "dis-doctor": ("disseg.runtime.doctor", "doctor_cli"),
}


def command(name: str, *args: str) -> list[str]:
    """One of our commands as a subprocess, installed or not."""
    module, func = COMMANDS[name]
    return [sys.executable, "-c", f"import sys; sys.argv[0] = {name!r}; from {module} import {func}; {func}()", *args]


def nvidia_library_path() -> str:
    """The CUDA and cuDNN libraries PyTorch's wheels brought (site-packages/nvidia/*/lib): our torch-free commands'
    ONNX Runtime needs them on the loader's path, and the lent machines have no system CUDA there."""
    nvidia = Path(torch.__file__).resolve().parent.parent / "nvidia"
    found = [str(p) for p in sorted(nvidia.glob("*/lib")) if p.is_dir()]
    return os.pathsep.join(p for p in (*found, os.environ.get("LD_LIBRARY_PATH", "")) if p)


def env() -> dict:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (PKG_PATH, os.environ.get("PYTHONPATH", "")) if p),
        "LD_LIBRARY_PATH": nvidia_library_path(),
    }


def ours(name: str, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run one of our commands; a failure raises with its last words."""
    proc = subprocess.run(command(name, *args), env=env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{name} exited {proc.returncode}: {(proc.stderr or proc.stdout)[-300:]}")
    return proc


def part(name: str, func, results: dict, path: Path) -> None:
    """Run one part into `results` and rewrite the JSON file, so a run cut short keeps what it measured."""
    start = time.perf_counter()
    try:
        results[name] = func()
    except Exception as err:  # a part that cannot run is a result
        results[name] = {"error": f"{type(err).__name__}: {str(err)[:400]}"}
    results[name + "_seconds"] = round(time.perf_counter() - start, 1)
    print(f"{name}: {json.dumps(results[name])[:600]}", flush=True)
    write(path, results)


def write(path: Path, results: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(results, indent=2))
    partial.replace(path)


# 1. training ------------------------------------------------------------------------------------------


def train_args(data: Path, out: Path, cfg: argparse.Namespace) -> list[str]:
    return [
        "--data",
        str(data),
        "--out",
        str(out),
        "--device",
        cfg.device,
        "--size",
        str(cfg.train_size),
        "--epochs",
        str(cfg.epochs),
        "--steps-per-epoch",
        str(cfg.steps),
        "--batch",
        str(cfg.batch),
        "--stages",
        "2",
        "--optimizer",
        "adamw",
        "--seed",
        "1",
    ]


def killed_and_resumed(data: Path, out: Path, cfg: argparse.Namespace) -> float:
    """Run, SIGKILL once epoch 2's last.pt exists, resume; returns the seconds of the killed run."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        command("dis-train", *train_args(data, out, cfg)),
        env=env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = out / "metrics.json"
    while proc.poll() is None:
        if metrics.is_file():
            try:
                if len(json.loads(metrics.read_text()).get("epochs", [])) >= 2:
                    proc.send_signal(signal.SIGKILL)
                    break
            except (json.JSONDecodeError, AttributeError):
                pass
        time.sleep(0.05)
    proc.wait()
    seconds = time.perf_counter() - start
    ours("dis-train", *train_args(data, out, cfg), "--resume", timeout=900)
    return seconds


def training(work: Path, cfg: argparse.Namespace) -> dict:
    data = work / "data"
    size = str(cfg.train_size)
    ours(
        "dis-data",
        "synth",
        str(data),
        "--num-train",
        str(cfg.num_train),
        "--num-val",
        "16",
        "--num-weak",
        "0",
        "--size",
        size,
    )
    start = time.perf_counter()
    ours("dis-train", *train_args(data, work / "full", cfg), timeout=900)
    full_seconds = time.perf_counter() - start
    killed_seconds = killed_and_resumed(data, work / "resumed", cfg)
    a = torch.load(work / "full" / "last.pt", map_location="cpu", weights_only=True)["model"]
    b = torch.load(work / "resumed" / "last.pt", map_location="cpu", weights_only=True)["model"]
    diff = max(float((a[k].double() - b[k].double()).abs().max()) if a[k].numel() else 0.0 for k in a)
    history = json.loads((work / "full" / "metrics.json").read_text())
    steps = cfg.epochs * cfg.steps
    return {
        "device": cfg.device,
        "autocast": "bf16" if cfg.device == "cuda" else "none (CPU)",
        "steps": steps,
        "batch": cfg.batch,
        "size": cfg.train_size,
        "seconds_uninterrupted": round(full_seconds, 1),
        "steps_per_s_including_eval": round(steps / full_seconds, 2),
        "killed_after_s": round(killed_seconds, 1),
        "resumed_equal_bitwise": diff == 0.0,
        "resumed_max_abs_weight_diff": diff,
        "best_val_miou": history.get("best_val_miou"),
    }


# 2. FP16 numerics -------------------------------------------------------------------------------------


def fp16_numerics(work: Path, cfg: argparse.Namespace) -> dict:
    from disseg.export.unroll import UnrolledDIS
    from disseg.runtime.dataset import list_samples
    from disseg.runtime.image import read_image, resize_to
    from disseg.train.checkpoint import model_from_checkpoint

    net, _ = model_from_checkpoint(work / "full" / "best.pt")
    size = cfg.latency_size
    images = np.stack([resize_to(read_image(s.image), size, size) for s in list_samples(work / "data", "val")[1][:8]])
    x = torch.from_numpy(images).to(cfg.device)
    low = torch.float16 if cfg.device == "cuda" else torch.bfloat16
    rows = []
    for t in (0, 3):
        module = UnrolledDIS(net, t, outputs=("labels", "scores")).to(cfg.device).eval()
        with torch.no_grad():
            labels32, scores32 = module(x)
            with torch.autocast(cfg.device, dtype=low):
                labels16, scores16 = module(x)
        rows.append(
            {
                "iters": t,
                "dtype": str(low).split(".")[-1],
                "label_agreement": round(float((labels32 == labels16).float().mean()) * 100, 4),
                "max_abs_score_error": float((scores32.float() - scores16.float()).abs().max()),
                "finite": bool(torch.isfinite(scores16.float()).all()),
            }
        )
    return {"size": size, "images": len(images), "rows": rows}


# 3. the product's commands ----------------------------------------------------------------------------


def doctor() -> dict:
    proc = subprocess.run(command("dis-doctor", "--json"), env=env(), capture_output=True, text=True, timeout=300)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        report = {"unreadable": (proc.stdout + proc.stderr)[-400:]}
    return {"exit": proc.returncode, "report": report}


def miou(model: Path, data: Path, out: Path, *args: str) -> float:
    ours("dis-eval", str(model), "--data", str(data), "--json", str(out), *args, timeout=600)
    return json.loads(out.read_text())["results"][0]["miou"]


def val_images(data: Path, folder: Path) -> Path:
    """The validation images alone, linked into one folder for dis-run --images."""
    from disseg.runtime.dataset import list_samples

    if not folder.is_dir():
        folder.mkdir()
        for sample in list_samples(data, "val")[1]:
            (folder / sample.image.name).symlink_to(sample.image)
    return folder


def exported(model: Path, data: Path, work: Path, cfg: argparse.Namespace) -> dict:
    """dis-eval, dis-run and dis-bench on one exported model, on the provider the runtime picks here."""
    images = val_images(data, work / "val_images")
    stats_path = work / f"{model.stem}.stats.json"
    run = ours(
        "dis-run", str(model), "--images", str(images), "--no-display", "--masks", str(work / f"{model.stem}_masks"),
        "--stats", str(stats_path), "--loop", str(cfg.loops),
    )  # fmt: skip
    stats = json.loads(stats_path.read_text())
    bench_path = work / f"{model.stem}.bench.json"
    ours("dis-bench", str(model), "--runs", str(cfg.runs), "--json", str(bench_path))
    bench = json.loads(bench_path.read_text())["results"][0]
    return {
        "miou": miou(model, data, work / f"{model.stem}.eval.json"),
        "run_backend": stats["backend"],
        "run_frames": stats["frames"],
        "run_fps": stats["fps"],
        "run_total_ms_p50": stats["latency_ms"]["total_ms"]["p50"],
        "run_said": [line for line in run.stderr.splitlines() if "provider" in line],
        "bench_providers": bench.get("providers"),
        "bench_p50_ms": bench["p50_ms"],
    }


def streams(checkpoint: Path, data: Path, work: Path, cfg: argparse.Namespace) -> dict:
    """Several streams through one dis-run on a dynamic-batch export: aggregate FPS of 1 and 4 streams of the
    validation images and the batch sizes that ran (benchmarks/bench_streams.py measures the CPU)."""
    model = work / "model_t3_dynamic.onnx"
    ours("dis-export", str(checkpoint), "--iters", "3", "--dynamic-batch", "-o", str(model), timeout=600)
    images = val_images(data, work / "val_images")
    rows: dict = {}
    for n in (1, 4):
        stats_path = work / f"streams{n}.stats.json"
        ours("dis-run", str(model), *["--source", str(images)] * n, "--loop", str(cfg.loops), "--no-display",
             "--stats", str(stats_path))  # fmt: skip
        stats = json.loads(stats_path.read_text())
        rows[f"streams_{n}"] = {"fps": stats["fps"], "batches": stats["batches"], "backend": stats["backend"]}
    rows["fps_4_over_1"] = round(rows["streams_4"]["fps"] / rows["streams_1"]["fps"], 3)
    return rows


def product(work: Path, cfg: argparse.Namespace) -> dict:
    data, checkpoint = work / "data", work / "full" / "best.pt"
    result = {"doctor": doctor()}
    result["pytorch_miou_t3"] = miou(checkpoint, data, work / "pt.eval.json", "--iters", "3", "--device", cfg.device)
    for precision in ("fp32", "fp16"):
        model = work / f"model_t3_{precision}.onnx"
        try:
            ours("dis-export", str(checkpoint), "--iters", "3", *(["--fp16"] if precision == "fp16" else []),
                 "-o", str(model), timeout=600)  # fmt: skip
            result[precision] = exported(model, data, work, cfg)
        except Exception as err:
            result[precision] = {"error": f"{type(err).__name__}: {str(err)[:400]}"}
    try:
        result["streams"] = streams(checkpoint, data, work, cfg)
    except Exception as err:
        result["streams"] = {"error": f"{type(err).__name__}: {str(err)[:400]}"}
    return result


# 4. latency -------------------------------------------------------------------------------------------


def timed(fn, runs: int, sync) -> float:
    for _ in range(3):
        fn()
    sync()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return round(1000 * float(np.median(times)), 3)


def torch_latency(module, x, cfg, low) -> dict:
    sync = torch.cuda.synchronize if cfg.device == "cuda" else (lambda: None)
    # CUDA graphs need autocast's weight-cast cache off (PyTorch's CUDA-graph notes)
    autocast = torch.autocast(cfg.device, dtype=low, enabled=low is not None, cache_enabled=False)
    with torch.no_grad():

        def eager():
            with autocast:
                return module(x)

        result = {"eager_ms": timed(eager, cfg.runs, sync)}
        if cfg.device == "cuda":
            try:
                result["cuda_graph_ms"] = timed(captured(eager).replay, cfg.runs, sync)
            except Exception as err:  # e.g. an op that syncs with the host cannot be captured
                result["cuda_graph_error"] = f"{type(err).__name__}: {str(err)[:200]}"
    return result


def captured(step) -> torch.cuda.CUDAGraph:
    """`step` captured into a CUDA graph after warm-up on a side stream (PyTorch's recipe)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        step()
    return graph


def ort_latency(net, t: int, batch: int, fp16: bool, x: np.ndarray, cfg, work: Path) -> dict:
    import onnxruntime as ort

    from disseg.export.onnx_export import export_graph

    provider, where = ("CUDAExecutionProvider", "cuda") if cfg.device == "cuda" else ("CPUExecutionProvider", "cpu")
    if provider not in ort.get_available_providers():
        return {"ort_cuda": f"not available (providers: {ort.get_available_providers()}); carry onnxruntime-gpu"}
    size = cfg.latency_size
    proto = export_graph(net.cpu(), t, height=size, width=size, batch=batch, outputs=("labels",), fp16=fp16)
    path = work / f"m_{t}_{batch}_{fp16}.onnx"
    path.write_bytes(proto.SerializeToString())
    cuda = ort.InferenceSession(str(path), providers=[provider])
    binding = cuda.io_binding()
    binding.bind_ortvalue_input("image", ort.OrtValue.ortvalue_from_numpy(x, where, 0))
    binding.bind_output("labels", where, 0)
    result = {
        "ort_provider": cuda.get_providers()[0],
        "ort_iobinding_ms": timed(lambda: cuda.run_with_iobinding(binding), cfg.runs, lambda: None),
    }
    if batch == 1:
        cpu = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        a, b = cuda.run(["labels"], {"image": x})[0], cpu.run(["labels"], {"image": x})[0]
        result["ort_vs_cpu_provider_label_agreement"] = round(float((a == b).mean()) * 100, 4)
    return result


def latency(work: Path, cfg: argparse.Namespace) -> list[dict]:
    from disseg.train.config import DISConfig
    from disseg.train.model import DIS

    rows = []
    classes = tuple(f"c{i}" for i in range(21))
    rng = np.random.default_rng(0)
    nets = {
        b: DIS(DISConfig(class_names=classes, backbone=b, stages=4, size=cfg.latency_size)).eval()
        for b in cfg.backbones
    }
    for batch in cfg.batches:  # batch 1 first: what a camera runs
        x = rng.integers(0, 256, (batch, cfg.latency_size, cfg.latency_size, 3), dtype=np.uint8)
        for backbone, net in nets.items():
            for t in (0, 3):
                for fp16 in (False, True):
                    row = {"backbone": backbone, "batch": batch, "iters": t, "precision": "fp16" if fp16 else "fp32"}
                    if time.perf_counter() > cfg.deadline:
                        rows.append({**row, "skipped": f"over --budget-s {cfg.budget_s:.0f}"})
                        continue
                    row.update(latency_row(net, t, batch, fp16, x, cfg, work))
                    rows.append(row)
                    print(row, flush=True)
    return rows


def latency_row(net, t: int, batch: int, fp16: bool, x: np.ndarray, cfg: argparse.Namespace, work: Path) -> dict:
    from disseg.export.unroll import UnrolledDIS

    module = UnrolledDIS(net, t).to(cfg.device).eval()
    low = (torch.float16 if cfg.device == "cuda" else torch.bfloat16) if fp16 else None
    row = torch_latency(module, torch.from_numpy(x).to(cfg.device), cfg, low)
    try:
        row.update(ort_latency(net, t, batch, fp16, x, cfg, work))
    except Exception as err:
        row["ort_error"] = f"{type(err).__name__}: {str(err)[:200]}"
    net.cpu()
    return row


def tensorrt_status() -> dict:
    for name in ("tensorrt", "tensorrt_rtx"):
        try:
            module = __import__(name)
            return {"installed": f"{name} {module.__version__}", "note": "engine timing not scripted yet"}
        except ImportError:
            continue
    return {
        "installed": None,
        "note": "no TensorRT here; TensorRT for RTX (the registries' TensorRT) builds for RTX GPUs (SM 7.5, 8.6, 8.9, "
        "12.x), not for Hopper",
    }


def machine(cfg: argparse.Namespace) -> dict:
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "device": cfg.device,
    }
    if cfg.device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            compute_capability=f"{props.major}.{props.minor}",
            cuda=torch.version.cuda,
            memory_gib=round(props.total_memory / 2**30, 1),
        )
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        info["onnxruntime"] = None
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, required=True)
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes: checks the script, measures nothing")
    ap.add_argument("--skip", default="", help="comma list of parts to skip: training,fp16,product,latency")
    ap.add_argument(
        "--budget-s", type=float, default=420, help="no latency row starts after this many seconds (inf: no limit)"
    )
    cfg = ap.parse_args()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA GPU visible to PyTorch; run with --device cpu --smoke to check the script")
    cfg.deadline = time.perf_counter() + cfg.budget_s
    big = not cfg.smoke
    cfg.num_train, cfg.train_size, cfg.epochs, cfg.steps, cfg.batch = (64, 256, 4, 75, 16) if big else (8, 64, 3, 2, 4)
    cfg.latency_size, cfg.runs, cfg.loops = (512, 30, 5) if big else (64, 3, 1)
    cfg.backbones, cfg.batches = (("resnet18", "resnet101"), (1, 8)) if big else (("resnet18",), (1,))
    skip = set(cfg.skip.split(","))
    results: dict = {"machine": machine(cfg), "smoke": cfg.smoke, "tensorrt": tensorrt_status()}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "training" not in skip:
            part("training", lambda: training(work, cfg), results, cfg.json)
            if "fp16" not in skip:
                part("fp16_numerics", lambda: fp16_numerics(work, cfg), results, cfg.json)
            if "product" not in skip:
                part("product", lambda: product(work, cfg), results, cfg.json)
        if "latency" not in skip:
            part("latency", lambda: latency(work, cfg), results, cfg.json)
    write(cfg.json, results)
    print(f"wrote {cfg.json}")


if __name__ == "__main__":
    main()
