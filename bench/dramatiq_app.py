"""The Dramatiq side of the comparison (issue 22): its Redis broker and Redis results, `add` storing its result.

Workers: `python -m dramatiq bench.dramatiq_app --processes 2 --threads 8` (bench/dramatiq_bench.py).
Client: `python bench/dramatiq_app.py N` sends N `add` messages one `send` at a time and prints
{"tasks", "submit_per_s", "end_to_end_per_s"} as JSON. Both read BENCH_REDIS_URL.

Imports only Dramatiq, redis-py and the standard library: it runs in the peer's own interpreter.
"""

import json
import os
import sys
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

BROKER_URL = os.environ["BENCH_REDIS_URL"]
# Results in database 1 of the same Redis (same persistence): its key count is the number of
# outcomes stored, so the client's clock stops as YADTQ's does, on the last outcome stored.
RESULTS_URL = BROKER_URL.rsplit("/", 1)[0] + "/1"
STALL_S = 60.0

broker = RedisBroker(url=BROKER_URL)
broker.add_middleware(Results(backend=RedisBackend(url=RESULTS_URL)))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def add(a, b):
    return a + b


def measure(n):
    """First send to the n-th result stored, after a warm-up batch every worker thread can take."""
    results = redis.Redis.from_url(RESULTS_URL)
    for message in [add.send(0, 0) for _ in range(16)]:
        message.get_result(block=True, timeout=60_000)
    results.flushdb()
    t0 = time.perf_counter()
    for i in range(n):
        add.send(i, 1)
    submitted = time.perf_counter() - t0
    wait_for_count(results.dbsize, n)
    total = time.perf_counter() - t0
    return {"tasks": n, "submit_per_s": n / submitted, "end_to_end_per_s": n / total}


def wait_for_count(count, target, interval=0.05):
    """Until count() reaches target; exits non-zero when it stops moving for STALL_S."""
    last, last_move = count(), time.monotonic()
    while last < target:
        time.sleep(interval)
        value = count()
        if value != last:
            last, last_move = value, time.monotonic()
        elif time.monotonic() - last_move > STALL_S:
            sys.exit(f"Dramatiq stalled at {last:,}/{target:,} results")


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
