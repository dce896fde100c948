"""Frame sources, one way to name them: camera index, video file, image folder or glob, RTSP URL, raw
GStreamer pipeline, Jetson CSI camera. Files are read in order with nothing dropped; live sources are
read in a thread that keeps only the newest frame (no growing lag) and reconnect with backoff."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .atomic import os_reason
from .errors import BadInput, SourceError
from .image import IMAGE_SUFFIXES, list_images, read_image, unique_names

log = logging.getLogger("disseg.sources")


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


def redact(url: str) -> str:
    """rtsp://admin:secret@host/live -> rtsp://admin:***@host/live: camera credentials never reach a message,
    a log line or a file."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    userinfo, at, host = authority.rpartition("@")
    if not at:
        return url
    return f"{scheme}://{userinfo.split(':', 1)[0]}:***@{host}{slash}{path}"


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


def open_stream(url: str, *, max_reconnects: int = 10) -> LiveSource:
    """An RTSP/HTTP stream: through GStreamer when OpenCV has it, the URL is RTSP and GStreamer has rtspsrc and a
    decoder, else FFmpeg."""
    if not url.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        raise BadInput(f"--rtsp {redact(url)!r}: expected a URL such as rtsp://host:554/stream")
    description = f"stream {redact(url)}"
    # Only where GStreamer can build the pipeline: OpenCV waits forever on one that lacks its source element.
    hardware = gstreamer_element("nvv4l2decoder")
    if (
        url.startswith(("rtsp://", "rtsps://"))
        and gstreamer_available()
        and gstreamer_element("rtspsrc")
        and (hardware or gstreamer_element("decodebin"))
    ):
        pipeline = rtsp_pipeline(url, hardware_decoder=hardware)
        return LiveSource(
            pipeline, api=cv2.CAP_GSTREAMER, description=description + " (GStreamer)", max_reconnects=max_reconnects
        )
    return LiveSource(url, api=cv2.CAP_FFMPEG, description=description, max_reconnects=max_reconnects)


class Source:
    live = False
    reconnects = 0
    skipped = 0
    truncated: dict | None = None  # a file that ended early: {"frames_read": n, "frames_declared": m}

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class ImageSource(Source):
    """Image files from a folder, a glob or one image file, in sorted order; unreadable ones are skipped with a
    warning and counted."""

    def __init__(self, spec: str) -> None:
        path = Path(spec)
        single = path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES
        if not any(ch in spec for ch in "*?[") and not path.is_dir() and not single:
            raise SourceError(f"{spec}: no such image folder; pass a folder or a glob such as 'photos/*.jpg'")
        self.paths = [path] if single else list_images(spec)
        if not self.paths:
            raise SourceError(f"{spec}: no images found (looked for .jpg, .png, .bmp, .tif, .webp)")
        self.names = unique_names(self.paths)

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        for path, name in zip(self.paths, self.names):
            try:
                image = read_image(path)
            except BadInput as err:
                self.skipped += 1
                log.warning("skipped %s", err)
                continue
            yield Frame(index, image, name, time.perf_counter())
            index += 1


class VideoSource(Source):
    """A video file, every frame in order. One that ends before the frame count its header declares (cut short,
    damaged) is reported in one warning line and in `truncated`."""

    def __init__(self, path: str) -> None:
        if not Path(path).is_file():
            raise SourceError(f"{path}: no such video file")
        self.path = path
        self.cap = cv2.VideoCapture(path)
        ok, first = self.cap.read() if self.cap.isOpened() else (False, None)
        if not ok:
            raise SourceError(f"{path}: cannot read any frame (empty, corrupt or an unsupported codec)")
        self._first = first
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
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

    def close(self) -> None:
        self.cap.release()


class LiveSource(Source):
    """A camera or stream read in a thread that keeps only the newest frame; a dropped stream is
    reconnected with exponential backoff and counted, and given up after `max_reconnects` failures in a row."""

    live = True

    def __init__(
        self, target: int | str, *, api: int = cv2.CAP_ANY, description: str, max_reconnects: int = 10
    ) -> None:
        self.target, self.api, self.description, self.max_reconnects = target, api, description, max_reconnects
        self.cap = self._open()
        if self.cap is None:
            raise SourceError(
                f"{description}: cannot open it (no such device or unreachable); check the index or URL "
                f"(list cameras with: v4l2-ctl --list-devices)"
            )
        self.fps = self.cap.get(cv2.CAP_PROP_FPS) or 30.0
        self._latest: Frame | None = None
        self._cond = threading.Condition()
        self._stop = False
        self._ended = False
        self._thread = threading.Thread(target=self._reader, daemon=True)
        self._thread.start()

    def _open(self):
        cap = cv2.VideoCapture(self.target, self.api)
        if cap.isOpened():
            ok, _ = cap.read()
            if ok:
                return cap
        cap.release()
        return None

    def _reader(self) -> None:
        index, failures, backoff = 0, 0, 0.5
        while not self._stop:
            ok, image = self.cap.read() if self.cap is not None else (False, None)
            if ok:
                failures, backoff = 0, 0.5
                with self._cond:
                    self._latest = Frame(index, image, f"{index:06d}", time.perf_counter())
                    self._cond.notify()
                index += 1
                continue
            failures += 1
            if failures > self.max_reconnects:
                log.error("%s: gave up after %d failed reconnects", self.description, self.max_reconnects)
                break
            log.warning(
                "%s dropped; reconnecting in %.1f s (reconnect %d)", self.description, backoff, self.reconnects + 1
            )
            time.sleep(backoff)
            backoff = min(backoff * 2, 8.0)
            if self.cap is not None:
                self.cap.release()
            self.cap = self._open()
            self.reconnects += 1
        with self._cond:
            self._ended = True
            self._cond.notify()

    def __iter__(self) -> Iterator[Frame]:
        while True:
            with self._cond:
                while self._latest is None and not self._ended:
                    self._cond.wait(timeout=1.0)
                if self._latest is None:
                    return
                frame, self._latest = self._latest, None
            yield frame

    def close(self) -> None:
        self._stop = True
        self._thread.join(timeout=2)
        if self.cap is not None:
            self.cap.release()


class Looped(Source):
    """Replays a file source `times` times (soak tests: many frames from a short video)."""

    live = False

    def __init__(self, first, times: int, reopen) -> None:
        self.first, self.times, self.reopen, self.fps = first, times, reopen, getattr(first, "fps", 30.0)
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

    def close(self) -> None:
        self.first.close()


def open_source(
    *,
    camera: int | None = None,
    video: str | None = None,
    images: str | None = None,
    rtsp: str | None = None,
    gst: str | None = None,
    csi: int | None = None,
    max_reconnects: int = 10,
) -> Source:
    """Open exactly one source. Raises BadInput (SourceError) with how to fix it."""
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
    if images is not None:
        return ImageSource(images)
    if video is not None:
        return VideoSource(video)
    if camera is not None:
        return LiveSource(camera, description=f"camera {camera}", max_reconnects=max_reconnects)
    if rtsp is not None:
        return open_stream(rtsp, max_reconnects=max_reconnects)
    if gst is not None:
        _require_gstreamer("--gst")
        return LiveSource(gst, api=cv2.CAP_GSTREAMER, description="GStreamer pipeline", max_reconnects=max_reconnects)
    _require_gstreamer("--csi")
    return LiveSource(
        csi_pipeline(csi), api=cv2.CAP_GSTREAMER, description=f"CSI camera {csi}", max_reconnects=max_reconnects
    )


URI_FORMS = (
    "a camera (0, v4l2:///dev/video0), csi://0, rtsp://HOST/PATH, http(s)://HOST/PATH, a video file, an image "
    "folder, glob or file, or gst:PIPELINE"
)


def parse_uri(uri: str) -> dict:
    """One source named by a URI (the jetson-utils way) -> open_source's keyword arguments. Raises BadInput with the
    accepted forms for anything else."""
    text = uri.strip()
    bad = BadInput(f"--source {redact(text)!r}: not a source this runtime knows; accepted: {URI_FORMS}")
    if text.isdigit():
        return {"camera": int(text)}
    if text.startswith("v4l2://"):
        device = text[len("v4l2://") :]
        if not (device.startswith("/dev/video") and device[len("/dev/video") :].isdigit()):
            raise bad
        return {"camera": int(device[len("/dev/video") :])}
    if text.startswith("csi://"):
        if not text[len("csi://") :].isdigit():
            raise bad
        return {"csi": int(text[len("csi://") :])}
    if text.startswith(("rtsp://", "rtsps://", "http://", "https://")):
        return {"rtsp": text}
    if text.startswith("gst:") and text[4:].strip():
        return {"gst": text[4:].strip()}
    path = text[len("file://") :] if text.startswith("file://") else text
    if "://" in path or not path:
        raise bad
    if any(ch in path for ch in "*?[") or Path(path).is_dir() or Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return {"images": path}
    if Path(path).is_file():
        return {"video": path}
    raise SourceError(f"--source {redact(text)!r}: no such file, folder or device; accepted: {URI_FORMS}")


def read_streams(path: str | Path) -> list[str]:
    """A --streams file: one source URI a line; blank lines and lines starting with '#' are skipped."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        why = os_reason(err) if isinstance(err, OSError) else "not UTF-8 text"
        raise BadInput(f"--streams {path}: cannot read it ({why}); pass a text file, one URI a line") from None
    uris = [line.strip() for line in text.splitlines()]
    uris = [u for u in uris if u and not u.startswith("#")]
    if not uris:
        raise BadInput(f"--streams {path}: no sources in it; write one URI a line ({URI_FORMS})")
    return uris


def describe(spec: dict) -> str:
    """A source for logs and the stats file, credentials redacted: "video in.mp4", "stream rtsp://admin:***@cam"."""
    kind, value = next((k, v) for k, v in spec.items() if k != "max_reconnects")
    return f"{kind} {redact(str(value))}"
