"""systemd's service notification (Type=notify): READY=1 once the first batch is segmented, WATCHDOG=1 while frames
flow, STOPPING=1 on the way out, sent to $NOTIFY_SOCKET. The protocol is one datagram of text to a Unix socket (an
abstract one when the path starts with '@'); these lines are all of it, so no package (sdnotify and friends are
unmaintained wrappers of the same few lines) is added to a Jetson install. Without $NOTIFY_SOCKET every call does
nothing."""

from __future__ import annotations

import logging
import os
import socket
import time

log = logging.getLogger("disseg.notify")


class Notifier:
    def __init__(self, environ=os.environ) -> None:
        address = environ.get("NOTIFY_SOCKET", "")
        self.address = "\0" + address[1:] if address.startswith("@") else address
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        # systemd's advice: ping at half the interval; WATCHDOG_PID names the process that must ping, if set
        mine = not pid or (pid.isdigit() and int(pid) == os.getpid())
        self.watchdog_s = int(usec) / 2e6 if usec.isdigit() and int(usec) > 0 and mine else None
        self._last_ping = 0.0
        self.ready = False

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, message: str) -> None:
        if not self.address:
            return
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.connect(self.address)
                sock.sendall(message.encode())
        except OSError as err:  # the manager went away: nothing to tell
            log.debug("cannot notify %s: %s", self.address, err)

    def progress(self) -> None:
        """Frames flowed: READY=1 the first time, WATCHDOG=1 at most every half watchdog interval (every 1 s when
        systemd set none, so a test or a supervisor without a watchdog still sees the pings)."""
        if not self.address:
            return
        if not self.ready:
            self.ready = True
            self.send("READY=1\nSTATUS=segmenting")
        now = time.monotonic()
        if now - self._last_ping >= (self.watchdog_s if self.watchdog_s is not None else 1.0):
            self._last_ping = now
            self.send("WATCHDOG=1")

    def stopping(self) -> None:
        self.send("STOPPING=1\nSTATUS=stopping")

    def reloading(self) -> None:
        self.send(f"RELOADING=1\nMONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def reloaded(self) -> None:
        self.send("READY=1")
