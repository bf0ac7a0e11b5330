"""Where task records come from: the Kafka consumer group, or memory (unit tests).

A `TaskSource` polls records, commits offsets, pauses and resumes partitions,
reports rebalances as events the loop applies on its own thread, and publishes
(dead letters, parked retries coming due). Kafka errors never escape it: a poll
or commit that fails is logged and reported through `connection`, and the
caller tries again later.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from kafka import ConsumerRebalanceListener, OffsetAndMetadata, TopicPartition
from kafka.errors import (
    CommitFailedError,
    FencedInstanceIdError,
    GroupAuthorizationFailedError,
    InconsistentGroupProtocolError,
    InvalidSessionTimeoutError,
    KafkaError,
)

from yadtq.broker.assignor import StandbyAwareAssignor
from yadtq.broker.clients import ensure_topic, make_consumer, make_producer
from yadtq.broker.confirmed_sends import ConfirmedSends, Send
from yadtq.broker.fetch_wait import idle_fetch_wait_ms
from yadtq.broker.group_join import finish_dropped_join, keep_unfinished_rejoin
from yadtq.broker.paused_fetches import drop_parked
from yadtq.broker.session import session_timeout_ms
from yadtq.broker.static_membership import consumer_options, leave_group
from yadtq.broker.unsent_fetches import forget_unsent_fetch
from yadtq.config import Settings
from yadtq.errors import ConfigError
from yadtq.task.messages import key_partition
from yadtq.worker.queue_topics import QueueTopics
from yadtq.worker.records import Record
from yadtq.worker.rewinds import Rewinds

log = logging.getLogger(__name__)

ASSIGNED, REVOKED = "assigned", "revoked"


@dataclass(frozen=True)
class Rebalance:
    kind: str  # assigned | revoked
    partitions: tuple[int, ...]
    starts: dict[int, int] = field(default_factory=dict)  # assigned: where each partition was sought back to


@dataclass(frozen=True)
class Committed:
    offset: int
    epoch: str  # the broker epoch the committing worker knew ("" if none)


class TaskSource(Protocol):
    connected: bool

    def poll(self, timeout: float, max_records: int | None = None) -> list[Record]: ...
    def rebalances(self) -> list[Rebalance]: ...
    def commit(self, offsets: dict[int, int], log_epoch: str = "") -> bool: ...
    def committed(self, partitions: Sequence[int]) -> dict[int, Committed | None]: ...
    def beginnings(self, partitions: Sequence[int]) -> dict[int, int]: ...
    def seek(self, positions: dict[int, int]) -> None: ...
    def pause(self, partitions: Sequence[int]) -> None: ...
    def resume(self, partitions: Sequence[int]) -> None: ...
    def restart_log(self, partitions: Sequence[int]) -> None: ...
    def publish(self, topic: str, key: bytes | None, value: bytes,
                headers: Sequence[tuple[str, bytes]] = ()) -> None: ...
    def flush(self) -> bool: ...
    def partition_count(self) -> int: ...
    def remember_lows(self, lows: dict[int, int]) -> None: ...
    def close(self) -> None: ...


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    """Runs on kafka-python's thread: only queues events (and seeks), never blocks."""

    def __init__(self, source: KafkaSource) -> None:
        self.source = source

    def _numbers(self, tps: Any) -> tuple[int, ...]:
        return tuple(sorted(self.source.queues.number(tp) for tp in tps if self.source.queues.serves(tp.topic)))

    def on_partitions_revoked(self, revoked: Any) -> None:
        parts = self._numbers(revoked)
        with self.source.rewinds.lock:
            self.source.rewinds.revoked(parts)
            self.source.forget_commits(parts)
            self.source.events.append(Rebalance(REVOKED, parts))

    def on_partitions_lost(self, lost: Any) -> None:
        """This member was evicted (kafka-python calls this instead of `on_partitions_revoked`): the
        partitions were given to others meanwhile, so nothing known of them here holds (rewinds.py),
        and the next join must not claim them as held either."""
        parts = self._numbers(lost)
        with self.source.rewinds.lock:
            self.source.rewinds.lost(parts)
            self.source.forget_commits(parts)
            self.source.assignor.forget(lost)
            self.source.events.append(Rebalance(REVOKED, parts))

    def on_partitions_assigned(self, assigned: Any) -> None:
        parts = self._numbers(assigned)
        with self.source.rewinds.lock:
            # kafka-python keeps the fetch position of a partition that comes back to the
            # same member: without this seek, records dropped at revoke would never return.
            starts = self.source.rewinds.assigned(parts)
            for p, offset in starts.items():
                self.source.consumer.seek(self.source.queues.tp(p), offset)
            self.source.events.append(Rebalance(ASSIGNED, parts, starts))


class KafkaSource:
    def __init__(self, settings: Settings, name: str, standby: bool) -> None:
        self.settings = settings
        self.topic = settings.topic
        # One topic per queue served (YADTQ_QUEUES); partitions numbered for the engine by QueueTopics.
        self.queues = QueueTopics(settings)
        self.connected = True
        self.events: deque[Rebalance] = deque()
        self.rewinds = Rewinds()
        self._last_topic_check = time.monotonic()
        self._to_commit: dict[int, tuple[int, str]] = {}  # the last offset asked for, and its epoch
        self._commit_error: Exception | None = None
        for topic in self.queues.topics:
            ensure_topic(settings, topic, settings.partitions)
        ensure_topic(settings, settings.heartbeat_topic, 1)
        # A send must not block the loop for kafka-python's default minute while the broker is away.
        self.producer = make_producer(settings, linger_ms=0, max_block_ms=int(settings.connect_timeout * 1000))
        self.sends = ConfirmedSends(self.producer)  # a record the broker refuses is sent again
        self.assignor = StandbyAwareAssignor(standby)
        # Several topics: a topic made again (or first) after the group settled is seen within 10 s, not
        # kafka-python's 5 minutes of metadata age, so its partitions are assigned at the next rebalance.
        several = {"metadata_max_age_ms": 10_000} if len(self.queues.topics) > 1 else {}
        self.session_timeout_ms = session_timeout_ms(settings)
        self.consumer = make_consumer(settings, settings.group, client_id=name,
                                      session_timeout_ms=self.session_timeout_ms,
                                      partition_assignment_strategy=[self.assignor], **several,
                                      **consumer_options(settings, name))
        self.consumer.subscribe(list(self.queues.topics), listener=_Listener(self))
        self._lock = threading.Lock()
        # kafka-python reads the wait from its fetcher's config for every fetch it sends; a release
        # that keeps it elsewhere leaves every fetch at fetch_max_wait_ms (as before this existed).
        self._fetch_config: dict[str, Any] | None = getattr(getattr(self.consumer, "_fetcher", None), "config", None)
        # Below the request timeout, or kafka-python would give the waiting fetch up as failed.
        self.idle_fetch_wait_ms = min(idle_fetch_wait_ms(settings), self.consumer.config["request_timeout_ms"] // 2)

    def _lost(self, what: str, exc: Exception) -> None:
        if self.connected:
            log.warning("Kafka %s failed: %s", what, exc)
        self.connected = False

    def poll(self, timeout: float, max_records: int | None = None) -> list[Record]:
        """Up to `max_records` (default `max_poll_records`) records within `timeout` seconds; those
        fetched beyond it stay in the consumer and come with the next polls, never fetched twice.
        The loop waits (`timeout` > 0) only when it has nothing to start: the fetches sent meanwhile
        wait at the broker `idle_fetch_wait_ms`, the others `fetch_max_wait_ms`
        (yadtq/broker/fetch_wait.py)."""
        if self._fetch_config is not None:
            self._fetch_config["fetch_max_wait_ms"] = (self.idle_fetch_wait_ms if timeout > 0
                                                       else self.settings.fetch_max_wait_ms)
        finish_dropped_join(self.consumer)  # before the poll throws it away
        try:
            batches = self.consumer.poll(timeout_ms=int(timeout * 1000),
                                         max_records=max_records or self.settings.max_poll_records)
        except KafkaError as exc:
            refused = self._refused_join(exc)
            if refused:  # retrying cannot help: the worker would wait outside the group for ever
                raise ConfigError(refused) from exc
            self._lost("poll", exc)
            forget_unsent_fetch(self.consumer, exc)  # else a partition its leader led is never fetched again
            time.sleep(min(timeout, 1.0))
            return []
        self.connected = True
        self._finish_joins()
        self._check_topic()
        number = self.queues.number
        return [Record(number(tp), r.offset, r.key, r.value, tuple(r.headers or ()))
                for tp, recs in batches.items() for r in recs]

    def _finish_joins(self) -> None:
        """kafka-python 3.0.12 loses a group join that outlives the poll that started it (the
        worker polls with short timeouts, and a join takes two round trips and the group's
        rebalance): apply one that finished meanwhile, keep one in flight awaited (group_join.py)."""
        finish_dropped_join(self.consumer)
        keep_unfinished_rejoin(self.consumer)

    def _refused_join(self, exc: KafkaError) -> str | None:
        """What to tell the user when the group coordinator refused the JoinGroup for good
        (kafka-python raises these as non-retriable from `poll`); None for any other error."""
        s = self.settings
        if isinstance(exc, InvalidSessionTimeoutError):
            return ("the broker refused the consumer session timeout"
                    f" YADTQ_SESSION_TIMEOUT_MS={self.session_timeout_ms}"
                    " (INVALID_SESSION_TIMEOUT): it must lie within the broker's group.min.session.timeout.ms"
                    " .. group.max.session.timeout.ms (6000 .. 1800000 by default)")
        if isinstance(exc, FencedInstanceIdError):
            return (f"another worker joined consumer group {s.group!r} under this worker's name (static membership):"
                    " this one was fenced out")
        if isinstance(exc, GroupAuthorizationFailedError):
            return f"the broker did not authorize this worker to join consumer group {s.group!r} (YADTQ_GROUP)"
        if isinstance(exc, InconsistentGroupProtocolError):
            return (f"consumer group {s.group!r} (YADTQ_GROUP) is used by consumers that are not YADTQ workers"
                    " (another partition assignor); give the workers a group of their own")
        return None

    def _check_topic(self) -> None:
        """A memory-only broker that restarted has lost the topic: create it again. A worker of several
        queues looks every time (owning partitions of one topic says nothing of the others)."""
        now = time.monotonic()
        if now - self._last_topic_check < 10 or (len(self.queues.topics) == 1 and self.consumer.assignment()):
            return
        self._last_topic_check = now
        try:
            for topic in self.queues.topics:
                if not self.consumer.partitions_for_topic(topic):
                    ensure_topic(self.settings, topic, self.settings.partitions)
        except Exception as exc:
            log.debug("topic check failed: %s", exc)

    def rebalances(self) -> list[Rebalance]:
        out = []
        while self.events:
            out.append(self.events.popleft())
        return out

    def commit(self, offsets: dict[int, int], log_epoch: str = "") -> bool:
        """Sends the commit, noting in each commit's metadata the broker epoch its offsets belong
        to, without waiting for it: a synchronous commit held the loop for a Kafka round trip
        through kafka-python's IO thread (3-12 ms, every 50 ms) and starved the steps. A commit that
        fails is superseded by the next one (the loop commits as it makes progress), and one that
        never lands costs only a re-delivery that the claim skips (Redis knows the task finished).
        `close` commits the last offsets synchronously, so a clean stop hands over exact offsets."""
        failed, self._commit_error = self._commit_error, None
        if failed is not None and not isinstance(failed, CommitFailedError):
            self._lost("commit", failed)
        tagged = {p: (o, log_epoch) for p, o in offsets.items()}
        with self.rewinds.lock:
            if self.events:  # the tracker lags a rebalance (its offsets may be of partitions lost): after it
                return False
            self._to_commit.update(tagged)
        try:
            self.consumer.commit_async(self._offsets(tagged), callback=self._commit_done)
            return True
        except KafkaError as exc:
            self._lost("commit", exc)
            return False

    def _offsets(self, tagged: dict[int, tuple[int, str]]) -> dict[TopicPartition, OffsetAndMetadata]:
        return {self.queues.tp(p): OffsetAndMetadata(o, epoch, -1) for p, (o, epoch) in tagged.items()}

    def _commit_done(self, offsets: Any, response: Any) -> None:
        """kafka-python calls this from `poll` on the loop's thread."""
        if isinstance(response, CommitFailedError):
            # The group moved on; the new owner sees finished tasks in Redis and skips them.
            log.warning("commit refused (rebalanced): %s", response)
        elif isinstance(response, Exception):
            self._commit_error = response

    def _commit_last(self) -> None:
        """The last offsets asked for, committed and waited for (partitions still owned only)."""
        owned = self._owned()
        last = {p: o for p, o in self._to_commit.items() if p in owned}
        if not last:
            return
        try:
            # Bounded: without a timeout kafka-python waits for a coordinator as long as the broker is away.
            self.consumer.commit(self._offsets(last), timeout_ms=int(self.settings.connect_timeout * 1000))
        except CommitFailedError as exc:
            log.warning("commit refused (rebalanced): %s", exc)
        except KafkaError as exc:
            log.warning("final commit failed: %s", exc)

    def _owned(self) -> set[int]:
        return {self.queues.number(tp) for tp in self.consumer.assignment() if self.queues.serves(tp.topic)}

    def _tps(self, partitions: Sequence[int]) -> list[TopicPartition]:
        owned = self._owned()
        return [self.queues.tp(p) for p in partitions if p in owned]

    def committed(self, partitions: Sequence[int]) -> dict[int, Committed | None]:
        """Per owned partition, its committed offset and the epoch noted with it (None: nothing
        committed). Raises `KafkaError` when the broker does not answer."""
        timeout = int(self.settings.connect_timeout * 1000)
        out: dict[int, Committed | None] = {}
        for tp in self._tps(partitions):
            got = self.consumer.committed(tp, metadata=True, timeout_ms=timeout)
            out[self.queues.number(tp)] = None if got is None else Committed(got.offset, str(got.metadata or ""))
        return out

    def beginnings(self, partitions: Sequence[int]) -> dict[int, int]:
        """Per owned partition, the first offset its log still holds. Raises `KafkaError`."""
        tps = self._tps(partitions)
        if not tps:
            return {}
        got = self.consumer.beginning_offsets(tps, timeout_ms=int(self.settings.connect_timeout * 1000))
        return {self.queues.number(tp): int(offset) for tp, offset in got.items()}

    def restart_log(self, partitions: Sequence[int]) -> None:
        """The broker lost its log (a memory-only broker restarted): forget old positions and read
        these partitions from the start of the new log (the claim skips what already finished)."""
        with self.rewinds.lock:
            self.rewinds.forget()
        tps = self._tps(partitions)
        if tps:
            self.consumer.seek_to_beginning(*tps)

    def seek(self, positions: dict[int, int]) -> None:
        """Fetching goes on from these offsets (records polled and dropped while a partition's
        intake was closed are fetched again)."""
        for tp in self._tps(list(positions)):
            self.consumer.seek(tp, positions[self.queues.number(tp)])

    def pause(self, partitions: Sequence[int]) -> None:
        """No more fetches for these partitions until `resume`: their records would be decoded only
        to be dropped (the buffer is full) and fetched again. kafka-python parks what it fetched
        already, and `seek` before `resume` makes it drop what no longer matches the position."""
        if tps := self._tps(partitions):
            self.consumer.pause(*tps)

    def resume(self, partitions: Sequence[int]) -> None:
        """Fetching these partitions again (after `seek` to where the worker's buffer ends). Also
        on every assignment: kafka-python keeps the paused flag of a partition it keeps across a
        rebalance, while the worker starts it afresh."""
        tps = self._tps(partitions)
        drop_parked(self.consumer, tps)  # else kafka-python never fetches a partition paused mid-fetch again
        if tps:
            self.consumer.resume(*tps)

    def publish(self, topic: str, key: bytes | None, value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        partition = None
        if self.queues.serves(topic) and key is not None:
            parts = sorted(self.consumer.partitions_for_topic(topic) or ())
            partition = key_partition(key.decode(errors="replace"), parts) if parts else None
        try:
            self.sends.send(Send(topic, key, value, list(headers), partition))
        except KafkaError as exc:
            self._lost("publish", exc)
            raise

    def flush(self) -> bool:
        try:
            self.sends.flush(timeout=self.settings.connect_timeout)
            return True
        except KafkaError as exc:
            self._lost("publish", exc)
            return False

    def partition_count(self) -> int:
        return len(self.consumer.partitions_for_topic(self.topic) or ()) or self.settings.partitions

    def remember_lows(self, lows: dict[int, int]) -> None:
        with self.rewinds.lock:
            if not self.events:  # else the loop's tracker lags a rebalance: its lows may be of partitions lost
                self.rewinds.remember(lows)

    def forget_commits(self, partitions: Sequence[int]) -> None:
        """Offsets asked for before these partitions were revoked or lost: never the last commit of a
        later ownership (`_commit_last`). Called with `rewinds.lock` held."""
        for p in partitions:
            self._to_commit.pop(p, None)

    def close(self) -> None:
        """The final commit (bounded by `connect_timeout`), then the goodbyes, which share one more
        `connect_timeout`: LeaveGroup and the producer's last sends (the goodbye heartbeat; dead letters
        and retries went out before the commits that count them). Unbounded, a broker stopping at the
        same moment held the process for kafka-python's request timeout (30 s) and more. A commit or
        goodbye that cannot be made is skipped: the next owner resumes at the last commit, and
        Redis skips the tasks that finished above it."""
        self._commit_last()
        until = time.monotonic() + self.settings.connect_timeout

        def left_ms() -> int:
            return max(0, int((until - time.monotonic()) * 1000))
        leave_group(self.consumer, left_ms())  # a static member's partitions move now
        try:
            self.consumer.close(autocommit=False, timeout_ms=left_ms())
        except KafkaError as exc:
            log.warning("consumer close: %s", exc)
        try:
            self.producer.close(timeout=left_ms() / 1000)
        except KafkaError as exc:
            log.warning("producer close: %s", exc)

