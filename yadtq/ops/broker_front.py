"""A thin front for the embedded broker, so that any Kafka client can talk to it.

tansu 0.6.0 answers ApiVersions v3+ with all four top-level tagged fields written out, although
each holds its schema default (SupportedFeatures `[]`, FinalizedFeaturesEpoch `-1`,
FinalizedFeatures `[]`, ZkMigrationReady `false`); Apache Kafka leaves default-valued tagged
fields out. Both are legal, but librdkafka before 2.2.0 (Debian's kcat, 2.0.2, among others)
skips one byte too few of every tagged field it does not know, reads the epoch's eight `0xff`
bytes as a field length (216172782113783807) and drops the connection: "ApiVersionRequest
failed: Local: Read underflow".

This front listens on the broker's public address and forwards to tansu on an internal port. On
each connection it looks at the first request only: when it is ApiVersions v3 or later, it drops
the default-valued tagged fields of the matching response (what Apache Kafka would have sent),
and from then on it copies bytes both ways untouched, with `os.splice` where Linux has it (the
kernel moves them; Python only loops). Anything it does not understand is forwarded as it came.

It runs as the parent of tansu (`python -I broker_front.py --listen H:P --upstream H:P -- CMD`),
so the caller still sees one broker process: terminating it stops tansu, and it exits when tansu
does. It imports only the standard library, so it starts in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence

log = logging.getLogger("yadtq.broker_front")

API_VERSIONS = 18
MAX_FIRST_RESPONSE = 1 << 20  # an ApiVersions response is a few hundred bytes; larger ones pass untouched
_CHUNK = 1 << 16
# Tagged fields of ApiVersionsResponse v3+ and the encoding of each one's default value.
_DEFAULT_TAGS = {0: b"\x01", 1: b"\xff" * 8, 2: b"\x01", 3: b"\x00"}


class _Malformed(ValueError):
    """The bytes are not the ApiVersions response this module expects."""


class _Reader:
    def __init__(self, data: bytes, pos: int) -> None:
        self.data, self.pos = data, pos

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Malformed("short")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def uvarint(self) -> int:
        value = shift = 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:
                raise _Malformed("uvarint too long")

    def tags(self) -> list[tuple[int, bytes]]:
        return [(self.uvarint(), self.take(self.uvarint())) for _ in range(self.uvarint())]


def _uvarint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def fix_api_versions_response(body: bytes) -> bytes | None:
    """The ApiVersions v3+ response `body` (correlation id first, no length prefix) without its
    default-valued top-level tagged fields; None when there are none to drop or the bytes do not
    parse as such a response (the caller then forwards them as they came)."""
    try:
        r = _Reader(body, 4 + 2)  # response header v0 (correlation id), error_code
        for _ in range(r.uvarint() - 1):  # compact array of api keys; 0 (null) fails in take()
            r.take(6)  # api_key, min_version, max_version
            if r.tags():
                return None  # a per-key tagged field: not what tansu sends; leave it alone
        r.take(4)  # throttle_time_ms
        start = r.pos
        tags = r.tags()
        if r.pos != len(body):
            return None
    except _Malformed:
        return None
    kept = [(tag, value) for tag, value in tags if _DEFAULT_TAGS.get(tag) != value]
    if len(kept) == len(tags):
        return None
    section = _uvarint(len(kept)) + b"".join(_uvarint(t) + _uvarint(len(v)) + v for t, v in kept)
    return body[:start] + section


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Up to `n` bytes: fewer only when the peer closed first."""
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def _pump(src: socket.socket, dst: socket.socket) -> None:
    """Copies `src` to `dst` until `src` ends; through a pipe with splice(2) where there is one."""
    splice = getattr(os, "splice", None)
    if splice is None:
        while chunk := src.recv(_CHUNK):
            dst.sendall(chunk)
        return
    pipe_r, pipe_w = os.pipe()
    try:
        src_fd, dst_fd = src.fileno(), dst.fileno()
        while n := splice(src_fd, pipe_w, _CHUNK):
            while n:
                n -= splice(pipe_r, dst_fd, n)
    finally:
        os.close(pipe_r)
        os.close(pipe_w)


class _Connection:
    """One client connection and its upstream twin: two threads, one per direction."""

    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client, self.upstream = client, upstream
        self.first_seen = threading.Event()
        self.fix_correlation: int | None = None  # set when the first request is ApiVersions v3+

    def run(self) -> None:
        try:
            up = threading.Thread(target=self._guard, args=(self._client_to_broker,), daemon=True)
            up.start()
            self._guard(self._broker_to_client)
            up.join()
        finally:  # also when no second thread could be had: this client retries
            for sock in (self.client, self.upstream):
                sock.close()

    def _guard(self, direction: Callable[[], None]) -> None:
        try:
            direction()
        except OSError:  # a reset, a broken pipe: end the connection both ways
            self._end()
        except Exception:  # a bug here must cost one connection, never the broker
            log.exception("broker front: connection dropped")
            self._end()

    def _end(self) -> None:
        self.first_seen.set()
        for sock in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _client_to_broker(self) -> None:
        try:
            head = _recv_exactly(self.client, 12)  # size, api_key, api_version, correlation_id
            if len(head) == 12:
                _, key, version, correlation = struct.unpack(">ihhi", head)
                if key == API_VERSIONS and version >= 3:
                    self.fix_correlation = correlation
        finally:
            self.first_seen.set()  # before forwarding: no answer can come before the request
        if head:
            self.upstream.sendall(head)
        if len(head) == 12:
            _pump(self.client, self.upstream)
        self.upstream.shutdown(socket.SHUT_WR)  # the client is done sending; answers may still come

    def _broker_to_client(self) -> None:
        self.first_seen.wait()
        if self.fix_correlation is not None:
            self._first_response()
        _pump(self.upstream, self.client)
        self._end()  # the broker closed: nothing more to say either way

    def _first_response(self) -> None:
        size_bytes = _recv_exactly(self.upstream, 4)
        size = struct.unpack(">i", size_bytes)[0] if len(size_bytes) == 4 else -1
        if not 8 <= size <= MAX_FIRST_RESPONSE:
            self.client.sendall(size_bytes)
            return
        body = _recv_exactly(self.upstream, size)
        fixed = None
        if len(body) == size and struct.unpack_from(">i", body)[0] == self.fix_correlation:
            fixed = fix_api_versions_response(body)
        if fixed is None:
            self.client.sendall(size_bytes + body)
        else:
            self.client.sendall(struct.pack(">i", len(fixed)) + fixed)


def _connect_upstream(upstream: tuple[str, int]) -> socket.socket:
    sock = socket.create_connection(upstream, timeout=5)
    sock.settimeout(None)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def serve(listener: socket.socket, upstream: tuple[str, int], stop: threading.Event) -> None:
    """Accepts on `listener` until `stop` is set; each connection gets its own threads."""
    listener.settimeout(0.5)
    while not stop.is_set():
        try:
            client, _ = listener.accept()
        except TimeoutError:
            continue
        except OSError as exc:  # e.g. out of file descriptors: wait, do not spin, do not die
            log.warning("broker front: accept failed: %s", exc)
            time.sleep(0.1)
            continue
        try:
            threading.Thread(target=_open, args=(client, upstream), daemon=True).start()
        except RuntimeError:  # no thread to be had: this client retries, the others go on
            client.close()


def _open(client: socket.socket, upstream: tuple[str, int]) -> None:
    client.settimeout(None)
    try:
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        up = _connect_upstream(upstream)
    except OSError:
        client.close()  # the broker is not there (yet, or any more): the client retries
        return
    _Connection(client, up).run()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the front dies, even by SIGKILL (Linux prctl)."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _answers(address: tuple[str, int]) -> bool:
    try:
        with socket.create_connection(address, timeout=0.2):
            return True
    except OSError:
        return False


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="broker_front", description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True, help="public host:port")
    parser.add_argument("--upstream", required=True, help="the broker's internal host:port")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the broker's command line")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("the broker's command line is missing (after --)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    listen, upstream = _address(args.listen), _address(args.upstream)
    threading.stack_size(256 * 1024)  # two threads a connection; the default 8 MiB is reserved for nothing

    child = subprocess.Popen(command, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()
        if child.poll() is None:
            child.terminate()

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    deadline = time.monotonic() + 15
    while not _answers(upstream):
        if child.poll() is not None or stopping.is_set() or time.monotonic() > deadline:
            if child.poll() is None:
                child.terminate()
            return child.wait() or 1
        time.sleep(0.02)
    try:
        listener = socket.create_server(listen, backlog=128)
    except OSError as exc:
        log.error("broker front: cannot listen on %s:%d: %s", *listen, exc)
        child.terminate()
        child.wait()
        return 1
    log.info("broker front: %s:%d forwards to the broker at %s:%d (ApiVersions fixed for librdkafka < 2.2)",
             *listen, *upstream)
    threading.Thread(target=serve, args=(listener, upstream, stopping), daemon=True).start()
    try:
        code = child.wait()
    except KeyboardInterrupt:
        child.terminate()
        code = child.wait()
    asked = stopping.is_set()
    stopping.set()
    listener.close()
    return 0 if asked and code in (0, -signal.SIGTERM) else (code if code >= 0 else 128 - code)


if __name__ == "__main__":
    sys.exit(main())
