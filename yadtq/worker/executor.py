"""The executor: up to `concurrency` tasks at once, in threads (plain functions) or on one
event loop (`async def` tasks), with time limits.

Time limits: a thread cannot be interrupted by a signal, so the watchdog raises
`TimeLimitExceeded` inside the task's thread (it lands at the task's next Python
bytecode), and an `async def` task is cancelled by `asyncio.wait_for`. A task that
will not stop (blocked in C code, or an event loop it blocks) is ended with its
process `time_limit_grace` seconds later (`on_hard_limit`); the farm respawns the
worker and the run counts as cut off, so a task that always hangs ends in quarantine.

Threads: the executor's threads run tasks and middleware `before_run`/`after_run`
hooks; the watchdog thread reads `running()`, a copy taken under a lock.
"""

from __future__ import annotations

import asyncio
import ctypes
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from yadtq.errors import ResultError, TimeLimitExceeded
from yadtq.task.outcomes import Fail, Retry
from yadtq.task.registry import TaskContext
from yadtq.task.results import encode_result
from yadtq.worker.jobs import ERROR, LOST, SUCCESS, Finished, Job
from yadtq.worker.progress import ProgressWriter

log = logging.getLogger(__name__)

RUNNING, ENDED = "running", "ended"


@dataclass
class _Slot:
    """One running job, shared by its thread and the watchdog under `lock`."""

    job: Job
    thread_id: int | None
    started: float = field(default_factory=time.monotonic)
    state: str = RUNNING
    interrupted: bool = False
    warned: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _interrupt(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(TimeLimitExceeded))


def _clear_interrupt(thread_id: int) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), None)


class Executor:
    def __init__(self, concurrency: int, *, worker_name: str, max_result_bytes: int, grace: float,
                 warn_after: float, before_run: Callable[[Job], None],
                 after_run: Callable[[Finished], Finished], on_hard_limit: Callable[[Job], None],
                 on_long_running: Callable[[Job, float], None], confirm: Callable[[Job], bool],
                 confirm_after: float, progress: ProgressWriter | None = None) -> None:
        self.concurrency = concurrency
        self.worker_name = worker_name
        self.max_result_bytes = max_result_bytes
        self.grace = grace
        self.warn_after = warn_after
        self.before_run = before_run
        self.after_run = after_run
        self.on_hard_limit = on_hard_limit
        self.on_long_running = on_long_running
        self.confirm = confirm
        self.confirm_after = confirm_after
        self.progress = progress
        self.finished: queue.SimpleQueue[Finished] = queue.SimpleQueue()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._threads = [threading.Thread(target=self._work, name=f"yadtq-task-{i}", daemon=True)
                         for i in range(concurrency)]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._watchdog = threading.Thread(target=self._watch, name="yadtq-watchdog", daemon=True)

    def start(self) -> None:
        for t in self._threads:
            t.start()
        self._watchdog.start()
        if self.progress is not None:
            self.progress.start()

    def submit(self, job: Job) -> None:
        if inspect.iscoroutinefunction(job.task.fn):
            asyncio.run_coroutine_threadsafe(self._run_async(job), self._event_loop())
        else:
            self._jobs.put(job)

    def running(self) -> list[Job]:
        with self._lock:
            return [s.job for s in self._slots.values()]

    def stop(self) -> None:
        self._stopped.set()
        if self.progress is not None:
            self.progress.stop()
        for _ in self._threads:
            self._jobs.put(None)
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # -- threads -----------------------------------------------------------------
    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self.finished.put(self._run_sync(job))
            except TimeLimitExceeded:  # an interrupt that landed after the task ended
                log.debug("late time-limit interrupt ignored for %s", job.task_id)

    def _begin(self, job: Job, thread_id: int | None) -> _Slot | None:
        """Registers the run; None if the claim is too old to trust and no longer holds."""
        if time.monotonic() - job.claimed_at > self.confirm_after and not self.confirm(job):
            return None
        slot = _Slot(job, thread_id)
        with self._lock:
            self._slots[job.task_id] = slot
        return slot

    def _end(self, slot: _Slot) -> float:
        with slot.lock:
            slot.state = ENDED
            if slot.thread_id is not None and slot.interrupted:
                _clear_interrupt(slot.thread_id)
        with self._lock:
            self._slots.pop(slot.job.task_id, None)
        return round(time.monotonic() - slot.started, 6)

    def _context(self, job: Job) -> TaskContext:
        return TaskContext(job.task_id, job.task.name, job.run.attempt, self.worker_name,
                           None if self.progress is None else self.progress.sink(job))

    def _run_sync(self, job: Job) -> Finished:
        slot = self._begin(job, threading.get_ident())
        if slot is None:
            return Finished(job, LOST, error="claim lapsed before the task started")
        self.before_run(job)
        try:
            try:
                value = job.task.run(job.run.args, job.run.kwargs, self._context(job))
            finally:
                duration = self._end(slot)
                if self.progress is not None:  # its last value lands before its outcome is stored
                    self.progress.finish(job)
            done = self._success(job, value, duration)
        except TimeLimitExceeded:
            done = Finished(job, ERROR, error=f"TimeLimitExceeded: time limit of {job.time_limit:g}s exceeded",
                            duration=round(time.monotonic() - slot.started, 6))
        except BaseException as exc:
            done = self._failure(job, exc, round(time.monotonic() - slot.started, 6))
        return self.after_run(done)

    def _success(self, job: Job, value: Any, duration: float) -> Finished:
        try:
            return Finished(job, SUCCESS, encode_result(value, self.max_result_bytes), duration=duration)
        except ResultError as exc:  # the same code would return the same value: no retry
            return Finished(job, ERROR, error=str(exc), duration=duration, retryable=False)

    @staticmethod
    def _failure(job: Job, exc: BaseException, duration: float) -> Finished:
        if isinstance(exc, Retry):
            return Finished(job, ERROR, error=_describe(exc), duration=duration, requested_delay=exc.delay)
        return Finished(job, ERROR, error=_describe(exc), duration=duration, retryable=not isinstance(exc, Fail))

    # -- async tasks -----------------------------------------------------------------
    def _event_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="yadtq-async", daemon=True).start()
                self._loop = loop
            return self._loop

    async def _run_async(self, job: Job) -> None:
        try:
            self.finished.put(await self._attempt_async(job))
        except BaseException:
            log.exception("async task %s", job.task_id)
            self.finished.put(Finished(job, ERROR, error="internal error running the task"))

    async def _attempt_async(self, job: Job) -> Finished:
        slot = await asyncio.to_thread(self._begin, job, None)
        if slot is None:
            return Finished(job, LOST, error="claim lapsed before the task started")
        self.before_run(job)
        try:
            try:
                value = await asyncio.wait_for(job.task.run(job.run.args, job.run.kwargs, self._context(job)),
                                               job.time_limit)
            finally:
                duration = self._end(slot)
                if self.progress is not None:
                    await asyncio.to_thread(self.progress.finish, job)
            done = self._success(job, value, duration)
        except TimeoutError:
            done = Finished(job, ERROR, error=f"TimeLimitExceeded: time limit of {job.time_limit:g}s exceeded",
                            duration=round(time.monotonic() - slot.started, 6))
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            done = self._failure(job, exc, round(time.monotonic() - slot.started, 6))
        return self.after_run(done)

    # -- the watchdog -----------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stopped.wait(0.1):
            now = time.monotonic()
            with self._lock:
                slots = list(self._slots.values())
            for slot in slots:
                self._check(slot, now)

    def _check(self, slot: _Slot, now: float) -> None:
        limit = slot.job.time_limit
        elapsed = now - slot.started
        if not limit:
            if self.warn_after and elapsed > self.warn_after and not slot.warned:
                slot.warned = True
                self.on_long_running(slot.job, elapsed)
            return
        if elapsed > limit and not slot.interrupted:
            with slot.lock:
                if slot.state == RUNNING and slot.thread_id is not None:
                    slot.interrupted = True
                    _interrupt(slot.thread_id)
                elif slot.state == RUNNING:
                    slot.interrupted = True  # async: wait_for cancels it
        if elapsed > limit + self.grace and slot.state == RUNNING:
            self.on_hard_limit(slot.job)
