"""Imported by the worker processes bench/latency_hops.py starts (from a sitecustomize it writes):
wraps a few worker methods to write, per task, when each hop began or ended (wall clock, one
machine) to LATENCY_HOPS_DIR/hops-PID.log. Never used outside that benchmark."""

import os
import sys
import time

if "worker" in sys.argv and os.environ.get("LATENCY_HOPS_DIR"):
    import yadtq.worker.dispatch as _dispatch
    import yadtq.worker.executor as _executor
    import yadtq.worker.housekeeping as _housekeeping
    import yadtq.worker.intake as _intake
    import yadtq.worker.source as _source

    _out = open(os.path.join(os.environ["LATENCY_HOPS_DIR"], f"hops-{os.getpid()}.log"), "a", buffering=1)  # noqa: SIM115

    def _note(kind: str, task_id: str, t: float | None = None) -> None:
        _out.write(f"{kind} {task_id} {t or time.time():.6f}\n")

    _poll = _source.KafkaSource.poll

    def poll(self, timeout, max_records=None):  # records handed to the loop by kafka-python
        out = _poll(self, timeout, max_records)
        now = time.time()
        for r in out:
            if r.key:
                _note("poll", r.key.decode(), now)
        return out

    _run_sync = _executor.Executor._run_sync

    def run_sync(self, job):  # on the task thread
        _note("run", job.task_id)
        done = _run_sync(self, job)
        _note("ran", job.task_id)
        return done

    _step = _dispatch.Dispatcher._store_and_claim

    def store_and_claim(self, finished, claims):  # the Lua step: sent, replied
        t = time.time()
        _step(self, finished, claims)
        t2 = time.time()
        _out.write(f"S - {t:.6f} {t2:.6f}\n")
        for f in finished:
            _note("ostep0", f.job.task_id, t)
            _note("ostep1", f.job.task_id, t2)
        for _, entry in claims:
            _note("cstep0", entry.record.key.decode(), t)
            _note("cstep1", entry.record.key.decode(), t2)

    _ipoll = _intake.Intake.poll

    def intake_poll(self, timeout):  # the loop's Kafka polls, to see which fall between a run and its outcome
        t = time.time()
        _ipoll(self, timeout)
        _out.write(f"P {timeout} {t:.6f} {time.time():.6f}\n")

    _chores = _housekeeping.Housekeeping.run

    def chores(self, *args, **kwargs):  # the loop's timed chores (commits, commands, epoch checks)
        t = time.time()
        _chores(self, *args, **kwargs)
        _out.write(f"H - {t:.6f} {time.time():.6f}\n")

    _source.KafkaSource.poll = poll
    _executor.Executor._run_sync = run_sync
    _dispatch.Dispatcher._store_and_claim = store_and_claim
    _intake.Intake.poll = intake_poll
    _housekeeping.Housekeeping.run = chores
