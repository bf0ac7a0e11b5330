"""The Celery side of the comparison: Redis as broker and result backend, acks_late."""

import os

from celery import Celery

app = Celery("bench", broker=os.environ["BENCH_REDIS_URL"], backend=os.environ["BENCH_REDIS_URL"])
app.conf.update(task_acks_late=True, worker_prefetch_multiplier=4, result_expires=3600,
                broker_connection_retry_on_startup=True)


@app.task
def add(a, b):
    return a + b
