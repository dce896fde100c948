"""What a Triton started by dis-serve leaves on the machine, and its removal. tritonserver's Python backend starts a
stub process per model instance and unpacks into TMPDIR (`folder*`, `python_env_*`); pytriton's proxy keeps shared
memory in `/dev/shm/pytriton<PID>-*`. A stop with a client mid-request, or a dis-serve killed outright, left all of
those behind (an orphan stub under PID 1, 4 MB of shared memory). So dis-serve

- runs Triton with TMPDIR inside its own workspace (`/tmp/disseg-triton-*`, removed on the way out); the Python
  backend unpacks into /tmp whatever TMPDIR says: those folders are found through the command lines of its stubs;
- marks the workspace with its PID (`owner.pid`);
- on the way out, stops every process whose command line names the workspace (the stub, tritonserver) and removes
  its shared memory;
- on start, does the same for every marked workspace whose owner is no longer running (a predecessor killed with
  SIGKILL), and only for those: another dis-serve's workspace is never touched.

Linux only (/proc); elsewhere these are no-ops."""

from __future__ import annotations

import glob
import logging
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

log = logging.getLogger("disseg.serve")

WORKSPACE_PREFIX = "disseg-triton-"  # the workspace folders, in the system's temp folder
MARKER = "owner.pid"


def mark(workspace: Path) -> Path:
    """Write the owner marker; return the TMPDIR Triton gets (made inside the workspace)."""
    (workspace / MARKER).write_text(str(os.getpid()))
    tmp = workspace / "tmp"
    tmp.mkdir(exist_ok=True)
    return tmp


UNPACKED = ("folder", "python_env_")  # what Triton's Python backend unpacks into /tmp (a fixed path, not TMPDIR)


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


UNPACKED_LIST = "unpacked.txt"


def unpacked_now() -> set[Path]:
    """Triton's Python-backend folders in the temp folder right now."""
    tmp = Path(tempfile.gettempdir())
    return {p for prefix in UNPACKED for p in tmp.glob(f"{prefix}*")}


def record_unpacked(workspace: Path, before: set[Path]) -> None:
    """Write down the Python-backend folders that appeared since `before` (this Triton's: it started in between), so
    that a stop, or the next dis-serve after a SIGKILL, removes them."""
    made = sorted(unpacked_now() - before)
    (workspace / UNPACKED_LIST).write_text("".join(f"{p}\n" for p in made))


def _recorded(workspace: Path) -> set[Path]:
    try:
        lines = (workspace / UNPACKED_LIST).read_text().splitlines()
    except OSError:
        return set()
    tmp = Path(tempfile.gettempdir())
    return {Path(x) for x in lines if Path(x).parent == tmp and Path(x).name.startswith(UNPACKED)}


def _unpacked(cmdlines: list[str]) -> set[Path]:
    """The /tmp/folder* and /tmp/python_env_* folders the given command lines name (the stub runs from them)."""
    tmp = Path(tempfile.gettempdir())
    found = set()
    for word in " ".join(cmdlines).split():
        path = Path(word)
        if path.is_absolute() and len(path.parts) > 2 and Path(*path.parts[:2]) == tmp:
            top = tmp / path.parts[2]
            if top.name.startswith(UNPACKED):
                found.add(top)
    return found


def _processes_naming(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, and not ours to clean
        return True
    return True


def clean(workspace: Path, owner: int, *, grace_s: float = 5.0) -> int:
    """Stop the processes that name `workspace` (SIGTERM, then SIGKILL after `grace_s`) and remove `owner`'s shared
    memory. Returns how many processes were stopped."""
    pids = _processes_naming(str(workspace))
    unpacked = _unpacked([_cmdline(pid) for pid in pids]) | _recorded(workspace)
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:
        _signal(pid, signal.SIGKILL)
    for folder in unpacked:
        shutil.rmtree(folder, ignore_errors=True)
    for pid in (owner, *pids):  # named after the process that made them ("pytrtion": Triton's own spelling)
        for segment in glob.glob(f"/dev/shm/pytrtion{pid}-*") + glob.glob(f"/dev/shm/pytriton{pid}-*"):
            try:
                os.unlink(segment)
            except OSError:
                pass
    return len(pids)


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def clean_predecessors() -> int:
    """Remove what dis-serve processes that were killed outright left: their workspaces (marked with an owner that is
    no longer running), the processes naming them and their shared memory. Returns how many were cleaned."""
    cleaned = 0
    for folder in Path(tempfile.gettempdir()).glob(f"{WORKSPACE_PREFIX}*"):
        try:
            owner = int((folder / MARKER).read_text().strip())
        except (OSError, ValueError):
            continue  # not marked: not ours to judge
        if _alive(owner):
            continue
        stopped = clean(folder, owner)
        shutil.rmtree(folder, ignore_errors=True)
        log.info("removed what a stopped dis-serve (pid %d) left: %s, %d process(es)", owner, folder, stopped)
        cleaned += 1
    return cleaned
