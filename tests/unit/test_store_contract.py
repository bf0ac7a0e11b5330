"""The Redis contract without a Redis: the Lua scripts use exactly the Status names, every
script is bound by Python, and every reply decoder reads its script's documented shapes."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from yadtq.config import Settings
from yadtq.store import scripts
from yadtq.store.backend import TaskRecord
from yadtq.store.claim_replies import (
    CONCURRENCY,
    RATE,
    WITHDRAWN,
    Busy,
    Done,
    DueRetry,
    Foreign,
    Limited,
    Parked,
    Quarantined,
    Run,
    StepReply,
    decode_renewals,
    decode_verdict,
)
from yadtq.store.claims import ClaimPipeline
from yadtq.store.keys import Keys
from yadtq.store.replies import CancelReply, RejectReply, RequeueReply, SubmitReply, decode_flag
from yadtq.store.script_calls import submit_call
from yadtq.task.messages import TaskMessage
from yadtq.task.status import FINAL, STATUSES, Status
from yadtq.worker.jobs import FAILED, RETRY, SUCCESS

ROOT = Path(__file__).resolve().parents[2]
LUA = {name: scripts.source(name) for name in sorted(scripts.NAMES)}
STATUS_NAMES = {s.value for s in Status}

# Every other lowercase word the scripts quote, by what it is. A word in none of these sets (a
# misspelt status such as 'queue' or 'canceled') fails test_every_quoted_word_is_known.
FIELDS = {"status", "task", "args", "kwargs", "tries", "time_limit", "submitted", "started", "finished", "result",
          "error", "attempts", "failures", "lost_runs", "lost_by", "fence", "lease", "owner", "worker", "digest",
          "submit_token", "epoch", "due", "partition", "offset", "key", "first_submitted", "result_ttl", "expires_at",
          "queue",
          "eta", "expires", "released",  # delayed and expiring tasks
          "progress", "progress_message", "progress_at",  # progress.lua (also the announcement of progress)
          "incarnation", "host", "pid", "since", "space",  # worker_name:<name>
          "id", "completed", "p",  # end:<topic>
          "limit_key", "interval", "max_concurrency",  # limits: a counted run's key; JSON fields of `limits`
          "limit_slot",  # a rate-limited task's booked start
          # schedule:<name>, and the task record's schedule
          "name", "definition", "version", "origin", "defined_at", "created_at", "last_slot", "last_run", "last_task",
          "fired", "skipped", "last_skipped", "schedule"}
REPLY_WORDS = {"new", "exists", "foreign", "ok", "missing", "moved", "running", "done", "busy", "parked",
               "quarantined", "run", "fenced", "rejected", WITHDRAWN, "limited", RATE, CONCURRENCY,
               "same", "changed", "gone", "waiting", "taken", "early"}  # schedule_define.lua, schedule_fire.lua
ARGUMENT_WORDS = {"retry",  # step.lua: an outcome (success | retry | failed)
                  "fresh",  # requeue.lua: reset attempts (else "lost")
                  "wait", "skip"}  # schedule_fire.lua: the scheduler's decision (else fire)
VALUES = {"null", "requeued"}  # a JSON null result; an events line
# lib/workflow.lua: a task record's workflow fields, the workflow hash's fields and node kinds and states,
# and the keys it names under the prefix (the outbox is the retries set; a step's queue index, the
# default queue's when it names none, and the set of named queues).
WORKFLOW_WORDS = {"workflow", "node", "state", "failing", "task", "chain", "group", "chord", "running",
                  "retries", "workflows", "created", "default", "queues"}


def _status_words(text: str) -> set[str]:
    """The quoted words a script compares a status with, writes as a status, or moves between."""
    found = set(re.findall(r"\b(?:st|status|cur\[\d\]|rec\[\d\])\s*[=~]=\s*'(\w+)'", text))
    for args in re.findall(r"redis\.call\('HSET',([^)]*)\)", text):  # HMGET lists fields after 'status'
        found |= set(re.findall(r"'status',\s*'(\w+)'", args))
    for a, b in re.findall(r"move\(\w+,\s*'(\w+)',\s*'(\w+)'\)", text):
        found |= {a, b}
    return found | set(_index_table(text))


def _index_table(text: str) -> dict[str, int]:
    """step.lua's IDX table: status -> the KEYS slot of its index."""
    table = re.search(r"local IDX = \{([^}]*)\}", text)
    return {k: int(n) for k, n in re.findall(r"(\w+)\s*=\s*KEYS\[(\d+)\]", table.group(1))} if table else {}


def test_lua_scripts_use_only_status_names() -> None:
    for name, text in LUA.items():
        unknown = _status_words(text) - STATUS_NAMES
        assert not unknown, f"{name}.lua uses status names that are not a Status: {unknown}"


def test_every_status_is_used_by_the_scripts() -> None:
    used = set().union(*(_status_words(text) for text in LUA.values()))
    assert used == STATUS_NAMES


def test_step_treats_exactly_the_final_statuses_as_done() -> None:
    branch = re.search(r"elseif (st == '\w+'(?: or st == '\w+')*) then\s+verdict = \{'done', st\}", LUA["step"])
    assert branch, "step.lua's 'done' branch moved: update this test"
    assert set(re.findall(r"'(\w+)'", branch.group(1))) == {s.value for s in FINAL}


def test_step_outcomes_are_statuses_but_retry() -> None:
    # step.lua stores an outcome's own name as the status (`want`), except retry -> queued.
    assert {SUCCESS, FAILED} <= set(Status) and RETRY not in STATUS_NAMES
    assert "local want = outcome == 'retry' and 'queued' or outcome" in LUA["step"]


def test_step_index_keys_match_the_claim_pipeline() -> None:
    keys = Keys("p:")
    pipeline = ClaimPipeline(redis.Redis(), Settings(prefix="p:"), "w", "w:1")  # no connection is made
    table = _index_table(LUA["step"])
    assert set(table) == STATUS_NAMES - {Status.CANCELLED}
    for status, slot in table.items():
        assert pipeline._fixed(keys)[slot - 1] == keys.status(status)


def test_every_quoted_word_is_known() -> None:
    known = STATUS_NAMES | FIELDS | REPLY_WORDS | ARGUMENT_WORDS | VALUES | WORKFLOW_WORDS
    for name, text in LUA.items():
        code = "\n".join(line.split("--", 1)[0] for line in text.splitlines())  # comments may say anything
        unknown = {w for w in re.findall(r"'([a-z_]+)'", code)} - known
        assert not unknown, f"{name}.lua quotes unknown words {unknown}: a misspelt status, or add it here"


def test_statuses_are_listed_in_order_and_final_is_a_frozenset() -> None:
    assert STATUSES == (Status.SCHEDULED, Status.QUEUED, Status.PROCESSING, Status.SUCCESS, Status.FAILED,
                        Status.CANCELLED, Status.EXPIRED)
    assert isinstance(FINAL, frozenset) and all(s.final == (s in FINAL) for s in Status)
    assert json.dumps({Status.QUEUED: Status.FAILED}) == '{"queued": "failed"}'  # records and JSON hold names


def test_every_script_is_bound_by_python_and_nothing_else_runs_lua() -> None:
    sources = {p: p.read_text() for d in ("yadtq", "worker_farm", "dashboard") for p in (ROOT / d).rglob("*.py")}
    bound = {m for text in sources.values() for m in re.findall(r"\bbind\(\w+, \"(\w+)\"\)", text)}
    assert bound == set(scripts.NAMES), f"unbound scripts {set(scripts.NAMES) - bound}, unknown {bound - scripts.NAMES}"
    for path, text in sources.items():
        if path.name != "scripts.py":
            assert "register_script(" not in text and ".eval(" not in text, f"{path} loads Lua itself"


def test_bind_refuses_an_unknown_script() -> None:
    with pytest.raises(ValueError, match="no Lua script"):
        scripts.source("nope")


# -- decoders: one per reply shape in each script's header -------------------------------
def test_submit_reply() -> None:
    assert SubmitReply.decode(["new", "queued"]) == SubmitReply("new", "queued")
    assert SubmitReply.decode(["new", "scheduled"]) == SubmitReply("new", "scheduled")
    assert SubmitReply.decode(["exists", "processing"]) == SubmitReply("exists", "processing")
    assert SubmitReply.decode(["foreign", "abc"]).verdict == "foreign"
    with pytest.raises(ValueError):
        SubmitReply.decode(["what"])


def test_requeue_reply() -> None:
    ok = RequeueReply.decode(["ok", "add", "[1, 2]", '{"k": 1}', "3", "2.5", "acct-7", "email"], "t1")
    assert ok.outcome == "ok" and ok.message is not None
    m = ok.message
    assert (m.task_id, m.task, m.args, m.kwargs, m.tries, m.time_limit, m.key, m.queue) == (
        "t1", "add", (1, 2), {"k": 1}, 3, 2.5, "acct-7", "email")
    assert m.record_key == b"acct-7"
    bare = RequeueReply.decode(["ok", "add", "", "", "", "", None, None], "t1").message
    assert bare is not None and (bare.args, bare.kwargs, bare.tries, bare.time_limit, bare.key, bare.queue) == (
        (), {}, None, None, None, None)
    assert bare.record_key == b"t1"
    assert RequeueReply.decode(["missing"], "t") == RequeueReply("missing")
    assert RequeueReply.decode(["moved", "failed"], "t") == RequeueReply("moved", "failed")
    assert RequeueReply.decode(["running"], "t") == RequeueReply("running")
    assert RequeueReply.decode(["success"], "t") == RequeueReply("refused", "success")


def test_submit_call_gives_key_result_ttl_and_queue_their_own_slots() -> None:
    m = TaskMessage("t1", "add", (1, 2), key="acct-7", queue="email", result_ttl=60.0)
    keys, args = submit_call(Keys("p:"), [m, TaskMessage("t2", "add")], 3, "tok")
    assert keys[6] == "p:queue:email"  # KEYS[o+3], o = 4
    assert (keys[7], keys[9]) == ("p:task:t2", "p:queue:default")  # the second message's: o = 7
    assert (args[12], args[13], args[14]) == ("acct-7", 60.0, "email")  # ARGV[a+13], [a+14], [a+15], a = 0
    assert "ARGV[a+15] queue name" in LUA["submit"]
    assert args[15] == "t2" and args[27:] == ["", "", ""]  # a = 15


def test_a_record_publishes_again_with_its_key_and_its_queue() -> None:
    """TaskRecord.message: the one record -> message conversion (requeue_stale, the monitor's recovery)."""
    rec = TaskRecord.from_hash("t1", {"task": "add", "args": "[1]", "status": "queued", "key": "acct-7",
                                      "queue": "email", "result_ttl": "60"})
    m = rec.message()
    assert (m.key, m.record_key, m.queue) == ("acct-7", b"acct-7", "email")
    plain = TaskRecord.from_hash("t2", {"task": "add", "status": "queued", "queue": ""}).message()
    assert (plain.key, plain.record_key, plain.queue) == (None, b"t2", None)  # the default queue's topic


def test_cancel_and_reject_replies() -> None:
    assert CancelReply.decode(["ok", "12.5"]) == CancelReply("ok")
    assert CancelReply.decode(["missing"]) == CancelReply("missing")
    assert CancelReply.decode(["processing"]) == CancelReply("refused", "processing")
    assert RejectReply.decode("rejected").outcome == "rejected"
    assert decode_flag(1) and not decode_flag(0)


def test_step_reply() -> None:
    raw = ["ok", "fenced",
           ["run", "7", "2", "add", "[1]", "{}", "3", "", "1", "100.5", "1"],
           ["done", "success"], ["done", WITHDRAWN], ["busy", "99.0"], ["parked", "101.0"],
           ["quarantined", "died 3 times"], ["foreign", "another task"], ["limited", "0.25", RATE]]
    reply = StepReply.decode(raw, outcomes=2)
    assert reply.stored == [True, False]
    assert reply.verdicts == [Run("7", 2, "add", [1], {}, 3, None, 1, 100.5, 1), Done("success"), Done(WITHDRAWN),
                              Busy(99.0), Parked(101.0), Quarantined("died 3 times"), Foreign("another task"),
                              Limited(0.25, RATE)]
    with pytest.raises(ValueError, match="unknown claim verdict"):
        decode_verdict(["what"])
    assert decode_renewals([1, 0]) == [True, False]


def test_due_retries() -> None:
    taken = DueRetry.decode_all([["t1", "5.5", "add", "[1, 2]", "{}", "3", "", "1.0", "k"],
                                 ["t2", "6.5", "add", "[]", "{}", "", "4", "", ""]])
    assert [d.armed for d in taken] == ["5.5", "6.5"]
    a, b = (d.message for d in taken)
    assert (a.task_id, a.args, a.tries, a.submitted_at, a.time_limit, a.key) == ("t1", (1, 2), 3, 1.0, None, "k")
    assert (b.tries, b.submitted_at, b.time_limit, b.key) == (None, None, 4.0, None)
