"""Each stream's rendered view served over RTSP from dis-run, for recorders (NVR/VMS) and video walls:
`--output rtsp://@:8554/NAME` (jetson-utils' spelling: `@` means "serve on this box"; `@0.0.0.0:8554` to serve off
loopback) through GStreamer's RTSP server (gst-rtsp-server, reached through PyGObject: Debian's and JetPack's
python3-gi with gir1.2-gst-rtsp-server-1.0, the introspection data of the very GStreamer the system runs, which a
PyGObject wheel would only link against anyway).

One server per run; one mount per stream (`/NAME` for one source, `/NAME.sN` for several, as files are numbered);
each mount is shared by its clients and encodes only while one is connected. H.264 from the best encoder present,
named in the log: nvv4l2h264enc (Jetson), nvh264enc (NVENC on a desktop GPU), else x264enc on the CPU. Off loopback
the server asks for RTSP basic authentication, user `disseg` and the web view's token as the password (a recorder
is given rtsp://disseg:TOKEN@BOX:8554/NAME). Frames are pushed from the pipeline's writer into a two-frame leaky
queue: a slow client or encoder never slows inference."""

from __future__ import annotations

import logging
import re
import threading

import cv2
import numpy as np

from .errors import BadInput
from .serve import is_loopback

log = logging.getLogger("disseg.rtsp")
USER = "disseg"
DEFAULT_PORT = 8554
DEFAULT_BITRATE_KBPS = 4000
DEFAULT_KEYINT = 30
_NAME = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}")


def parse_output(text: str) -> tuple[str, int, str]:
    """rtsp://@[HOST][:PORT]/NAME -> (host, port, name); BadInput for anything else."""
    wanted = "expected rtsp://@:8554/NAME (serve on this box; @0.0.0.0:8554 to serve off loopback), NAME of letters, "
    wanted += "digits, . _ -"
    m = re.fullmatch(r"rtsp://@(\[[0-9A-Fa-f:.]+\]|[^/:\[\]]*)(?::(\d{1,5}))?/([^/]*)", text)
    if m is None or not _NAME.fullmatch(m.group(3)) or (m.group(2) and int(m.group(2)) > 65535):
        raise BadInput(f"--output {text}: {wanted}")
    host = m.group(1).strip("[]") or "127.0.0.1"
    return host, int(m.group(2) or DEFAULT_PORT), m.group(3)


def check_output(text: str, token: str | None) -> tuple[str, int, str]:
    """An --output rtsp:// that may be served: off loopback only with a token. BadInput otherwise."""
    host, port, name = parse_output(text)
    if not is_loopback(host) and not token:
        raise BadInput(
            f"--output {text}: reachable from the network, and camera feeds are private: give --serve-token TOKEN "
            f"(or set DISSEG_SERVE_TOKEN); recorders then open rtsp://{USER}:TOKEN@BOX:{port}/{name}"
        )
    return host, port, name


def mount_name(name: str, index: int, count: int) -> str:
    """A stream's mount: NAME for one source, NAME.sN for several (as out.mp4 -> out.sN.mp4)."""
    return name if count == 1 and index == 0 else f"{name}.s{index}"


def _gst():
    try:
        import gi

        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtspServer", "1.0")
        from gi.repository import GLib, Gst, GstRtspServer
    except (ImportError, ValueError):
        raise BadInput(
            "--output rtsp://: needs GStreamer's RTSP server through PyGObject: apt install python3-gi "
            "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-ugly, in a venv made with --system-site-packages"
        ) from None
    Gst.init(None)
    return GLib, Gst, GstRtspServer


ENCODERS = {
    # name: (the launch text before h264parse; bitrate in kbit/s, key-frame interval in frames)
    "nvv4l2h264enc": "nvvidconv ! video/x-raw(memory:NVMM),format=NV12 ! nvv4l2h264enc bitrate={bps} "
    "iframeinterval={keyint} idrinterval={keyint} insert-sps-pps=true maxperf-enable=true",
    "nvh264enc": "videoconvert ! video/x-raw,format=NV12 ! nvh264enc bitrate={kbps} gop-size={keyint} "
    "preset=low-latency-hq",
    "x264enc": "videoconvert ! video/x-raw,format=I420 ! x264enc tune=zerolatency speed-preset=ultrafast "
    "bitrate={kbps} key-int-max={keyint} ! video/x-h264,profile=constrained-baseline",
}


def choose_encoder(gst) -> str:
    """The best H.264 encoder this GStreamer has; BadInput naming what to install when it has none."""
    for name in ENCODERS:
        if gst.ElementFactory.find(name) is not None:
            return name
    raise BadInput(
        "--output rtsp://: no H.264 encoder in this GStreamer (nvv4l2h264enc, nvh264enc or x264enc); apt install "
        "gstreamer1.0-plugins-ugly for x264enc"
    )


def support() -> str:
    """What RTSP out would use here ("x264enc through gst-rtsp-server, GStreamer 1.22.0"); BadInput with what to
    install otherwise (dis-doctor's probe)."""
    _, gst, _ = _gst()
    return f"{choose_encoder(gst)} through gst-rtsp-server, GStreamer {gst.version_string().split()[-1]}"


class Server:
    """The run's RTSP server: a GLib main loop in a thread of its own, mounts added and removed from any thread."""

    def __init__(self, host: str, port: int, *, token: str | None, bitrate_kbps: int, keyint: int) -> None:
        self.GLib, self.Gst, rtsp = _gst()
        self.encoder = choose_encoder(self.Gst)
        self.launch = ENCODERS[self.encoder].format(kbps=bitrate_kbps, bps=bitrate_kbps * 1000, keyint=keyint)
        self.context = self.GLib.MainContext.new()
        self.server = rtsp.RTSPServer.new()
        self.server.set_address(host)
        self.server.set_service(str(port))
        self.auth = token is not None and not is_loopback(host)
        if self.auth:
            auth = rtsp.RTSPAuth.new()
            viewer = rtsp.RTSPToken()
            viewer.set_string("media.factory.role", "viewer")  # the role the mounts allow
            auth.add_basic(rtsp.RTSPAuth.make_basic(USER, token), viewer)
            self.server.set_auth(auth)
        self.mounts = self.server.get_mount_points()
        self._rtsp = rtsp
        try:
            self._source = self.server.create_source(None)  # binds now: a taken port is a GLib.Error here
        except self.GLib.Error as err:
            raise BadInput(f"--output rtsp://@{host}:{port}: cannot listen there ({err.message}); choose another "
                           "port") from None  # fmt: skip
        self._source.attach(self.context)
        self.port = self.server.get_bound_port()
        self.host = host
        self.loop = self.GLib.MainLoop.new(self.context, False)
        self._thread = threading.Thread(target=self.loop.run, daemon=True, name="rtsp")
        self._thread.start()

    def url(self, name: str) -> str:
        host = self.host if ":" not in self.host else f"[{self.host}]"
        return f"rtsp://{f'{USER}:***@' if self.auth else ''}{host}:{self.port}/{name}"

    def mount(self, name: str) -> Mount:
        mount = Mount(self, name)
        log.info("RTSP: %s (%s)", self.url(name), self.encoder)
        return mount

    def close(self) -> None:
        self.loop.quit()
        self._thread.join(timeout=2.0)
        self._source.destroy()  # the listening socket


class Mount:
    """One stream's mount: a sink (write/close) that pushes each rendered frame to whoever watches."""

    def __init__(self, server: Server, name: str) -> None:
        self.server, self.name, self.path = server, name, f"/{name}"
        self.size: tuple[int, int] | None = None
        self.appsrc = None
        self.pushed = 0
        self._lock = threading.Lock()
        factory = server._rtsp.RTSPMediaFactory.new()
        factory.set_launch(
            "( appsrc name=src is-live=true format=time do-timestamp=true max-buffers=2 leaky-type=downstream ! "
            f"{server.launch} ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1 )"
        )
        factory.set_shared(True)
        if server.auth:
            role = server.Gst.Structure.new_from_string(
                "viewer, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            )
            factory.add_role_from_structure(role)
        factory.connect("media-configure", self._configure)
        server.mounts.add_factory(self.path, factory)

    def _configure(self, factory, media) -> None:
        """A first client connected: the media's appsrc is where frames go from now on, until it is unprepared."""
        appsrc = media.get_element().get_child_by_name("src")
        with self._lock:
            if self.size is not None:
                appsrc.set_property("caps", self._caps(*self.size))
            self.appsrc = appsrc
        media.connect("unprepared", self._unprepared, appsrc)

    def _unprepared(self, media, appsrc) -> None:
        """The last client left: frames stop being encoded (unless a newer media already took its place)."""
        with self._lock:
            if self.appsrc is appsrc:
                self.appsrc = None

    def _caps(self, width: int, height: int):
        return self.server.Gst.Caps.from_string(f"video/x-raw,format=BGR,width={width},height={height},framerate=0/1")

    def write(self, image: np.ndarray) -> None:
        with self._lock:
            if self.size is None:
                self.size = (image.shape[1], image.shape[0])
                if self.appsrc is not None:
                    self.appsrc.set_property("caps", self._caps(*self.size))
            appsrc = self.appsrc
        if appsrc is None:
            return  # nobody watches: nothing is encoded
        if (image.shape[1], image.shape[0]) != self.size:  # one size per stream, as a video file has
            image = cv2.resize(image, self.size, interpolation=cv2.INTER_AREA)
        buffer = self.server.Gst.Buffer.new_wrapped(np.ascontiguousarray(image).tobytes())
        appsrc.emit("push-buffer", buffer)
        self.pushed += 1

    def close(self) -> None:
        with self._lock:
            appsrc, self.appsrc = self.appsrc, None
        if appsrc is not None:
            appsrc.emit("end-of-stream")
        self.server.mounts.remove_factory(self.path)
