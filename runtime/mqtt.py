"""The event records (events.Events) published over MQTT, the IoT sites' bus: `--mqtt mqtt://[user:pass@]HOST:PORT/
TOPIC` (or mqtts:// with --mqtt-ca) sends each stream's records to TOPIC/sN with QoS 1, through Eclipse paho-mqtt.

The run never waits on the broker: records go into a bounded queue that a thread of its own hands to paho, whose
own queue (also bounded) holds them while the broker is away and sends them once it is back; a record that finds
either full is dropped and counted (stats "events", /metrics). paho reconnects on its own. The URL's password is
never shown: every line names the broker through redaction."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .errors import BadInput
from .redaction import redact

log = logging.getLogger("disseg.mqtt")
QUEUE = 1000  # records waiting for the broker, in ours and in paho's queue each
PORTS = {"mqtt": 1883, "mqtts": 8883}
_END = object()


def parse_url(url: str) -> dict:
    """mqtt(s)://[user[:password]@]host[:port]/topic -> its parts; BadInput (one line, credentials hidden)."""
    shown = redact(url)
    wanted = "expected mqtt://[user:pass@]HOST[:PORT]/TOPIC or mqtts://... (TLS), e.g. mqtt://127.0.0.1:1883/disseg"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise BadInput(f"--mqtt {shown}: {wanted}") from None
    topic = unquote(parts.path.lstrip("/"))
    if parts.scheme not in PORTS or not parts.hostname:
        raise BadInput(f"--mqtt {shown}: {wanted}")
    if not topic or any(c in topic for c in "+#\0") or len(topic.encode()) > 1024 or parts.query or "#" in url:
        raise BadInput(f"--mqtt {shown}: the topic must be a plain MQTT topic without + or # (wildcards are for "
                       "subscribers), at most 1 KB; e.g. mqtt://broker/site/cameras")  # fmt: skip
    return {
        "tls": parts.scheme == "mqtts",
        "host": parts.hostname,
        "port": port or PORTS[parts.scheme],
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "topic": topic.rstrip("/"),
        "shown": shown,
    }


def check(url: str, ca: Path | None) -> dict:
    """--mqtt and --mqtt-ca as given, before any work: the URL's parts; BadInput (one line) otherwise."""
    where = parse_url(url)
    if ca is not None and not where["tls"]:
        raise BadInput(f"--mqtt-ca {ca}: only for an mqtts:// broker (TLS); drop it or use mqtts://")
    if ca is not None and not Path(ca).is_file():
        raise BadInput(
            f"--mqtt-ca {ca}: no such file; give the PEM file of the CA that signed the broker's certificate"
        )
    if ca is not None:
        import ssl

        try:  # read now, before the model loads or any output is opened
            ssl.create_default_context(cafile=str(ca))
        except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
            raise BadInput(f"--mqtt-ca {ca}: not a CA certificate in PEM form ({err})") from None
    return where


class Publisher:
    """An events output (`publish(record)`, `facts()`, `close()`) that publishes to the broker."""

    def __init__(self, url: str, *, ca: Path | None = None, queue_size: int = QUEUE) -> None:
        self.where = check(url, ca)
        try:
            import paho.mqtt.client as paho
        except ImportError:
            raise BadInput("--mqtt needs paho-mqtt (a dependency of disseg): pip install 'paho-mqtt>=2.1'") from None
        self.paho = paho
        self.handed = self.acked = self.dropped = self.connects = 0
        self.connected = threading.Event()
        self._unreachable_said = False
        self.client = self._client(paho, ca, queue_size)
        self.queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self.client.connect_async(self.where["host"], self.where["port"], keepalive=30)
        self.client.loop_start()
        self._thread = threading.Thread(target=self._send, daemon=True, name="mqtt")
        self._thread.start()
        log.info("publishing events to %s (topic %s/sN, QoS 1)", self.where["shown"], self.where["topic"])

    def _client(self, paho, ca: Path | None, queue_size: int):
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"disseg-{os.getpid()}-{id(self):x}")
        if self.where["user"] is not None:
            client.username_pw_set(self.where["user"], self.where["password"])
        if self.where["tls"]:
            try:
                client.tls_set(ca_certs=str(ca) if ca is not None else None)
            except (OSError, ValueError) as err:
                raise BadInput(f"--mqtt-ca {ca}: not a CA certificate in PEM form ({err})") from None
        client.max_queued_messages_set(queue_size)
        client.reconnect_delay_set(min_delay=1, max_delay=5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        return client

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        self.acked += 1  # QoS 1: the broker has it

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if reason.is_failure:
            log.error("MQTT %s refused the connection: %s", self.where["shown"], reason)
            return
        self.connects += 1
        self.connected.set()
        log.info("MQTT: connected to %s%s", self.where["shown"], " again" if self.connects > 1 else "")

    def _on_connect_fail(self, client, userdata) -> None:
        if not self._unreachable_said:  # once: paho retries every few seconds
            self._unreachable_said = True
            log.warning("MQTT: cannot reach %s; retrying in the background, events wait in a queue of %d",
                        self.where["shown"], self.client.max_queued_messages)  # fmt: skip

    def _on_disconnect(self, client, userdata, flags, reason, properties) -> None:
        if self.connected.is_set():
            log.warning("MQTT: lost %s (%s); reconnecting, events wait in a queue of %d", self.where["shown"],
                        reason, self.client.max_queued_messages)  # fmt: skip
        self.connected.clear()

    def publish(self, record: dict) -> None:
        """Never blocks: a full queue drops the record (counted)."""
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self.dropped += 1

    def _send(self) -> None:
        topic = self.where["topic"]
        while (record := self.queue.get()) is not _END:
            payload = json.dumps(record, ensure_ascii=False, separators=(",", ":"))
            info = self.client.publish(f"{topic}/s{record['stream']}", payload, qos=1)
            if info.rc == self.paho.MQTT_ERR_QUEUE_SIZE:
                self.dropped += 1
            else:
                self.handed += 1

    def facts(self) -> dict:
        return {
            "mqtt_published": self.acked,
            "mqtt_dropped": self.dropped,
            "mqtt_connects": self.connects,
            "mqtt_connected": int(self.connected.is_set()),
        }

    def close(self, wait_s: float = 2.0) -> None:
        """Hand over what is queued, give the broker up to `wait_s` to acknowledge it, then disconnect."""
        deadline = time.monotonic() + wait_s
        try:
            self.queue.put(_END, timeout=wait_s)
        except queue.Full:
            pass
        self._thread.join(timeout=max(0.0, deadline - time.monotonic()))
        while self.connected.is_set() and self.acked < self.handed and time.monotonic() < deadline:
            time.sleep(0.02)
        unsent = max(0, self.handed - self.acked)
        if unsent:
            self.dropped += unsent
            log.warning("MQTT: %d events not acknowledged by %s at the stop", unsent, self.where["shown"])
        self.client.disconnect()
        self.client.loop_stop()
