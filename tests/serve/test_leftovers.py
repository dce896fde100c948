"""dis-serve leaves nothing behind, whatever stops it while a client is mid-request: no process (tritonserver, the
Python backend's stub), no folder in the temp folder (its workspace, the backend's folder*/python_env_*), no shared
memory. SIGTERM and SIGINT clean up on the way out; after SIGKILL the next dis-serve removes what the killed one left
(only that: a running one's is never touched). A second dis-serve on the ports of a running one is one line, exit 2,
and the first serves on."""

from __future__ import annotations

import glob
import signal
import tempfile
import threading
from pathlib import Path

import pytest

from disseg.runtime.segmenter import Segmenter  # noqa: E402 (after the skips of test_triton)
from tests.conftest import one_line, run_cmd, wait_for
from tests.serve.test_triton import FRAMES, Server


def _ours() -> set[str]:
    """What a Triton started by dis-serve can leave: workspaces, the Python backend's folders, shared memory."""
    tmp = tempfile.gettempdir()
    found = {*glob.glob(f"{tmp}/disseg-triton-*"), *glob.glob(f"{tmp}/folder*"), *glob.glob(f"{tmp}/python_env_*")}
    return found | set(glob.glob("/dev/shm/pytrtion*")) | set(glob.glob("/dev/shm/pytriton*"))


def _naming(text: str) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class Busy:
    """A client sending batches to `server` until stopped (so a stop lands mid-request)."""

    def __init__(self, server: Server) -> None:
        self.done = threading.Event()
        self.answered = 0
        self.thread = threading.Thread(target=self._run, args=(server.url(),), daemon=True)
        self.thread.start()
        wait_for(lambda: self.answered >= 2, proc=server.proc, what="answers to the client")

    def _run(self, url: str) -> None:
        try:
            with Segmenter(url) as remote:
                while not self.done.is_set():
                    remote.segment_batch(FRAMES)
                    self.answered += 1
        except Exception:  # noqa: BLE001 (the server goes away under it: that is the point)
            pass

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=60)


def _workspace(before: set[str]) -> str:
    made = [p for p in _ours() - before if "disseg-triton-" in p]
    assert len(made) == 1, made
    return made[0]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_with_a_client_mid_request_leaves_nothing(tiny_onnx, tmp_path, signum):
    before = _ours()
    s = Server(tiny_onnx, tmp_path)
    workspace = _workspace(before)
    client = Busy(s)
    assert s.stop(signum) == 128 + signum, s.err.read_text()[-2000:]
    client.stop()
    wait_for(lambda: not _naming(workspace), timeout=60, what="Triton's processes to end")
    assert _ours() - before == set()


def test_after_sigkill_the_next_dis_serve_removes_what_was_left(tiny_onnx, tmp_path):
    before = _ours()
    first = Server(tiny_onnx, tmp_path)
    workspace = _workspace(before)
    client = Busy(first)
    first.proc.send_signal(signal.SIGKILL)  # dis-serve alone, as the OOM killer would
    first.proc.wait(timeout=60)
    client.stop()
    assert Path(workspace).exists()  # left behind: nobody could clean up
    second = Server(tiny_onnx, tmp_path)
    try:
        assert not Path(workspace).exists() and not _naming(workspace)
        assert len([p for p in _ours() - before if "disseg-triton-" in p]) == 1  # the second's own, untouched
    finally:
        assert second.stop() == 143
    wait_for(lambda: _ours() - before == set(), timeout=60, what="the second dis-serve's leftovers to go")


def test_a_second_dis_serve_on_the_same_ports_is_one_line_and_the_first_serves_on(tiny_onnx, tmp_path):
    first = Server(tiny_onnx, tmp_path)
    try:
        proc = run_cmd("dis-serve", str(tiny_onnx), "--http-port", str(first.http), "--grpc-port", str(first.grpc),
                       "--metrics-port", str(first.metrics), timeout=120)  # fmt: skip
        one_line(proc, 2, "--http-port")
        with Segmenter(first.url()) as remote:
            assert remote(FRAMES[0]).labels.shape == FRAMES[0].shape[:2]
    finally:
        assert first.stop() == 143
