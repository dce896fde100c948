"""Stopping on a signal: SIGINT (Ctrl-C), SIGTERM (systemd, docker stop, Kubernetes) and SIGHUP (a closed
terminal) all ask a command to stop cleanly, finalize what it wrote and exit with 128 + the signal number. A service
(dis-run) takes SIGHUP as `systemctl reload` instead: StopOnSignals(reload=...) calls its hook and goes on."""

from __future__ import annotations

import signal
import threading

from .errors import EXIT_SIGNAL_BASE

STOP_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)  # Windows has no SIGHUP


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; what was produced is flushed. A KeyboardInterrupt, so code that handles Ctrl-C
    handles every stop signal the same way."""

    def __init__(self, signum: int = signal.SIGINT) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)

    @property
    def exit_status(self) -> int:
        return EXIT_SIGNAL_BASE + self.signum


class _Handlers:
    """Installs `_handle` for the stop signals while inside (main thread only: elsewhere Python cannot take
    signals) and puts the previous handlers back on the way out."""

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        raise NotImplementedError

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for s, previous in self._previous.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


class RaiseOnSignals(_Handlers):
    """While inside, a stop signal raises Stopped where the main thread is (as Ctrl-C raises KeyboardInterrupt): for
    the one-shot commands (dis-export, dis-import, dis-calibrate, ...), whose atomic writes remove their temp files on
    any exception, so SIGTERM leaves no `.partial` file behind and exits 128 + N. A command that must finish a step
    first (dis-run, dis-train) installs StopOnSignals inside, which takes precedence until it exits."""

    def _handle(self, signum, frame) -> None:
        raise Stopped(signum)


class StopOnSignals(_Handlers):
    """While inside, a stop signal only sets `event` (and records the first signal in `signum`): the work checks
    the event at safe points, so no exception lands inside a queue operation or a half-written file. Installed
    only in the main thread (elsewhere Python cannot take signals); `raise_if_stopped()` after the work.

        with StopOnSignals() as stop:
            while not stop.event.is_set():
                ...
        stop.raise_if_stopped()
    """

    def __init__(self, event: threading.Event | None = None, *, reload=None) -> None:
        super().__init__()
        self.event = event if event is not None else threading.Event()
        self.signum: int | None = None
        self.reload = reload  # called (in the signal handler: keep it to setting a flag) on SIGHUP instead of a stop

    def _handle(self, signum, frame) -> None:
        if self.reload is not None and signum == getattr(signal, "SIGHUP", None):
            self.reload()
            return
        if self.signum is None:
            self.signum = signum
        self.event.set()

    def raise_if_stopped(self) -> None:
        if self.signum is not None:
            raise Stopped(self.signum)


# Threads left inside a library after a stop (a reader waiting on a server that never answers): the process then
# ends with os._exit once its outputs are finalized, as a library thread cannot be interrupted and must not be
# unwound by the interpreter's shutdown.
STUCK: list[threading.Thread] = []


def exit_now(status: int) -> None:
    """sys.exit(status), or os._exit(status) after flushing when a thread is still stuck in a library."""
    import logging
    import os
    import sys

    if not any(thread.is_alive() for thread in STUCK):
        sys.exit(status)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    logging.shutdown()
    os._exit(status)
