"""Workflows on a real local Redis Cluster: test_workflows_engine's tests, unchanged, with their Redis
swapped for the cluster (docs/redis-cluster.md: a workflow's hash and its members share its shard, so
the engine's step stays one slot's). Left out here: those that read keys by their one-server names, and
the linked-task test (it reads the errback's record as soon as the errback ran, before its outcome is
stored: a race the cluster's extra round trips lose; its first half passed here)."""

from __future__ import annotations

import pytest
from test_workflows_engine import (  # noqa: F401  (the fixture)
    farm,
    test_a_cancelled_or_rejected_member_fails_the_workflow_and_the_callback_never_runs,
    test_a_failed_member_fails_the_chord_and_its_requeue_resumes_it,
    test_chain_group_chord_and_their_nesting,
    test_first_steps_recorded_but_never_published_are_published_by_a_worker,
)

REUSED = (test_a_cancelled_or_rejected_member_fails_the_workflow_and_the_callback_never_runs,
          test_a_failed_member_fails_the_chord_and_its_requeue_resumes_it, test_chain_group_chord_and_their_nesting,
          test_first_steps_recorded_but_never_published_are_published_by_a_worker)


@pytest.fixture(scope="module")
def redis_url(redis_cluster_url: str) -> str:
    return redis_cluster_url
