"""The executor: up to `concurrency` tasks at once, in threads (plain functions) or on one
event loop (`async def` tasks), with time limits.

Time limits: a thread cannot be interrupted by a signal, so the watchdog raises
`TimeLimitExceeded` inside the task's thread (it lands at the task's next Python
bytecode), and an `async def` task is cancelled by `asyncio.wait_for`. A task that
will not stop (blocked in C code, or an event loop it blocks) is ended with its
process `time_limit_grace` seconds later (`on_hard_limit`); the farm respawns the
worker and the run counts as cut off, so a task that always hangs ends in quarantine.

Cancels (`cancel`) interrupt a running task the same way (`TaskCancelled` in its thread, an
`async` task cancelled), and a task that ignores it for `time_limit_grace` seconds goes the
same hard-limit way; a task cancelled before its function is called is never called. A
cancelled run's outcome is `cancelled`, whatever the task returned or raised afterwards.

Threads: the executor's threads run tasks and middleware `before_run`/`after_run`
hooks; the watchdog thread reads `running()`, a copy taken under a lock.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from yadtq.errors import ResultError, TaskCancelled, TimeLimitExceeded
from yadtq.task.outcomes import Fail, Retry
from yadtq.task.registry import TaskContext
from yadtq.task.results import encode_result
from yadtq.worker.jobs import CANCELLED, ERROR, LOST, SUCCESS, Finished, Job
from yadtq.worker.progress import ProgressWriter

log = logging.getLogger(__name__)

# A slot is READY from its registration until its function is called (a cancel then stops it
# from being called at all), RUNNING while it runs, ENDED after.
READY, RUNNING, ENDED = "ready", "running", "ended"


@dataclass
class _Slot:
    """One running job, shared by its thread and the watchdog under `lock`."""

    job: Job
    thread_id: int | None
    started: float = field(default_factory=time.monotonic)
    state: str = READY
    interrupted: bool = False
    warned: bool = False
    cancelled_at: float | None = None  # monotonic time a cancel reached it
    future: asyncio.Future[Any] | None = None  # an async task's own asyncio task, to cancel it
    lock: threading.Lock = field(default_factory=threading.Lock)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _interrupt(thread_id: int, exc: type[BaseException] = TimeLimitExceeded) -> None:
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread_id), ctypes.py_object(exc))


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
        self._cancelled: set[str] = set()  # cancelled after being handed over, before they began
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
        if job.task.is_async:
            asyncio.run_coroutine_threadsafe(self._run_async(job), self._event_loop())
        else:
            self._jobs.put(job)

    def running(self) -> list[Job]:
        with self._lock:
            return [s.job for s in self._slots.values()]

    def cancel(self, task_id: str) -> None:
        """Interrupts a task handed over here the way its time limit would; one not begun yet never begins."""
        with self._lock:
            slot = self._slots.get(task_id)
            if slot is None:
                self._cancelled.add(task_id)
                return
        with slot.lock:
            if slot.cancelled_at is not None or slot.state == ENDED:
                return
            slot.cancelled_at = time.monotonic()
            if slot.state != RUNNING:  # READY: `_enter` refuses to call it
                return
            slot.interrupted = True
            if slot.thread_id is not None:
                _interrupt(slot.thread_id, TaskCancelled)
            elif slot.future is not None and self._loop is not None:
                self._loop.call_soon_threadsafe(slot.future.cancel)

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
            except (TimeLimitExceeded, TaskCancelled):  # an interrupt that landed after the task ended
                log.debug("late time-limit interrupt ignored for %s", job.task_id)

    def _begin(self, job: Job, thread_id: int | None) -> _Slot | Finished:
        """Registers the run; or its outcome without running: lost (the claim is too old to
        trust and no longer holds), or cancelled before it began."""
        if time.monotonic() - job.claimed_at > self.confirm_after and not self.confirm(job):
            with self._lock:
                self._cancelled.discard(job.task_id)
            return Finished(job, LOST, error="claim lapsed before the task started")
        slot = _Slot(job, thread_id)
        with self._lock:
            if job.task_id in self._cancelled:
                self._cancelled.discard(job.task_id)
                return Finished(job, CANCELLED, error="cancelled before it started")
            self._slots[job.task_id] = slot
        return slot

    @staticmethod
    def _enter(slot: _Slot, future: asyncio.Future[Any] | None = None) -> bool:
        """The function is about to be called: from now on a cancel interrupts it. False: cancelled already."""
        with slot.lock:
            slot.future = future
            if slot.cancelled_at is not None:
                return False
            slot.state = RUNNING
            return True

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
        if isinstance(slot, Finished):
            return slot
        self.before_run(job)
        try:
            try:
                if not self._enter(slot):
                    raise TaskCancelled("cancelled before it started")
                value = job.task.run(job.run.args, job.run.kwargs, self._context(job))
            finally:
                duration = self._end(slot)
                if self.progress is not None:  # its last value lands before its outcome is stored
                    self.progress.finish(job)
            done = self._success(job, value, duration)
        except TimeLimitExceeded:
            done = self._timed_out(job, round(time.monotonic() - slot.started, 6))
        except BaseException as exc:
            done = self._failure(job, exc, round(time.monotonic() - slot.started, 6))
        return self.after_run(self._unless_cancelled(slot, done))

    def _unless_cancelled(self, slot: _Slot, done: Finished) -> Finished:
        """A cancelled run ends `cancelled` whatever it returned or raised after the cancel."""
        if slot.state != ENDED:  # the interrupt landed inside `_end` itself, before it was done
            self._end(slot)
        if slot.cancelled_at is None:
            return done
        return done.but(status=CANCELLED, result_json="null", error="cancelled while running", exception=None)

    def _success(self, job: Job, value: Any, duration: float) -> Finished:
        try:
            return Finished(job, SUCCESS, encode_result(value, self.max_result_bytes), duration=duration)
        except ResultError as exc:  # the same code would return the same value: no retry
            return Finished(job, ERROR, error=str(exc), duration=duration, retryable=False)

    @staticmethod
    def _failure(job: Job, exc: BaseException, duration: float) -> Finished:
        if isinstance(exc, Retry):
            return Finished(job, ERROR, error=_describe(exc), duration=duration, requested_delay=exc.delay,
                            exception=exc)
        return Finished(job, ERROR, error=_describe(exc), duration=duration, retryable=not isinstance(exc, Fail),
                        exception=exc)

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
        if isinstance(slot, Finished):
            return slot
        self.before_run(job)
        try:
            try:
                run = asyncio.ensure_future(job.task.run(job.run.args, job.run.kwargs, self._context(job)))
                if not self._enter(slot, run):
                    run.cancel()
                value = await asyncio.wait_for(run, job.time_limit)
            finally:
                duration = self._end(slot)
                if self.progress is not None:
                    await asyncio.to_thread(self.progress.finish, job)
            done = self._success(job, value, duration)
        except TimeoutError:
            done = self._timed_out(job, round(time.monotonic() - slot.started, 6))
        except asyncio.CancelledError:
            if slot.cancelled_at is None:  # not our cancel: the event loop is going away
                raise
            done = Finished(job, CANCELLED, duration=round(time.monotonic() - slot.started, 6))
        except BaseException as exc:
            done = self._failure(job, exc, round(time.monotonic() - slot.started, 6))
        return self.after_run(self._unless_cancelled(slot, done))

    @staticmethod
    def _timed_out(job: Job, duration: float) -> Finished:
        error = TimeLimitExceeded(f"time limit of {job.time_limit:g}s exceeded")
        return Finished(job, ERROR, error=_describe(error), duration=duration, exception=error)

    # -- the watchdog -----------------------------------------------------------------
    def _watch(self) -> None:
        while not self._stopped.wait(0.1):
            now = time.monotonic()
            with self._lock:
                slots = list(self._slots.values())
            for slot in slots:
                self._check(slot, now)

    def _check(self, slot: _Slot, now: float) -> None:
        if slot.cancelled_at is not None:  # a cancel ignored is handled as a time limit ignored
            if now - slot.cancelled_at > self.grace and slot.state == RUNNING:
                self.on_hard_limit(replace(slot.job, cancelled=True))
            return
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
