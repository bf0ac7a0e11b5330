"""The Celery side of the comparison: Redis as broker and result backend, acks_late.

The prefetch multiplier and the pool are chosen per run on the worker's command line.
"""

import os
import time

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"], backend=os.environ["BENCH_REDIS_URL"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=4, result_expires=3600,
                broker_connection_retry_on_startup=True)


@app.task
def add(a, b):
    return a + b


# The mixed workload (bench/mixed.py), twins of bench/mixed_tasks.py.
@app.task
def bench_quick(x, y):
    return x + y


@app.task
def bench_nap(seconds):
    time.sleep(seconds)
    return seconds


FLAKY_FAILED_AT = "bench:flaky_failed_at"  # task id -> when its first attempt failed


@app.task(bind=True, max_retries=3)
def bench_flaky(self, x):
    if self.request.retries == 0:
        self.backend.client.hset(FLAKY_FAILED_AT, self.request.id, time.time())
        raise self.retry(countdown=1.0)
    return x
