"""The floor of the hops on a task's path: one call at a time, paced at 100 calls/s, each timed
from the call to its answer.

    .venv/bin/python bench/hop_floor.py [--broker kafka|embedded] [--calls 600]

On a fresh broker and Redis (`appendfsync always`, as `make bench` starts them):

  produce, kafka-python       a send then flush, with the client's producer (`make_producer`, linger 0)
  produce, confluent-kafka    the same produce through librdkafka (acks=1, no idempotence, linger 0),
                              when `confluent-kafka` is installed (it is in requirements-dev.txt)
  script call with fsync      one EVALSHA that writes one hash field (its reply waits for the fsync)
  PING                        a Redis round trip that does nothing

What `bench/latency_hops.py` shows per hop under YADTQ's own load, this shows without it:
what the machine and the client libraries cost before YADTQ does anything. Not part of `make bench`.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent)]

import redis  # noqa: E402

from bench import common, kafka_bench  # noqa: E402, F401 (kafka_bench registers "kafka")
from bench.common import percentile, private_services  # noqa: E402
from yadtq.broker.clients import ensure_topic, make_producer  # noqa: E402


def paced(call: Callable[[], object], calls: int, rate: float = 100.0) -> str:
    call()  # connected, metadata read
    took: list[float] = []
    t_next = time.perf_counter()
    for _ in range(calls):
        t_next += 1 / rate
        time.sleep(max(0.0, t_next - time.perf_counter()))
        t = time.perf_counter()
        call()
        took.append((time.perf_counter() - t) * 1000)
    return " ".join(f"{q} {percentile(took, p):6.2f}" for q, p in (("p50", 50), ("p90", 90), ("p99", 99))) + " ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("kafka", "embedded"), default="kafka")
    parser.add_argument("--calls", type=int, default=600)
    a = parser.parse_args()
    with private_services(broker=a.broker, partitions=4) as s:
        ensure_topic(s, s.topic, 4)
        print(f"{a.calls} calls each on {a.broker}, at 100/s")
        producer = make_producer(s, linger_ms=0)

        def kafka_python() -> None:
            future = producer.send(s.topic, b'{"x":1}', partition=0)
            producer.flush()
            future.get(timeout=5)
        print("  produce, kafka-python     ", paced(kafka_python, a.calls))
        producer.close()
        try:
            import confluent_kafka
        except ImportError:
            print("  produce, confluent-kafka   (not installed)")
        else:
            rd = confluent_kafka.Producer({"bootstrap.servers": s.kafka_bootstrap, "linger.ms": 0, "acks": 1,
                                           "enable.idempotence": False, "log_level": 3})

            def librdkafka() -> None:
                rd.produce(s.topic, b'{"x":1}', partition=0)
                if rd.flush(5) != 0:
                    raise RuntimeError("librdkafka did not deliver within 5 s")
            print("  produce, confluent-kafka  ", paced(librdkafka, a.calls))
        r = redis.Redis.from_url(s.redis_url)
        sha = r.script_load("redis.call('HSET', KEYS[1], 'a', ARGV[1]) return 1")
        print("  script call with fsync    ", paced(lambda: r.evalsha(sha, 1, f"k:{uuid.uuid4().hex}", "v"),
                                                  a.calls))
        print("  PING                      ", paced(r.ping, a.calls))
        r.close()


if __name__ == "__main__":
    main()
