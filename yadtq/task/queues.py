"""Named queues: which queues a worker serves, in what order, and how their partitions are numbered.

A queue is a Kafka topic of its own (`Settings.topic_for`). A worker serves a `QueuePlan`:

* `"high,default,low"`: strict priority, in that order: a task of a lower queue starts only
  when no task of a higher one is ready;
* `"high:5,default:3,low:1"`: weighted: while all are backlogged, tasks start in about these
  proportions, and a queue with nothing ready leaves its share to the others.

The engine numbers partitions with one integer; a worker serving several topics gives each
queue a block of `STRIDE` numbers: partition p of the queue ranked r is `r * STRIDE + p`.
The first queue's partitions keep their own numbers, so a worker of the default queue only
sees exactly the partitions it saw before queues existed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from yadtq.config import DEFAULT_QUEUE
from yadtq.errors import ConfigError

STRIDE = 10_000  # partitions per queue the numbering leaves room for
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,100}$")
# Topic suffixes YADTQ uses itself (`<topic>.dlq`, `<topic>.epoch`): not queue names.
RESERVED = ("dlq", "epoch")


def check_queue_name(name: object) -> str:
    """`name` if it can name a queue (letters, digits, `_`, `-`; at most 100); else `ConfigError`."""
    if not isinstance(name, str) or not _NAME.match(name) or name in RESERVED:
        raise ConfigError(f"bad queue name {name!r}: use letters, digits, '_' and '-' (at most 100), "
                          f"not {' or '.join(RESERVED)}")
    return name


def queue_problem(name: object) -> str | None:
    """Why `name` cannot name a queue, or None (for message validation)."""
    try:
        check_queue_name(name)
    except ConfigError as exc:
        return str(exc)
    return None


@dataclass(frozen=True)
class QueuePlan:
    """The queues one worker serves, highest priority first; `weights` None means strict order."""

    names: tuple[str, ...] = (DEFAULT_QUEUE,)
    weights: tuple[int, ...] | None = None

    @property
    def weighted(self) -> bool:
        return self.weights is not None

    def virtual(self, rank: int, partition: int) -> int:
        """The engine's number for partition `partition` of the queue ranked `rank`."""
        return rank * STRIDE + partition

    def rank_of(self, virtual: int) -> int:
        return virtual // STRIDE

    def split(self, virtual: int) -> tuple[str, int]:
        """(queue, partition in its topic) of an engine partition number."""
        return self.names[virtual // STRIDE], virtual % STRIDE

    def queue_of(self, virtual: int) -> str:
        return self.split(virtual)[0]

    def describe(self) -> str:
        if self.weights is None:
            return ",".join(self.names)
        return ",".join(f"{n}:{w}" for n, w in zip(self.names, self.weights, strict=True))


def parse_queues(text: str | None) -> QueuePlan:
    """`"high,default,low"` (strict) or `"high:5,default:3,low:1"` (weighted); empty: the
    default queue. Raises `ConfigError` for a bad name, a repeat, a bad weight, or weights
    given to some queues only."""
    items = [x.strip() for x in (text or "").split(",") if x.strip()]
    if not items:
        return QueuePlan()
    names: list[str] = []
    weights: list[int | None] = []
    for item in items:
        name, sep, weight = item.partition(":")
        names.append(check_queue_name(name.strip()))
        if not sep:
            weights.append(None)
            continue
        try:
            w = int(weight)
        except ValueError:
            w = 0
        if w < 1:
            raise ConfigError(f"queue {name!r}: the weight must be a whole number >= 1, got {weight!r}")
        weights.append(w)
    if len(set(names)) != len(names):
        raise ConfigError(f"a queue is named twice in {text!r}")
    given = [w for w in weights if w is not None]
    if not given:
        return QueuePlan(tuple(names))
    if len(given) != len(weights):
        raise ConfigError(f"give every queue a weight or none: {text!r}")
    return QueuePlan(tuple(names), tuple(given))
