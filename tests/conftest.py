"""Shared fixtures: a tiny synthetic data set, a tiny trained checkpoint and its ONNX export, all built
here (nothing is downloaded). Without torch (the runtime-only CI environment) the ONNX model comes from
$DISSEG_TEST_MODEL, which .ci/run exports beforehand with the full environment."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HAS_TORCH = importlib.util.find_spec("torch") is not None
SECRET = "S3cretPass"  # a camera password that must never appear in any output
BIN = Path(sys.executable).parent


STATS_KEYS = Path(__file__).with_name("stats_keys.json")


def assert_stats_keys(stats: dict) -> None:
    """The stats file of dis-run and dis_run_cpp alike: exactly tests/stats_keys.json's keys, so the two cannot
    drift."""
    spec = json.loads(STATS_KEYS.read_text())
    keys = sorted(k for k in stats if k not in spec["optional_keys"])
    assert keys == sorted(spec["keys"]), set(keys) ^ set(spec["keys"])
    assert sorted(stats["latency_ms"]) == sorted(spec["latency_ms"])
    assert stats["streams"] and all(sorted(s) == sorted(spec["stream_keys"]) for s in stats["streams"])
    assert sum(s["frames"] for s in stats["streams"]) == stats["frames"]
    assert all(int(size) > 0 and n > 0 for size, n in stats["batches"].items())
    for figures in (*stats["latency_ms"].values(), stats["frame_age_ms"], stats["first_1000_total_ms"]):
        assert sorted(figures) == sorted(spec["percentiles"])


def run_cmd(*args: str, check: bool = False, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run one of our console scripts as a real subprocess."""
    exe = BIN / args[0]
    proc = subprocess.run([str(exe), *args[1:]], capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def wait_for(condition, *, proc: subprocess.Popen | None = None, timeout: float = 300.0, what: str = "") -> None:
    """Readiness, not a fixed sleep: poll `condition` until it holds; fail if `proc` ends first or time runs out."""
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def interrupt_run(
    exe: str | Path, model: Path, video: Path, out: Path, stats: Path, *, sig: int | None = None
) -> tuple[int, str, dict, int, int]:
    """Run a dis-run-like command on `video` looped forever into a video, masks and stats; once its first mask is
    written (it is running, its handlers installed), send `sig` (SIGINT by default). Return its exit status,
    stderr, the stats it wrote, how many frames the output video holds and how many masks were written."""
    import signal

    import cv2

    masks = out.parent / f"{out.stem}-masks"
    args = [str(exe), str(model), "--video", str(video), "--loop", "100000", "--no-display"]
    args += ["--output", str(out), "--stats", str(stats), "--masks", str(masks)]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: masks.is_dir() and any(masks.glob("*.png")), proc=proc, what="the first mask")
    proc.send_signal(signal.SIGINT if sig is None else sig)
    _, err = proc.communicate(timeout=120)
    summary = json.loads(stats.read_text()) if stats.is_file() else {}
    cap = cv2.VideoCapture(str(out))
    written = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else -1
    return proc.returncode, err, summary, written, len(list(masks.glob("*.png")))


@pytest.fixture()
def small_disk(tmp_path):
    """mount(size) -> a folder on a tmpfs of that size (a disk that fills up), or read-only with ro=True. Needs root
    and a kernel that lets this process mount; skips with the reason otherwise. Unmounted afterwards."""
    mounted = []

    def mount(size: str = "256k", *, ro: bool = False, name: str | None = None) -> Path:
        if os.geteuid() != 0 or shutil.which("mount") is None:
            pytest.skip("needs root to mount a small tmpfs (a full or read-only disk)")
        folder = tmp_path / (name or f"disk{len(mounted)}")
        folder.mkdir()
        options = f"size={size}" + (",ro" if ro else "")
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield mount
    for folder in mounted:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def one_line(proc, status: int, *words: str) -> str:
    """The command ended with `status` and exactly one stderr line holding `words` (beside info lines that the
    run printed before it failed, which start with the model's name or 'no display'): that line."""
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith(("error:", "failed:"))]
    assert proc.returncode == status, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


@pytest.fixture(scope="session", autouse=True)
def log_dir(tmp_path_factory) -> Path:
    """Our commands' third-party log files go here during the tests, not into the user's cache."""
    folder = tmp_path_factory.mktemp("logs")
    os.environ["DISSEG_LOG_DIR"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    pytest.importorskip("torch")
    from disseg.train.synth import write_dataset

    root = tmp_path_factory.mktemp("data") / "synth"
    write_dataset(root, num_train=16, num_val=8, num_weak=16, size=64, seed=3)
    return root


@pytest.fixture(scope="session")
def tiny_run(tiny_data, tmp_path_factory) -> Path:
    """A stage-1 run (2 epochs, resnet18 cut after stage 2, 64 px)."""
    out = tmp_path_factory.mktemp("runs") / "s1"
    run_cmd(
        "dis-train",
        "--data",
        str(tiny_data),
        "--out",
        str(out),
        "--stages",
        "2",
        "--size",
        "64",
        "--epochs",
        "2",
        "--batch",
        "4",
        "--optimizer",
        "adamw",
        "--step-size",
        "20",
        check=True,
    )
    return out


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, request) -> Path:
    """An exported model (3 refinement steps, labels + tags outputs)."""
    env_model = os.environ.get("DISSEG_TEST_MODEL")
    if env_model and Path(env_model).is_file():
        return Path(env_model)
    if not HAS_TORCH:
        pytest.skip("needs torch to export a model, or $DISSEG_TEST_MODEL")
    run = request.getfixturevalue("tiny_run")
    out = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    run_cmd("dis-export", str(run / "best.pt"), "--iters", "3", "--outputs", "labels,tags", "-o", str(out), check=True)
    return out


@pytest.fixture(scope="session")
def scene_tags_model(tiny_onnx, tmp_path_factory, request) -> Path:
    """tiny_onnx's checkpoint exported with --scene-tags (energy+mask, dynamic batch): $DISSEG_TEST_MODEL's sibling
    from tests/make_test_model.py, or exported here."""
    from tests.make_test_model import scene_tags_model as sibling

    if sibling(tiny_onnx).is_file():
        return sibling(tiny_onnx)
    if not HAS_TORCH:
        pytest.skip(f"needs torch to export a model, or {sibling(tiny_onnx)} (tests/make_test_model.py)")
    run = request.getfixturevalue("tiny_run")
    out = tmp_path_factory.mktemp("onnx") / "tiny.scene-tags.onnx"
    flags = ("--iters", "3", "--outputs", "labels,tags", "--scene-tags", "--dynamic-batch")
    run_cmd("dis-export", str(run / "best.pt"), *flags, "-o", str(out), check=True)
    return out


@pytest.fixture()
def model_copy(tiny_onnx, tmp_path) -> Path:
    dst = tmp_path / "model.onnx"
    shutil.copy(tiny_onnx, dst)
    return dst


def pytest_runtest_setup(item):
    """`gpu` tests need a CUDA GPU, not only an importable TensorRT (TensorRT for RTX imports on any CPU)."""
    if item.get_closest_marker("gpu"):
        from disseg.runtime.engine_cache import cuda_device_count

        if cuda_device_count() == 0:
            pytest.skip("needs a CUDA GPU (none visible)")


class _Once(SimpleHTTPRequestHandler):
    """Serves each file once, then 404: a camera that drops and does not come back."""

    served: set = set()

    def do_GET(self):
        if self.path in self.served:
            self.send_error(404)
            return
        self.served.add(self.path)
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture()
def http_stream(tmp_path):
    """http://admin:SECRET@127.0.0.1:PORT/clip.avi: 10 MJPEG frames, served once (a stream that drops for good)."""
    import cv2
    import numpy as np

    folder = tmp_path / "served"
    folder.mkdir()
    writer = cv2.VideoWriter(str(folder / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 64))
    for i in range(10):
        writer.write(np.full((64, 64, 3), 20 * i, np.uint8))
    writer.release()
    _Once.served = set()
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Once, directory=str(folder)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://admin:{SECRET}@127.0.0.1:{server.server_address[1]}/clip.avi"
    server.shutdown()


def closed_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def family_models(tmp_path_factory, tiny_data) -> dict:
    """The families of tests/foreign_models.py (segmentation-models-pytorch, transformers' SegFormer) with tiny_data's
    classes: name -> (the library's module, its ONNX). Skips without those libraries, unless
    $DISSEG_REQUIRE_FAMILIES=1."""
    for module in ("torch", "segmentation_models_pytorch", "transformers"):
        if os.environ.get("DISSEG_REQUIRE_FAMILIES") == "1":
            __import__(module)
        else:
            pytest.importorskip(module)
    from disseg.runtime.dataset import list_samples
    from tests.foreign_models import build_families

    names, _ = list_samples(tiny_data, "val")
    return build_families(tmp_path_factory.mktemp("families"), list(names))


@pytest.fixture(scope="session")
def ultralytics_model(tmp_path_factory, tiny_data):
    """Ultralytics' semantic segmentation model and its own ONNX export (tests/foreign_models.py); skips without
    ultralytics (AGPL-3.0, test-only), unless $DISSEG_REQUIRE_FAMILIES=1."""
    if os.environ.get("DISSEG_REQUIRE_FAMILIES") == "1":
        import ultralytics  # noqa: F401
    else:
        pytest.importorskip("ultralytics")
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never pip-install anything from inside a test
    from disseg.runtime.dataset import list_samples
    from tests.foreign_models import ultralytics_sem

    names, _ = list_samples(tiny_data, "val")
    return ultralytics_sem(tmp_path_factory.mktemp("ultralytics"), list(names))


@pytest.fixture(scope="session")
def foreign_models(tmp_path_factory, tiny_data) -> dict[str, Path]:
    """Foreign ONNX segmentation networks (tests/foreign_models.py); the small ones have tiny_data's classes."""
    pytest.importorskip("torch")
    from disseg.runtime.dataset import list_samples
    from tests.foreign_models import build_all

    folder = tmp_path_factory.mktemp("foreign")
    names, _ = list_samples(tiny_data, "val")
    (folder / "classes.txt").write_text("\n".join(names) + "\n")
    models = build_all(folder, len(names))
    models["classes"] = folder / "classes.txt"
    return models


@pytest.fixture(scope="session")
def cpp_build() -> Path:
    """The C++ runtime under test: a build of runtime/cpp named by $DISSEG_CPP_BUILD (.ci/run builds one). Without it
    the tests that need it skip, unless $DISSEG_REQUIRE_CPP=1 (CI), where a missing build fails them."""
    folder = os.environ.get("DISSEG_CPP_BUILD")
    missing = None
    if not folder:
        missing = "DISSEG_CPP_BUILD is not set: build runtime/cpp and name the build folder (docs/cpp.md, first lines)"
    elif not (Path(folder) / "dis_run_cpp").is_file() or not list(Path(folder).glob("libdisseg.so*")):
        missing = f"{folder} has no dis_run_cpp / libdisseg.so"
    if missing:
        if os.environ.get("DISSEG_REQUIRE_CPP") == "1":
            pytest.fail(missing)
        pytest.skip(missing)
    return Path(folder)
