"""Rate and concurrency limits on a real local Redis Cluster (3 primaries, 16 shards): the tasks of
one name sit on every shard, and their limits hold across all of them (yadtq.store.cluster_limits).
The single-server limit tests run here again, unchanged (imported below); those about parking a
backlog in Redis do not apply (on a cluster a task over its limit waits in its worker's buffer)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_limits import (
    Farm,
    test_a_dead_holders_concurrency_comes_back_when_its_lease_lapses,
    test_a_rate_set_at_run_time_holds_in_every_second_across_two_workers,
    test_an_unlimited_task_is_not_held_back_while_a_limited_one_is_saturated,
    test_max_concurrency_holds_farm_wide_even_for_runs_longer_than_the_lease,
)

from yadtq.config import Settings
from yadtq.store.claims import Claim, ClaimPipeline, Done, Limited, Outcome, Run
from yadtq.store.cluster import parse_cluster_url, shard_of
from yadtq.store.limits import LimitStore
from yadtq.task.messages import TaskMessage
from yadtq.worker.records import TaskWork

REUSED = (test_a_rate_set_at_run_time_holds_in_every_second_across_two_workers,
          test_max_concurrency_holds_farm_wide_even_for_runs_longer_than_the_lease,
          test_a_dead_holders_concurrency_comes_back_when_its_lease_lapses,
          test_an_unlimited_task_is_not_held_back_while_a_limited_one_is_saturated)


@pytest.fixture
def farm(redis_cluster_url: str, tmp_path: Path) -> Iterator[Farm]:
    """test_limits' farm, on the cluster."""
    settings = Settings(redis_url=redis_cluster_url, prefix=f"l{uuid.uuid4().hex[:8]}:", topic="tasks",
                        partitions=1, log_dir=str(tmp_path), concurrency=4, lease=0.6, max_buffered=200)
    f = Farm(settings)
    yield f
    f.stop()


def _queued(farm: Farm, task: str, *args: object) -> TaskMessage:
    m = TaskMessage(uuid.uuid4().hex, task, args, {}, None, time.time(), None, None)
    farm.backend.record_queued([m], farm.settings.tries)
    return m


def test_one_slot_of_max_concurrency_is_shared_by_tasks_on_every_shard(farm: Farm) -> None:
    """Two workers' claims of tasks on different shards meet at one count: one runs, the other waits;
    the count ends with the run's outcome, and a claim that does not run gives its admission back."""
    s = farm.settings
    LimitStore(farm.r, s).set("scarce", max_concurrency=1)
    shards = parse_cluster_url(s.redis_url).shards
    first = _queued(farm, "scarce", 0.1)
    second = next(m for m in iter(lambda: _queued(farm, "scarce", 0.1), None)
                  if shard_of(m.task_id, shards) != shard_of(first.task_id, shards))
    a, b = ClaimPipeline(farm.r, s, "A", "A:1"), ClaimPipeline(farm.r, s, "B", "B:1")
    _, [ran] = a.step([], [Claim(TaskWork(first, first.digest), 0, 0)])
    _, [waits] = b.step([], [Claim(TaskWork(second, second.digest), 0, 1)])
    assert isinstance(ran, Run) and isinstance(waits, Limited) and waits.reason == "concurrency"
    assert LimitStore(farm.r, s).get("scarce")["running"] == 1
    # A's run ends: its count goes with the step that stores its outcome, and B's claim runs.
    stored, [again] = a.step([Outcome(first.task_id, ran.fence, "success", "null")], [])[0], \
        b.step([], [Claim(TaskWork(second, second.digest), 0, 1)])[1]
    assert stored == [True] and isinstance(again, Run)
    b.step([Outcome(second.task_id, again.fence, "success", "null")], [])
    # A finished task delivered again is not run, and holds no slot.
    _, [done] = a.step([], [Claim(TaskWork(first, first.digest), 0, 0)])
    assert isinstance(done, Done)
    assert LimitStore(farm.r, s).get("scarce")["running"] == 0


def test_only_names_with_a_rate_or_a_concurrency_limit_go_through_the_limits_slot(farm: Farm) -> None:
    """key_concurrency is the worker's own (per ordering key): a name with only that costs no extra round trip;
    a limit set to none at run time over a decorator's takes the name off too."""
    from yadtq.store.cluster_limits import ClusterLimits
    from yadtq.task.registry import Registry

    reg = Registry()

    @reg.task("keyed", key_concurrency=2)
    def keyed() -> None: ...

    @reg.task("paced", rate_limit="5/s")
    def paced() -> None: ...

    @reg.task("capped", max_concurrency=3)
    def capped() -> None: ...

    store = LimitStore(farm.r, farm.settings)
    store.register([reg.get("keyed"), reg.get("paced"), reg.get("capped")])
    store.set("capped", max_concurrency=None)
    limits = ClusterLimits(farm.r, farm.backend.space.base, "X:1", farm.settings.lease)
    assert limits.names() == {"paced"}


def test_a_message_of_a_running_task_seen_again_leaves_its_runs_count_alone(farm: Farm) -> None:
    """Two messages of one task in a step (or one delivered again while it runs): the second is busy,
    and giving its admission back must not end the count of the run, which shares its entry."""
    s = farm.settings
    LimitStore(farm.r, s).set("scarce", max_concurrency=1)
    m = _queued(farm, "scarce", 0.1)
    a = ClaimPipeline(farm.r, s, "A", "A:1")
    _, verdicts = a.step([], [Claim(TaskWork(m, m.digest), 0, 0), Claim(TaskWork(m, m.digest), 0, 1)])
    assert isinstance(verdicts[0], Run) and not isinstance(verdicts[1], Run), verdicts
    assert LimitStore(farm.r, s).get("scarce")["running"] == 1
    other = _queued(farm, "scarce", 0.1)
    _, [waits] = ClaimPipeline(farm.r, s, "B", "B:1").step([], [Claim(TaskWork(other, other.digest), 0, 2)])
    assert isinstance(waits, Limited)
