"""Foreign Kafka clients submit seed-format tasks on both brokers (issue 20, item 1).

kcat as Debian ships it (librdkafka 2.0.2) could not talk to the embedded broker: tansu writes
the default-valued tagged fields of its ApiVersions v3 reply, and librdkafka before 2.2 skips
one byte too few of each, so it read the epoch's `ff`s as a length. yadtq/broker_front.py drops
those fields; the byte-level tests here replay the reply tansu sent and librdkafka 2.0.2's parse.
"""

from __future__ import annotations

import json
import shutil
import socket
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from conftest import Procs, wait_for
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from yadtq.ops.broker_front import fix_api_versions_response
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import TaskNotFound
from yadtq.ops.ports import free_port
from yadtq.ops.services import speaks_kafka, start_broker

# tansu 0.6.0's ApiVersions v3 response (after the size), captured on 2026-12-03: correlation id 1,
# error 0, 36 api keys, throttle 0, then 4 tagged fields, each at its default value.
TANSU_API_VERSIONS_V3 = bytes.fromhex(
    "00000001000025002400000002000010000000050000150000000200001c0000000400002a0000000200001d00000003"
    "000033000000000000010000001100000a000000060000000000000b00003c000000010000120000000400002c000000"
    "0100000b00000009000019000000040000450000000000000c000000040000020000000900000f0000000500004b0000"
    "000000002e000000000000080000000900001e0000000300000900000009000016000000050000030000000c00004700"
    "000000000011000000010000320000000000001300000007000020000000040000140000000600000e0000000500000d"
    "000000050000180000000500001a000000040000000000040001010108ffffffffffffffff020101030100")
TAGS = bytes.fromhex("040001010108ffffffffffffffff020101030100")


class Underflow(Exception):
    pass


def _librdkafka_2_0_2_parse(body: bytes) -> int:
    """The api key count, read as librdkafka 2.0.2 reads an ApiVersions v3 response, tag bug included
    (it skips taglen - 1 bytes of each tagged field; fixed in 2.2.0); raises Underflow as it fails."""
    pos = 4 + 2

    def take(n: int) -> bytes:
        nonlocal pos
        if pos + n > len(body):
            raise Underflow(f"expected {n} bytes > {len(body) - pos} remaining bytes")
        pos += n
        return body[pos - n:pos]

    def uvarint() -> int:
        value = shift = 0
        while True:
            b = take(1)[0]
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    def skip_tags() -> None:
        for _ in range(uvarint()):
            uvarint()
            length = uvarint()
            if length > 1:
                take(length - 1)

    count = uvarint() - 1
    for _ in range(count):
        take(6)
        skip_tags()
    take(4)
    skip_tags()
    return count


def test_tansu_reply_breaks_librdkafka_2_0_2_and_the_fixed_one_does_not() -> None:
    assert TANSU_API_VERSIONS_V3.endswith(TAGS)
    with pytest.raises(Underflow, match="expected 216172782113783806 bytes"):  # kcat's very words
        _librdkafka_2_0_2_parse(TANSU_API_VERSIONS_V3)
    fixed = fix_api_versions_response(TANSU_API_VERSIONS_V3)
    assert fixed == TANSU_API_VERSIONS_V3[:-len(TAGS)] + b"\x00"  # only the tags go: what Kafka sends
    assert _librdkafka_2_0_2_parse(fixed) == 36


def test_only_default_tags_are_dropped_and_odd_bytes_pass_untouched() -> None:
    head = TANSU_API_VERSIONS_V3[:-len(TAGS)]
    epoch_7 = bytes.fromhex("0201087fffffffffffffff030100")  # a real epoch stays, the default goes
    assert fix_api_versions_response(head + epoch_7) == head + bytes.fromhex("0101087fffffffffffffff")
    assert fix_api_versions_response(head + b"\x00") is None  # nothing to drop
    assert fix_api_versions_response(TANSU_API_VERSIONS_V3 + b"\x00") is None  # trailing bytes
    assert fix_api_versions_response(TANSU_API_VERSIONS_V3[:-1]) is None  # cut
    assert fix_api_versions_response(b"") is None
    assert fix_api_versions_response(b"\x00\x00\x00\x01\x00\x00\x00") is None  # null array


@hsettings(max_examples=400, deadline=None)
@given(st.binary(max_size=400), st.integers(0, len(TANSU_API_VERSIONS_V3)))
def test_the_fixer_never_raises(noise: bytes, cut: int) -> None:
    for body in (noise, TANSU_API_VERSIONS_V3[:cut] + noise):
        fixed = fix_api_versions_response(body)
        assert fixed is None or len(fixed) < len(body)


# -- the front as a process, fed hostile bytes ---------------------------------------------
def _exchange(port: int, frame: bytes, read: bool = True, timeout: float = 5.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(frame)
        if not read:
            return b""
        data = b""
        try:
            while chunk := sock.recv(65536):
                data += chunk
                if len(data) >= 4 and len(data) >= 4 + struct.unpack(">i", data[:4])[0]:
                    break
        except (TimeoutError, ConnectionResetError):
            pass
        return data


def _api_versions_v3(correlation: int) -> bytes:
    body = (struct.pack(">hhih", 18, 3, correlation, 7) + b"rdkafka" + b"\x00"
            + b"\x0blibrdkafka" + b"\x062.0.2" + b"\x00")
    return struct.pack(">i", len(body)) + body


@pytest.mark.brokers("embedded")
def test_the_front_survives_hostile_bytes_and_serves_on(tmp_path: Path, broker_kind: str) -> None:
    port = free_port()
    broker = start_broker("127.0.0.1", port, tmp_path / "logs")
    try:
        reply = _exchange(port, _api_versions_v3(77))
        assert struct.unpack(">ii", reply[:8]) == (len(reply) - 4, 77) and reply.endswith(b"\x00\x00\x00\x00\x00")
        assert _librdkafka_2_0_2_parse(reply[4:]) > 10
        hostile = [b"", b"\x00", b"GET / HTTP/1.1\r\n\r\n", b"\xff" * 64, struct.pack(">i", -1) + b"x" * 20,
                   struct.pack(">ihhi", 0x7FFFFFFF, 18, 3, 5) + b"\x00" * 100,  # ApiVersions, absurd size
                   struct.pack(">ihhi", 12, 18, 3, 9) + b"\xff" * 8,  # ApiVersions v3, a body of garbage
                   struct.pack(">ihhi", 8, 18, 99, 1),  # a version no broker knows
                   _api_versions_v3(1)[:9], bytes(range(256)) * 64]
        for frame in hostile:
            _exchange(port, frame, timeout=1.0)
        for _ in range(50):  # connect and leave at once
            _exchange(port, b"", read=False)
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(200)]
        try:  # 200 connections at once, each stuck half-way through a header, while others are served
            for sock in held:
                sock.sendall(_api_versions_v3(3)[:6])
            assert speaks_kafka("127.0.0.1", port)
        finally:
            for sock in held:
                sock.close()
        assert broker.poll() is None and speaks_kafka("127.0.0.1", port)
        reply = _exchange(port, _api_versions_v3(78))
        assert struct.unpack(">i", reply[4:8])[0] == 78 and _librdkafka_2_0_2_parse(reply[4:]) > 10
    finally:
        broker.terminate()
        assert broker.wait(timeout=15) == 0
    log = next((tmp_path / "logs").glob("broker-*.log")).read_text()
    assert "Traceback" not in log and "connection dropped" not in log
    assert not speaks_kafka("127.0.0.1", port)


# -- foreign producers against a worker, on both brokers -----------------------------------
@pytest.fixture(scope="session")
def kcat() -> str:
    """Debian's kcat (librdkafka 2.0.2 on bookworm), installed here when missing (CI starts on a fresh machine)."""
    found = shutil.which("kcat")
    if found is None:
        for cmd in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "kcat"]):
            done = subprocess.run(cmd, capture_output=True, text=True, env={"DEBIAN_FRONTEND": "noninteractive",
                                                                            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
            assert done.returncode == 0, f"{' '.join(cmd)} failed: {done.stderr[-2000:]}"
        found = shutil.which("kcat")
    assert found is not None
    return found


def _kcat_produce(kcat: str, s: Settings, lines: list[bytes]) -> None:
    done = subprocess.run([kcat, "-P", "-b", s.kafka_bootstrap, "-t", s.topic], input=b"\n".join(lines) + b"\n",
                          capture_output=True, timeout=60)
    assert done.returncode == 0 and b"ERROR" not in done.stderr, done.stderr.decode(errors="replace")


def _result(q: YADTQ, task_id: str) -> object:
    def stored() -> bool:
        try:
            return q.status(task_id).done
        except TaskNotFound:
            return False
    wait_for(stored, 60, 0.1, f"task {task_id} to finish")
    rec = q.status(task_id)
    assert rec.status == "success", rec
    return rec.result


def _seed(task_id: str, a: int, b: int) -> bytes:
    return json.dumps({"task-id": task_id, "task": "add", "args": [a, b]}).encode()


@pytest.mark.timeout(180)
def test_kcat_submits_seed_tasks_and_a_hostile_record_is_dead_lettered(kcat: str, settings: Settings, q: YADTQ,
                                                                       procs: Procs) -> None:
    worker = procs.worker("W1")
    procs.wait_assigned(["W1"])
    first, after = f"kcat-{uuid.uuid4().hex[:8]}", f"kcat-{uuid.uuid4().hex[:8]}"
    _kcat_produce(kcat, settings, [_seed(first, 1, 2)])
    assert _result(q, first) == 3
    _kcat_produce(kcat, settings, [b"this is not JSON {", b'{"task-id": "kcat-cut", "task": "add", "args": [1,'])
    _kcat_produce(kcat, settings, [_seed(after, 20, 22)])
    assert _result(q, after) == 42
    wait_for(lambda: len(q.live.dead_letters(100)) >= 2, 60, 0.2, "both hostile records in the dead letters")
    letters = q.live.dead_letters(100)
    assert len(letters) == 2 and all("not JSON" in e["error"] for e in letters), letters
    assert q.status("kcat-cut").status == "failed"
    assert worker.poll() is None  # still serving
    assert [e["event"] for e in procs.events("worker-W1")].count("worker_joined") == 1


@pytest.mark.timeout(180)
def test_confluent_kafka_submits_seed_tasks(settings: Settings, q: YADTQ, procs: Procs) -> None:
    from confluent_kafka import Producer, libversion

    procs.worker("W1")
    procs.wait_assigned(["W1"])
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 0})
    ids = [f"ck-{uuid.uuid4().hex[:8]}" for _ in range(5)]
    for n, task_id in enumerate(ids):
        producer.produce(settings.topic, _seed(task_id, n, 2))
    assert producer.flush(30) == 0, f"confluent-kafka (librdkafka {libversion()[0]}) left records unsent"
    assert [_result(q, t) for t in ids] == [n + 2 for n in range(5)]
