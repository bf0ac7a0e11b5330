"""Every Redis key YADTQ uses, in one place. All sit under the prefix."""

from __future__ import annotations

from dataclasses import dataclass

from yadtq.config import DEFAULT_QUEUE


@dataclass(frozen=True)
class Keys:
    prefix: str

    def task(self, task_id: str) -> str:
        return f"{self.prefix}task:{task_id}"

    def status(self, status: str) -> str:
        """Sorted set of task ids in `status` (a yadtq.task.status.Status), scored by when they entered it."""
        return f"{self.prefix}status:{status}"

    @property
    def heartbeats(self) -> str:
        return f"{self.prefix}all_heartbeats"

    @property
    def workers(self) -> str:
        """Hash: worker name -> JSON (state ALIVE/DEAD, last heartbeat, counts)."""
        return f"{self.prefix}workers"

    @property
    def failures(self) -> str:
        return f"{self.prefix}failures"

    @property
    def done_by(self) -> str:
        """Hash: worker name -> tasks it completed successfully (written by the complete script)."""
        return f"{self.prefix}done_by"

    @property
    def failed_by(self) -> str:
        return f"{self.prefix}failed_by"

    @property
    def series(self) -> str:
        """List of JSON samples (queue depth per status, completions per worker), capped."""
        return f"{self.prefix}series"

    @property
    def monitor_offset(self) -> str:
        """Where the monitor is in the heartbeat topic."""
        return f"{self.prefix}monitor:offset"

    def queue_index(self, queue: str) -> str:
        """Sorted set: ids submitted to a named queue, scored by when they were (re)queued; an id
        leaves it when its task ends (step.lua), or when pruned (yadtq.store.queue_stats)."""
        return f"{self.prefix}queue:{queue}"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    def dlq_of(self, queue: str | None) -> str:
        """A named queue's dead letters (`dlq` for the default queue, as before queues existed)."""
        return self.dlq if not queue or queue == DEFAULT_QUEUE else f"{self.prefix}dlq:{queue}"

    @property
    def queues(self) -> str:
        """Set of the named queues tasks were submitted to."""
        return f"{self.prefix}queues"

    def end(self, topic: str) -> str:
        """Hash of the latest `end` run of `topic`: id, partitions seen, completion time."""
        return f"{self.prefix}end:{topic}"

    def changes(self, task_id: str) -> str:
        """Pub/sub channel on which the Lua step that changes a task's record announces it (payload:
        the new status, or "progress"; a worker's final outcome adds the record: `pushed_record`); the
        scripts derive it from the task key (`task(id)` + ":changes")."""
        return f"{self.task(task_id)}:changes"

    def events(self, task_id: str) -> str:
        """A task's own capped event history (what the dashboard's lookup shows)."""
        return f"{self.prefix}events:{task_id}"

    def withdrawn(self, task_id: str) -> str:
        """Set (with a TTL) when a submit was undone because publishing failed: a message of
        that id that reached the broker after all must not create and run the task."""
        return f"{self.prefix}withdrawn:{task_id}"

    @property
    def broker_epoch(self) -> str:
        """String: the broker epoch (its marker's id) last seen; task records note the epoch
        their message went to, so the monitor knows which messages a broker restart lost."""
        return f"{self.prefix}broker:epoch"

    def control(self, worker: str) -> str:
        """List of commands (pause, resume, stop) queued for one worker."""
        return f"{self.prefix}control:{worker}"

    def worker_name(self, name: str) -> str:
        """Hash: the incarnation (with host, pid, since) holding live worker name `name`, with a lease."""
        return f"{self.prefix}worker_name:{name}"

    @property
    def retries(self) -> str:
        """Sorted set: task id -> Redis time a parked retry is due to be published again."""
        return f"{self.prefix}retries"

    @property
    def scheduled(self) -> str:
        """Sorted set: task id -> Redis time a delayed task is due to be published (yadtq.store.delayed)."""
        return f"{self.prefix}scheduled"

    @property
    def limits(self) -> str:
        """Hash of rate and concurrency limits: `code:<task>` (from a worker's decorator) and
        `set:<task>` (set at run time, over it), each JSON (yadtq.store.limits)."""
        return f"{self.prefix}limits"

    def limit_rate(self, task: str) -> str:
        """String: the Redis time a rate-limited task name may next start (GCRA's TAT)."""
        return f"{self.prefix}limit:rate:{task}"

    def limit_running(self, task: str) -> str:
        """Sorted set: task:<id> key -> lease end, the runs counted against a `max_concurrency`."""
        return f"{self.prefix}limit:running:{task}"

    def limit_parked(self, task: str) -> str:
        """Sorted set: task id -> Redis time it was parked until, the tasks parked in `retries` over a
        `max_concurrency`; the end of a run makes the first one due (yadtq/store/lua/lib/limits.lua,
        which derives this name from `limit_running`'s)."""
        return f"{self.limit_running(task)}:parked"

    def limit_booked(self, task: str) -> str:
        """String: the Redis time past the last start booked for a rate-limited task name's waiting
        tasks (each over-limit task waits in `retries` for its own booked start)."""
        return f"{self.prefix}limit:booked:{task}"

    def limit_started(self, task: str) -> str:
        """String: the booked start of the last booked task of a rate-limited name that started, so a
        booked task whose start slipped (an earlier one ran late) comes back after the ones due before
        it (yadtq/store/lua/step.lua, which derives this name from `limit_booked`'s)."""
        return f"{self.limit_booked(task)}:started"

    def schedule(self, name: str) -> str:
        """Hash: one periodic schedule's definition (JSON), version, last slot, last run and task."""
        return f"{self.prefix}schedule:{name}"

    @property
    def schedules(self) -> str:
        """Sorted set: schedule name -> Redis time a scheduler should look at it next."""
        return f"{self.prefix}schedules"

    # -- retention (yadtq.store.retention) --------------------------------
    @property
    def expiry(self) -> str:
        """Sorted set: task id -> Redis time its finished record goes (with its index entries)."""
        return f"{self.prefix}retention:expiry"

    @property
    def retention_cursor(self) -> str:
        """Hash: final status -> the score of its index up to which finished tasks got an expiry."""
        return f"{self.prefix}retention:cursor"

    @property
    def task_ttls(self) -> str:
        """Hash: task name -> its `@task(result_ttl=...)`, as the workers serving it announce."""
        return f"{self.prefix}retention:task_ttl"

    @property
    def retention_lock(self) -> str:
        """String with a TTL: a sweep ran lately; the next one waits for it to lapse (one farm-wide timer)."""
        return f"{self.prefix}retention:lock"
