"""The chaos checkers' notes against a real Redis: a run notes itself once, and never fails for it,
when Redis is killed under the note (the write made durable, its reply cut off)."""

from __future__ import annotations

import uuid
from typing import Any

import ledger_tasks
import pytest
import redis

from worker_farm.mixes import task_redis


class ReplyCutOff(redis.Redis):
    """Redis killed during the fsync of a write: the write is made, its reply never comes (once)."""

    cut = 1

    def rpush(self, name: Any, *values: Any) -> Any:
        done = super().rpush(name, *values)
        if self.cut:
            self.cut -= 1
            raise redis.ConnectionError("Connection closed by server.")
        return done

    def eval(self, script: Any, numkeys: int, *keys_and_args: Any) -> Any:  # the guarded writes' way in
        done = super().eval(script, numkeys, *keys_and_args)
        if self.cut:
            self.cut -= 1
            raise redis.ConnectionError("Connection closed by server.")
        return done


@pytest.fixture
def cut_off(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> ReplyCutOff:
    client = ReplyCutOff.from_url(redis_url, decode_responses=True)
    monkeypatch.setenv("YADTQ_REDIS_URL", redis_url)
    monkeypatch.setattr(task_redis, "_client", client)
    monkeypatch.setattr(ledger_tasks, "_client", client)
    return client


@pytest.mark.parametrize("write", ["mix note", "ledger line"])
def test_a_note_whose_reply_is_cut_off_is_written_once_and_the_run_goes_on(cut_off: ReplyCutOff, write: str) -> None:
    key, line = f"notes:{uuid.uuid4().hex}", "t1 W1 123 1 1.5"
    if write == "mix note":
        task_redis.note(key, line)
    else:
        ledger_tasks._record(key, line)
    assert cut_off.cut == 0, "the reply was never cut off"
    assert cut_off.lrange(key, 0, -1) == [line]


def test_two_runs_of_one_attempt_note_twice_also_when_each_reply_is_cut_off(cut_off: ReplyCutOff) -> None:
    """The guard keys "absent" on the whole note, so it must carry what tells one run from another
    (`this_run`): a genuine second run of the same attempt is still counted by the mixes' checks."""
    key = f"notes:{uuid.uuid4().hex}"
    for _ in range(2):
        cut_off.cut = 1
        task_redis.note(key, f"t1 1 {task_redis.this_run()}")
    notes = cut_off.lrange(key, 0, -1)
    assert len(notes) == 2 and len(set(notes)) == 2, notes
