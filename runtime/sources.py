"""Frame sources, one way to name them: camera index, video file, image folder or glob, RTSP URL, raw
GStreamer pipeline, Jetson CSI camera. Files are read in order with nothing dropped; live sources are
read in a thread that keeps only the newest frame (no growing lag) and reconnect with backoff."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import cv2
import numpy as np

from .choices import DEFAULT_FPS, DEFAULT_MAX_RECONNECTS
from .errors import BadInput, SourceError
from .image import IMAGE_SUFFIXES, list_images, read_image, unique_names
from .redaction import redact
from .signals import STUCK
from .textfile import read_text

log = logging.getLogger("disseg.sources")

OPEN_TIMEOUT_MS = 5_000  # FFmpeg's own limits on opening a stream and on one read: a reader thread left inside
READ_TIMEOUT_MS = 5_000  # OpenCV at a stop (the stop itself never waits for them) ends after this at most
GST_KINDS = ("auto", "live", "file")  # gst:, gst+live:, gst+file: (a pipeline's kind when the guess is wrong)
# Source elements whose pipelines are live (a camera, a network stream): they reconnect when they end. Any other
# pipeline, unless an element says is-live=true or reads a non-file URI, is a file: every frame, and its end is the
# stream's end.
LIVE_ELEMENTS = frozenset(
    "v4l2src nvarguscamerasrc nvv4l2camerasrc libcamerasrc rtspsrc udpsrc tcpclientsrc tcpserversrc souphttpsrc "
    "srtsrc srtclientsrc rtmpsrc rtmp2src ximagesrc pipewiresrc aravissrc pylonsrc uvch264src ksvideosrc "
    "mfvideosrc avfvideosrc webrtcsrc whepsrc".split()
)


@dataclass
class Frame:
    index: int
    image: np.ndarray  # uint8 BGR
    name: str  # file stem or frame number, for mask file names
    captured: float  # time.perf_counter() when read


def gstreamer_available() -> bool:
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line
    return False


def csi_pipeline(sensor: int, *, width: int = 1280, height: int = 720, fps: int = 30) -> str:
    """The nvarguscamerasrc pipeline for a Jetson CSI camera, ending in BGR frames for OpenCV."""
    return (
        f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM),width={width},height={height},"
        f"framerate={fps}/1 ! nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! "
        f"appsink drop=true max-buffers=1"
    )


def _require_gstreamer(what: str) -> None:
    if not gstreamer_available():
        raise SourceError(
            f"{what} needs OpenCV built with GStreamer, and this one is not; on a Jetson use JetPack's "
            f"python3-opencv (pip uninstall opencv-python-headless opencv-python), elsewhere build OpenCV "
            f"with -DWITH_GSTREAMER=ON"
        )


def gstreamer_element(name: str) -> bool:
    """Whether this machine's GStreamer has an element (gst-inspect-1.0 --exists, from gstreamer1.0-tools); False
    without the tool."""
    import shutil
    import subprocess

    tool = shutil.which("gst-inspect-1.0")
    if tool is None:
        return False
    try:
        return subprocess.run([tool, "--exists", name], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def rtsp_pipeline(url: str, *, hardware_decoder: bool) -> str:
    """A GStreamer pipeline for an RTSP stream ending in BGR frames for OpenCV: Jetson's hardware H.264 decoder
    (nvv4l2decoder) where it exists, decodebin (avdec_h264, ...) elsewhere. Late frames are dropped at the sink."""
    source = f'rtspsrc location="{url}" latency=200 ! '
    decode = (
        "rtph264depay ! h264parse ! nvv4l2decoder ! nvvidconv ! video/x-raw,format=BGRx ! "
        if hardware_decoder
        else "decodebin ! "
    )
    return source + decode + "videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1 sync=false"


def gst_is_live(pipeline: str, cap=None) -> bool:
    """Whether a GStreamer pipeline is live (reconnect when it ends) or a file (every frame, end at its end): a known
    duration (what OpenCV reports of an opened pipeline) makes it a file; a live source element, is-live=true or a
    uri= that is not file:// makes it live; anything else is a file. gst+live:/gst+file: override the guess."""
    if cap is not None and cap.get(cv2.CAP_PROP_FRAME_COUNT) > 0:
        return False
    for element in pipeline.split("!"):
        words = element.split()
        if not words:
            continue
        props = {k.lower(): v.strip("\"'").lower() for k, _, v in (w.partition("=") for w in words[1:])}
        if words[0] in LIVE_ELEMENTS or props.get("is-live") in ("true", "1", "yes"):
            return True
        if "uri" in props and not props["uri"].startswith("file:"):
            return True
    return False


def open_stream(url: str, *, max_reconnects: int = DEFAULT_MAX_RECONNECTS, retry: bool = False) -> LiveSource:
    """An RTSP/HTTP stream: through GStreamer when OpenCV has it, the URL is RTSP and GStreamer has rtspsrc and a
    decoder, else FFmpeg."""
    if not url.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        raise BadInput(f"--rtsp {_shown(url)}: expected a URL such as rtsp://host:554/stream")
    description = f"stream {shorten(redact(url))}"
    # Only where GStreamer can build the pipeline: OpenCV waits forever on one that lacks its source element.
    hardware = gstreamer_element("nvv4l2decoder")
    if (
        url.startswith(("rtsp://", "rtsps://"))
        and gstreamer_available()
        and gstreamer_element("rtspsrc")
        and (hardware or gstreamer_element("decodebin"))
    ):
        pipeline = rtsp_pipeline(url, hardware_decoder=hardware)
        description += " (GStreamer)"
        return LiveSource(pipeline, api=cv2.CAP_GSTREAMER, description=description, max_reconnects=max_reconnects,
                          retry_first_open=retry, probe=url)  # fmt: skip
    return LiveSource(url, api=cv2.CAP_FFMPEG, description=description, max_reconnects=max_reconnects,
                      retry_first_open=retry, probe=url)  # fmt: skip


def answers(url: str, timeout: float, halt: threading.Event) -> bool:
    """Whether the server of an http(s)/rtsp(s) URL answers within `timeout` (any bytes back to a HEAD or OPTIONS
    request; for TLS, a connection), looking at `halt` all the while. Asked before OpenCV opens the URL: OpenCV
    opens FFmpeg streams one at a time under a process-wide lock, so a camera that accepts and never answers would
    hold every other stream's (re)connect for FFmpeg's whole open timeout."""
    parts = urlsplit(url)
    secure = parts.scheme in ("https", "rtsps")
    default = {"http": 80, "https": 443, "rtsp": 554, "rtsps": 322}.get(parts.scheme, 80)
    try:
        port = parts.port or default
    except ValueError:
        return False
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection((parts.hostname or "", port), timeout=min(timeout, 1.0))
    except (OSError, UnicodeError, ValueError):  # unreachable, or a host name no resolver takes (too long, NUL)
        return False
    with sock:
        if secure:
            return True
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        request = (
            f"OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n"
            if parts.scheme == "rtsp"
            else f"HEAD {path} HTTP/1.0\r\nHost: {parts.hostname}\r\n\r\n"
        )
        sock.settimeout(0.1)
        try:
            sock.sendall(request.encode("latin-1", errors="replace"))
        except OSError:
            return False
        while not halt.is_set() and time.monotonic() < deadline:
            try:
                return bool(sock.recv(1))
            except TimeoutError:
                continue
            except OSError:
                return False
    return False


class Source:
    live = False
    reconnects = 0
    skipped = 0
    truncated: dict | None = None  # a file that ended early: {"frames_read": n, "frames_declared": m}

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def interrupt(self) -> None:
        """Make a reader waiting in __iter__ return soon (a stop); files need nothing."""

    def close(self, wait: float = 0.5) -> None:
        """Release the source; `wait`: at most this long for a thread of its own."""


class ImageSource(Source):
    """Image files from a folder, a glob or one image file, in sorted order; unreadable ones are skipped with a
    warning and counted."""

    def __init__(self, spec: str) -> None:
        path = Path(spec)
        single = _probe(Path.is_file, spec) and path.suffix.lower() in IMAGE_SUFFIXES
        if not any(ch in spec for ch in "*?[") and not _probe(Path.is_dir, spec) and not single:
            raise SourceError(f"{shorten(spec)}: no such image folder; pass a folder or a glob such as 'photos/*.jpg'")
        self.paths = [path] if single else list_images(spec)
        if not self.paths:
            raise SourceError(f"{shorten(spec)}: no images found (looked for .jpg, .png, .bmp, .tif, .webp)")
        self.names = unique_names(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        gone = 0  # files removed while running (a folder deleted under the run): said once, not once each
        for path, name in zip(self.paths, self.names):
            try:
                image = read_image(path)
            except BadInput as err:
                self.skipped += 1
                if not _probe(Path.is_file, str(path)):
                    gone += 1
                    continue
                log.warning("skipped %s", err)
                continue
            yield Frame(index, image, name, time.perf_counter())
            index += 1
        if gone:
            log.warning("%d of %d images were removed while running (%s)", gone, len(self.paths), self.paths[0].parent)


class VideoSource(Source):
    """A video file, every frame in order. One that ends before the frame count its header declares (cut short,
    damaged) is reported in one warning line and in `truncated`."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise SourceError(f"{path}: no such video file")
        self._open(path, cv2.CAP_ANY, f"{path}: cannot read any frame (empty, corrupt or an unsupported codec)")

    def _open(self, target: str, api: int, failure: str) -> None:
        self.path = target
        self.cap = cv2.VideoCapture(target, api)
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok:
            self.cap.release()
            raise SourceError(failure)
        self._first = first
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        self.declared = max(0, int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)))  # 0: the container does not say

    def __iter__(self) -> Iterator[Frame]:
        index, image = 0, self._first
        while image is not None:
            yield Frame(index, image, f"{index:06d}", time.perf_counter())
            index += 1
            ok, image = self.cap.read()
            if not ok:
                image = None
        if index < self.declared:
            self.truncated = {"frames_read": index, "frames_declared": self.declared}
            log.warning(
                "%s ended early: %d of the %d frames its header declares were readable (cut short or damaged)",
                self.path,
                index,
                self.declared,
            )

    def close(self, wait: float = 0.5) -> None:
        self.cap.release()


class PipelineFileSource(VideoSource):
    """A GStreamer pipeline that is a file, not a camera (filesrc ! qtdemux ! h264parse ! nvv4l2decoder ! ..., or
    videotestsrc num-buffers=N): every frame in order, nothing dropped, and its end of stream ends the stream."""

    def __init__(self, pipeline: str, cap=None) -> None:
        if cap is not None:  # already opened to find out what it is
            self.path, self.cap = pipeline, cap
            ok, self._first = cap.read()
            if not ok:
                cap.release()
                raise SourceError("GStreamer pipeline: it ended before its first frame")
            self.fps = cap.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
        else:
            self._open(pipeline, cv2.CAP_GSTREAMER, "GStreamer pipeline: cannot open it or read a frame; try it with "
                       "gst-launch-1.0 (the sink must be appsink)")  # fmt: skip
        self.declared = max(0, int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)))


class LiveSource(Source):
    """A camera or stream, opened and read in a thread of its own that keeps only the newest frame (a frame replaced
    before anyone took it is counted in `skipped`); a dropped stream is reconnected with exponential backoff and
    counted, and given up after `max_reconnects` failures in a row.

    Nothing here blocks a stop: the thread is the only one that ever waits on OpenCV (opening, reading, reconnecting),
    every wait of its own is on `halt`, and close() waits for it briefly. A thread still inside OpenCV then (a server
    that never answers) is left to finish alone: it releases its capture itself, and FFmpeg's open and read timeouts
    end it soon after. With `retry_first_open`, a source that cannot be opened at all is retried like one that
    dropped (a service starts while a camera is down); without it, wait_open() raises the one-line SourceError."""

    live = True
    state = "opening"  # opening, running, reconnecting, ended (gave up or closed)

    def __init__(
        self,
        target: int | str,
        *,
        api: int = cv2.CAP_ANY,
        description: str,
        max_reconnects: int = DEFAULT_MAX_RECONNECTS,
        retry_first_open: bool = False,
        probe: str | None = None,
    ) -> None:
        self.target, self.api, self.description, self.max_reconnects = target, api, description, max_reconnects
        self.retry_first_open = retry_first_open
        self.probe = probe  # a network URL asked first whether anything answers there (see answers())
        self.fps = DEFAULT_FPS
        self.last_frame_at: float | None = None  # time.monotonic() of the newest frame read
        self.halt = threading.Event()
        self.opened = threading.Event()  # set once the first open has succeeded or (without retries) failed
        self.open_failed = False
        self._latest: Frame | None = None
        self._cond = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"source {description}")
        self._thread.start()

    def wait_open(self, stop: threading.Event | None = None) -> bool:
        """Wait (looking at `stop`) until the first open finished: True once it is open, False if `stop` was set.
        SourceError if it cannot be opened and is not retried."""
        while not self.opened.wait(0.05):
            if stop is not None and stop.is_set():
                return False
        if self.open_failed:
            raise SourceError(
                f"{self.description}: cannot open it (no such device or unreachable); check the index or URL "
                f"(list cameras with: v4l2-ctl --list-devices)"
            )
        return True

    def _open(self):
        if self.probe is not None and not answers(self.probe, OPEN_TIMEOUT_MS / 1000, self.halt):
            return None
        if isinstance(self.target, str) and self.api == cv2.CAP_FFMPEG:
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS]
            cap = cv2.VideoCapture(self.target, self.api, params)
        else:
            cap = cv2.VideoCapture(self.target, self.api)
        if cap.isOpened() and not self.halt.is_set():
            ok, _ = cap.read()
            if ok:
                self.fps = cap.get(cv2.CAP_PROP_FPS) or DEFAULT_FPS
                return cap
        cap.release()
        return None

    def _run(self) -> None:
        cap = None
        try:
            cap = self._open()
            if cap is None and not self.retry_first_open:
                self.open_failed = True
            self.opened.set()
            if not self.open_failed:
                cap = self._read(cap)
        except Exception as err:  # never a silent thread death: not opened -> the open's one line; else logged
            if not self.opened.is_set():
                self.open_failed = True
            else:
                log.error("%s: reading stopped (%s)", self.description, type(err).__name__)
        finally:
            self.opened.set()
            if cap is not None:
                cap.release()
            with self._cond:
                self._ended = True
                self.state = "ended"
                self._cond.notify_all()

    def _read(self, cap):
        """Read until halted or given up; reconnect on every failure. Returns the capture to release."""
        index, failures, backoff = 0, 0 if cap is not None else 1, 0.5
        if cap is None:  # could not open at start: retried like a drop
            log.warning("%s: cannot open it yet; retrying in the background", self.description)
        while not self.halt.is_set():
            ok, image = cap.read() if cap is not None else (False, None)
            if ok:
                failures, backoff = 0, 0.5
                self._publish(Frame(index, image, f"{index:06d}", time.perf_counter()))
                index += 1
                continue
            if cap is not None:
                failures += 1
            if failures > self.max_reconnects:
                log.error("%s: gave up after %d failed reconnects", self.description, self.max_reconnects)
                break
            self.state = "reconnecting"
            log.warning(
                "%s dropped; reconnecting in %.1f s (reconnect %d)", self.description, backoff, self.reconnects + 1
            )
            if self.halt.wait(backoff):
                break
            backoff = min(backoff * 2, 8.0)
            if cap is not None:
                cap.release()
            cap = self._open()
            self.reconnects += 1
            failures += cap is None
        return cap

    def _publish(self, frame: Frame) -> None:
        with self._cond:
            if self._latest is not None:
                self.skipped += 1  # replaced before anyone took it
            self._latest = frame
            self.state = "running"
            self.last_frame_at = time.monotonic()
            self._cond.notify_all()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                while self._latest is None and not self._ended and not self.halt.is_set():
                    self._cond.wait(timeout=0.1)
                if self._latest is None:
                    return
                frame, self._latest = self._latest, None
            yield frame

    def interrupt(self) -> None:
        self.halt.set()
        with self._cond:
            self._cond.notify_all()

    def close(self, wait: float = 0.5) -> None:
        """Stop reading; wait up to `wait` s for the thread (one still inside OpenCV is left to end alone)."""
        self.interrupt()
        self._thread.join(timeout=wait)
        if self._thread.is_alive():
            log.debug("%s: still inside OpenCV at close; left to its own timeout", self.description)
            STUCK.append(self._thread)

    @property
    def abandoned(self) -> bool:
        """Whether the reader thread is still inside OpenCV after close()."""
        return self._thread.is_alive()


class Looped(Source):
    """Replays a file source `times` times (soak tests: many frames from a short video)."""

    live = False

    def __init__(self, first, times: int, reopen) -> None:
        self.first, self.times, self.reopen, self.fps = first, times, reopen, getattr(first, "fps", DEFAULT_FPS)
        self.skipped = self.reconnects = 0

    def __iter__(self):
        index, src = 0, self.first
        for n in range(self.times):
            src = self.first if n == 0 else self.reopen()
            for frame in src:
                frame.index = index
                frame.name = f"{index:06d}"
                index += 1
                yield frame
            self.skipped += src.skipped
            self.truncated = src.truncated or self.truncated
            src.close()

    def close(self, wait: float = 0.5) -> None:
        self.first.close()


def open_source(
    *,
    camera: int | None = None,
    video: str | None = None,
    images: str | None = None,
    rtsp: str | None = None,
    gst: str | None = None,
    csi: int | None = None,
    gst_kind: str = "auto",
    max_reconnects: int = DEFAULT_MAX_RECONNECTS,
    retry: bool = False,
) -> Source:
    """Open exactly one source. Raises BadInput (SourceError) with how to fix it. A live source opens in its own
    thread: `retry` retries one that cannot be opened in the background (a service), else LiveSource.wait_open()
    raises the one line. `gst_kind`: whether a pipeline is live or a file (auto: gst_is_live)."""
    given = [
        n
        for n, v in (
            ("--camera", camera),
            ("--video", video),
            ("--images", images),
            ("--rtsp", rtsp),
            ("--gst", gst),
            ("--csi", csi),
        )
        if v is not None
    ]
    if len(given) != 1:
        raise BadInput(
            f"give exactly one source ({', '.join(given) or 'none'} given): --camera N, --video FILE, --images DIR, "
            f"--rtsp URL, --gst PIPELINE or --csi N"
        )
    live = dict(max_reconnects=max_reconnects, retry_first_open=retry)
    if images is not None:
        return ImageSource(images)
    if video is not None:
        return VideoSource(video)
    if camera is not None:
        return LiveSource(camera, description=f"camera {camera}", **live)
    if rtsp is not None:
        return open_stream(rtsp, max_reconnects=max_reconnects, retry=retry)
    if gst is not None:
        _require_gstreamer("--gst")
        return open_pipeline(gst, gst_kind, live)
    _require_gstreamer("--csi")
    return LiveSource(csi_pipeline(csi), api=cv2.CAP_GSTREAMER, description=f"CSI camera {csi}", **live)


def open_pipeline(pipeline: str, kind: str, live: dict) -> Source:
    """A GStreamer pipeline as a file (PipelineFileSource) or a live source (LiveSource), as `kind` says or, for
    auto, as the pipeline's text and what OpenCV reports of it say (gst_is_live)."""
    if kind not in GST_KINDS:
        raise BadInput(f"GStreamer pipeline kind {kind!r}: expected one of {', '.join(GST_KINDS)}")
    if kind == "live" or (kind == "auto" and gst_is_live(pipeline)):
        return LiveSource(pipeline, api=cv2.CAP_GSTREAMER, description="GStreamer pipeline", **live)
    if kind == "file":
        return PipelineFileSource(pipeline)
    cap = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not cap.isOpened():
        cap.release()
        raise SourceError("GStreamer pipeline: cannot open it; try it with gst-launch-1.0 (the sink must be appsink)")
    log.info("GStreamer pipeline: a file (no live source element; its end of stream ends it; gst+live: if not)")
    return PipelineFileSource(pipeline, cap)


URI_FORMS = (
    "a camera (0, v4l2:///dev/video0), csi://0, rtsp://HOST/PATH, http(s)://HOST/PATH, a video file, an image "
    "folder, glob or file, or gst:PIPELINE (gst+live:/gst+file: to say whether it is a camera or a file)"
)
SPEC_KINDS = ("camera", "video", "images", "rtsp", "gst", "csi")  # the keys of a spec that name its source


def _index(text: str) -> int | None:
    """A camera or sensor index: 1 to 5 ASCII digits ("²" and a 20-digit number are not one), else None."""
    return int(text) if 0 < len(text) <= 5 and text.isascii() and text.isdigit() else None


def parse_uri(uri: str) -> dict:
    """One source named by a URI (the jetson-utils way) -> open_source's keyword arguments. Raises BadInput with the
    accepted forms for anything else."""
    text = uri.strip()
    bad = BadInput(f"--source {_shown(text)}: not a source this runtime knows; accepted: {URI_FORMS}")
    if (index := _index(text)) is not None:
        return {"camera": index}
    if text.startswith("v4l2://"):
        index = _index(text[len("v4l2:///dev/video") :]) if text.startswith("v4l2:///dev/video") else None
        if index is None:
            raise bad
        return {"camera": index}
    if text.startswith("csi://"):
        if (index := _index(text[len("csi://") :])) is None:
            raise bad
        return {"csi": index}
    if text.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return {"rtsp": text}
    for kind in GST_KINDS:
        prefix = "gst:" if kind == "auto" else f"gst+{kind}:"
        if text.startswith(prefix) and text[len(prefix) :].strip():
            return {"gst": text[len(prefix) :].strip(), "gst_kind": kind}
    path = text[len("file://") :] if text.startswith("file://") else text
    if "://" in path or not path:
        raise bad
    if "\0" in path:
        raise bad
    if any(ch in path for ch in "*?[") or _probe(Path.is_dir, path) or Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return {"images": path}
    if _probe(Path.is_file, path):
        return {"video": path}
    raise SourceError(f"--source {_shown(text)}: no such file, folder or device; accepted: {URI_FORMS}")


def _probe(test, path: str) -> bool:
    """Path.is_dir/is_file that says False for a name the system refuses (too long: ENAMETOOLONG)."""
    try:
        return test(Path(path))
    except (OSError, ValueError):
        return False


def _shown(text: str) -> str:
    """A text as a message quotes it: credentials redacted, control characters escaped, at most 200 characters."""
    return shorten(repr(redact(text)), len(text))


def shorten(text: str, length: int | None = None, limit: int = 200) -> str:
    """`text` cut to `limit` characters for a message or log line ("...(5,000 characters)")."""
    return text if len(text) <= limit else f"{text[:limit]}... ({length or len(text):,} characters)"


def read_streams(path: str | Path) -> list[str]:
    """A --streams file: one source URI a line; blank lines and lines starting with '#' are skipped."""
    text = read_text(path, "--streams", "a text file, one source URI a line")
    uris = [line.strip() for line in text.splitlines()]
    uris = [u for u in uris if u and not u.startswith("#")]
    if not uris:
        raise BadInput(f"--streams {path}: no sources in it; write one URI a line ({URI_FORMS})")
    return uris


def describe(spec: dict) -> str:
    """A source for logs and the stats file, credentials redacted: "video in.mp4", "stream rtsp://admin:***@cam"."""
    kind, value = next((k, v) for k, v in spec.items() if k in SPEC_KINDS)
    return f"{kind} {shorten(redact(str(value)))}"
