"""The HTTP API against a real broker, Redis and worker processes."""

from __future__ import annotations

import itertools
import re
import socket
import time

import httpx
import pytest
from conftest import Procs, run_cli, wait_for

from yadtq.broker.backlog import Backlog
from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.ops.ports import answers, free_port
from yadtq.store import search
from yadtq.store.worker_commands import take_commands


def _done(api: httpx.Client, tid: str) -> dict:
    got = api.get(f"/tasks/{tid}/result", params={"wait": 30})
    assert got.status_code == 200, got.text
    return got.json()


def test_submit_follow_and_result(api: httpx.Client, procs: Procs) -> None:
    procs.worker("W1")
    got = api.post("/tasks", json={"task": "add", "args": [20, 22], "tries": 2})
    assert got.status_code == 201, got.text
    tid = got.json()["task_id"]
    assert _done(api, tid) == {"task_id": tid, "status": "success", "done": True, "result": 42, "error": None}
    rec = api.get(f"/tasks/{tid}").json()
    assert (rec["status"], rec["attempts"], rec["tries"], rec["worker"]) == ("success", 1, 2, "W1")
    assert rec["run_time"] >= 0 and rec["queue_wait"] >= 0 and rec["history"] == []
    batch = api.post("/tasks/batch", json={"tasks": [{"task": "multiply", "args": [i, 2]} for i in range(5)]
                                           + [{"task": "fail", "args": ["no luck"], "tries": 1}]})
    assert batch.status_code == 201
    ids = batch.json()["task_ids"]
    outcomes = [_done(api, t) for t in ids]
    assert [o["result"] for o in outcomes[:5]] == [0, 2, 4, 6, 8]
    assert outcomes[5]["status"] == "failed" and "no luck" in outcomes[5]["error"]
    assert api.get("/counts").json() == {"scheduled": 0, "queued": 0, "processing": 0, "success": 6, "failed": 1, "cancelled": 0,
            "expired": 0}


def test_tasks_with_one_key_run_in_order_on_one_partition(api: httpx.Client, q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    got = api.post("/tasks/batch", json={"tasks": [{"task": "sleep", "args": [0.05], "key": "user-7"}
                                                   for _ in range(6)]})
    assert got.status_code == 201, got.text
    records = [q.wait(t, 60) for t in got.json()["task_ids"]]
    assert len({r.partition for r in records}) == 1
    assert all(a.finished <= b.started for a, b in itertools.pairwise(records))  # one at a time, in order
    assert api.post("/tasks", json={"task": "add", "key": ""}).status_code == 422
    assert api.get(f"/tasks/{records[0].task_id}").json()["key"] == "user-7"
    # a submit's own retention is kept in its record; a negative one is refused
    kept = api.post("/tasks", json={"task": "add", "args": [1, 2], "result_ttl": 60}).json()["task_id"]
    assert q.redis.hget(q.backend.keys.task(kept), "result_ttl") == "60.0"
    assert api.post("/tasks", json={"task": "add", "result_ttl": -1}).status_code == 422


def test_own_task_id_is_idempotent(api: httpx.Client, q: YADTQ) -> None:
    for _ in range(2):
        got = api.post("/tasks", json={"task": "add", "args": [1, 1], "task_id": "mine-1"})
        assert got.json()["task_id"] == "mine-1"
    assert q.backend.counts()["queued"] == 1


def test_result_waits_boundedly_and_says_not_done(api: httpx.Client) -> None:
    tid = api.post("/tasks", json={"task": "sleep", "args": [0.1]}).json()["task_id"]  # no worker: stays queued
    t0 = time.monotonic()
    got = api.get(f"/tasks/{tid}/result", params={"wait": 0.5})
    assert got.status_code == 202 and time.monotonic() - t0 >= 0.5
    assert got.json() == {"task_id": tid, "status": "queued", "done": False, "result": None, "error": None}
    assert api.get(f"/tasks/{tid}/result", params={"wait": 31}).status_code == 422
    detail = api.get(f"/tasks/{tid}").json()
    assert detail["waiting_because"] == "no worker is alive to run it"


@pytest.mark.parametrize(("body", "where"), [
    ({}, "body.task"), ({"task": ""}, "body.task"), ({"task": "add", "args": "1 2"}, "body.args"),
    ({"task": "add", "tries": 0}, "body.tries"), ({"task": "add", "time_limit": -1}, "body.time_limit"),
    ({"task": "add", "bogus": 1}, "body.bogus"), ({"task": "x" * 201}, "body.task"),
])
def test_bad_submissions_are_422_json(api: httpx.Client, q: YADTQ, body: dict, where: str) -> None:
    got = api.post("/tasks", json=body)
    assert got.status_code == 422, got.text
    assert got.json()["error"].startswith(f"invalid request: {where}")
    assert sum(q.backend.counts().values()) == 0


def test_malformed_bodies_never_500(api: httpx.Client, q: YADTQ) -> None:
    # A body that is not JSON is a 400 (as the README says); JSON that is not a valid request is a 422.
    for raw in (b"{", b"\xff\xfe", b'{"task": "add", "args": [' * 40, b'{"task": "add"} trailing'):
        got = api.post("/tasks", content=raw, headers={"content-type": "application/json"})
        assert got.status_code == 400, (raw, got.text)
        assert got.json()["error"].startswith("body cannot be parsed: not JSON"), got.text
    for raw in (b"[1,2]", b'"add"', b"null", b'{"task": "add", "args": {"a": 1}}'):
        got = api.post("/tasks", content=raw, headers={"content-type": "application/json"})
        assert got.status_code == 422, (raw, got.text)
        assert got.json()["error"].startswith("invalid request: body"), got.text
    nan = api.post("/tasks", content=b'{"task": "add", "args": [NaN]}', headers={"content-type": "application/json"})
    assert nan.status_code in (400, 422) and "error" in nan.json(), nan.text
    plain = api.post("/tasks", content=b"task=add", headers={"content-type": "text/plain"})
    assert plain.status_code == 400 and "content-type: application/json" in plain.json()["error"], plain.text
    assert api.post("/tasks/batch", content=b"{", headers={"content-type": "application/json"}).status_code == 400
    assert sum(q.backend.counts().values()) == 0
    assert api.get("/nowhere").json() == {"error": "Not Found", "detail": None}
    assert api.delete("/tasks").status_code == 405


def test_unknown_task_is_404_and_states_are_409(api: httpx.Client, procs: Procs) -> None:
    assert api.get("/tasks/nope").status_code == 404
    assert api.post("/tasks/nope/cancel").json()["error"] == "no task with id 'nope'"
    assert api.post("/tasks/nope/requeue").status_code == 404
    procs.worker("W1")
    tid = api.post("/tasks", json={"task": "add", "args": [1, 2]}).json()["task_id"]
    _done(api, tid)
    got = api.post(f"/tasks/{tid}/cancel")
    assert got.status_code == 409 and "only a task that has not finished can be cancelled" in got.json()["error"]
    assert api.post(f"/tasks/{tid}/requeue").status_code == 409


def test_cancel_a_queued_task(api: httpx.Client, q: YADTQ) -> None:
    tid = api.post("/tasks", json={"task": "add", "args": [1, 2]}).json()["task_id"]  # no worker yet
    got = api.post(f"/tasks/{tid}/cancel")
    assert got.status_code == 200 and got.json()["status"] == "cancelled" and got.json()["done"]
    assert api.get(f"/tasks/{tid}/result").json()["status"] == "cancelled"
    assert q.backend.counts() == {"scheduled": 0, "queued": 0, "processing": 0, "success": 0, "failed": 0,
                                  "cancelled": 1, "expired": 0}
    assert "cancelled by api" in api.get(f"/tasks/{tid}").json()["history"][0]["event"]
    assert api.post(f"/tasks/{tid}/cancel").status_code == 409


def test_a_cancelled_task_never_runs(api: httpx.Client, q: YADTQ, procs: Procs) -> None:
    """Needs the engine's claim to treat `cancelled` as finished (the lead's side of issue 13)."""
    tid = api.post("/tasks", json={"task": "add", "args": [1, 2]}).json()["task_id"]
    api.post(f"/tasks/{tid}/cancel")
    # Tasks behind it in every partition (the client publishes round-robin): once they are done,
    # the worker has read past the cancelled one.
    after = api.post("/tasks/batch", json={"tasks": [{"task": "add", "args": [i, 2]} for i in range(8)]})
    procs.worker("W1")
    assert [_done(api, t)["result"] for t in after.json()["task_ids"]] == [i + 2 for i in range(8)]
    rec = q.status(tid)
    assert (rec.status, rec.attempts, rec.result) == ("cancelled", 0, None)


def test_cancel_a_task_waiting_for_its_retry(api: httpx.Client, settings: Settings, q: YADTQ,
                                              procs: Procs) -> None:
    procs.worker("W1", settings=settings.replace(retry_backoff=3.0))
    tid = api.post("/tasks", json={"task": "fail", "args": ["once"], "tries": 3}).json()["task_id"]
    wait_for(lambda: any(text.startswith("retry after error") for _, text in q.backend.events(tid)), 60, 0.05,
             "the first attempt to fail")
    assert api.post(f"/tasks/{tid}/cancel").json()["status"] == "cancelled"

    assert q.redis.zscore(q.backend.keys.retries, tid) is not None  # parked for its retry
    # Once due, the parked retry is dropped rather than published again: the task never runs.
    wait_for(lambda: q.redis.zscore(q.backend.keys.retries, tid) is None, 60, 0.2, "the parked retry to be dropped")
    rec = q.status(tid)
    assert (rec.status, rec.attempts) == ("cancelled", 1)
    assert [e["event"] for e in procs.events("worker-W1") if e.get("task_id") == tid].count("task_started") == 1


def test_requeue_a_failed_task(api: httpx.Client, q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    tid = api.post("/tasks", json={"task": "fail", "args": ["again"], "tries": 1}).json()["task_id"]
    assert _done(api, tid)["status"] == "failed"
    got = api.post(f"/tasks/{tid}/requeue")
    assert got.status_code == 200 and got.json() == {"task_id": tid, "status": "queued"}
    def failed_twice() -> bool:
        runs = [text for _, text in q.backend.events(tid) if text.startswith("failed by W1")]
        return q.status(tid).status == "failed" and len(runs) == 2
    wait_for(failed_twice, 60, 0.1, "the second run to fail")
    assert any(text.startswith("requeued (was failed)") for _, text in q.backend.events(tid))


def test_search_filters_and_cursor_paging(api: httpx.Client, q: YADTQ, procs: Procs) -> None:
    procs.worker("W1")
    adds = q.submit_many([("add", [i, 1]) for i in range(23)])
    fails = [q.submit("fail", [f"disk full {i}"], tries=1) for i in range(3)]
    for tid in adds + fails:
        q.wait(tid, 60)
    page = api.get("/tasks", params={"task": "add", "limit": 10}).json()
    seen = [t["task_id"] for t in page["tasks"]]
    while page["next_cursor"]:
        page = api.get("/tasks", params={"task": "add", "limit": 10, "cursor": page["next_cursor"]}).json()
        seen += [t["task_id"] for t in page["tasks"]]
    assert sorted(seen) == sorted(adds) and len(seen) == len(set(seen))
    got = api.get("/tasks", params={"error": "DISK FULL", "status": ["failed"]}).json()["tasks"]
    assert sorted(t["task_id"] for t in got) == sorted(fails)
    assert api.get("/tasks", params={"worker": "W1", "status": "success", "limit": 500}).json()["tasks"].__len__() == 23
    assert api.get("/tasks", params={"worker": "W9"}).json() == {"tasks": [], "next_cursor": None, "scanned": 26}
    future = time.time() + 3600
    assert api.get("/tasks", params={"since": future}).json()["tasks"] == []
    every = api.get("/tasks", params={"limit": 500}).json()["tasks"]
    assert [t["finished"] for t in every] == sorted((t["finished"] for t in every), reverse=True)
    middle = sorted(t["finished"] for t in every)[13]
    until = api.get("/tasks", params={"until": middle, "limit": 500}).json()["tasks"]
    assert sorted(t["task_id"] for t in until) == sorted(t["task_id"] for t in every if t["finished"] <= middle)
    # A tight budget gives a partial page and a cursor to go on.
    part = api.get("/tasks", params={"task": "fail", "budget": 2}).json()
    assert part["scanned"] == 2 and part["next_cursor"]
    assert api.get("/tasks", params={"since": 10, "until": 5}).json() == {"tasks": [], "next_cursor": None,
                                                                            "scanned": 0}
    for bad in ({"status": "weird"}, {"cursor": "!!"}, {"limit": 0}, {"since": "nan"}, {"until": "inf"}):
        got = api.get("/tasks", params=bad)
        assert got.status_code == 422, (bad, got.text)


def test_workers_partitions_failures_stats_and_metrics(api: httpx.Client, q: YADTQ, procs: Procs) -> None:
    procs.monitor()
    procs.worker("W1")
    ids = [*q.submit_many([("add", [i, 1]) for i in range(10)]), q.submit("fail", ["x"], tries=2)]
    for tid in ids:
        q.wait(tid, 60)
    wait_for(lambda: [w for w in api.get("/workers").json() if w["status"] == "ALIVE" and len(w["partitions"]) == 4],
             30, 0.2, "W1 alive with its partitions")
    w = api.get("/workers").json()[0]
    assert (w["name"], w["done"], w["failed"]) == ("W1", 10, 1) and w["partitions"] == [0, 1, 2, 3]
    parts = api.get("/partitions").json()
    assert [p["partition"] for p in parts] == [0, 1, 2, 3] and {p["owner"] for p in parts} == {"W1"}
    assert all(p["committed"] is not None and p["in_broker"] is None for p in parts)  # embedded broker: no lag
    stats = api.get("/stats", params={"window": 600}).json()
    rows = {r["task"]: r for r in stats["types"]}
    assert rows["add"]["finished"] == 10 and rows["add"]["success_rate"] == 1.0
    assert rows["fail"]["failed"] == 1 and rows["fail"]["success_rate"] == 0.0
    assert rows["add"]["run_p95"] >= rows["add"]["run_p50"] >= 0 and stats["complete"]
    assert api.get("/failures").json() == []
    assert [d["task_id"] for d in api.get("/dead-letters").json()] == [ids[-1]]
    assert "yadtq_dead_letters 1.0" in api.get("/metrics").text
    first = api.get("/metrics").text
    assert 'yadtq_tasks{status="success"} 10.0' in first and 'yadtq_workers{status="ALIVE"} 1.0' in first
    assert 'yadtq_worker_tasks_succeeded_total{worker="W1"} 10.0' in first
    # Counters and histograms count what finished since the API started (the fixture started it first).
    later = [q.submit("add", [1, i]) for i in range(3)]
    for tid in later:
        q.wait(tid, 60)
    text = api.get("/metrics").text
    assert 'yadtq_tasks_finished_total{status="success",task="add"} 13.0' in text
    assert 'yadtq_tasks_finished_total{status="failed",task="fail"} 1.0' in text
    assert 'yadtq_task_retries_total{task="fail"} 1.0' in text
    assert 'yadtq_task_run_seconds_count{task="add"} 13.0' in text
    assert re.search(r'yadtq_task_queue_wait_seconds_bucket\{le="\+Inf",task="add"\} 13\.0', text)
    assert 'yadtq_partition_buffered_tasks{owner="W1",partition="0"}' in text
    procs.kill9("W1")
    wait_for(lambda: api.get("/failures").json(), 30, 0.2, "W1 declared dead")
    assert 'yadtq_worker_deaths_recorded 1.0' in api.get("/metrics").text


def test_backlog_counts_records_past_the_committed_position(settings: Settings, q: YADTQ) -> None:
    backlog = Backlog(settings)
    try:
        for i in range(6):
            q.submit("add", [i, i])  # one record per produce: offsets the embedded broker reports rightly
        ends = backlog.end_offsets()
        assert ends is not None and sorted(ends) == [0, 1, 2, 3] and sum(ends.values()) == 6
        owner = {"name": "W1", "status": "ALIVE", "state": "busy", "partitions": [0, 1],
                 "partition_state": [{"partition": 0, "committed": 0, "buffered": 1, "running": 0, "paused": False,
                                      "waiting": {"no_slot": 1}}]}
        rows = search.partitions([owner], ends)
        assert [(r["partition"], r["owner"], r["in_broker"]) for r in rows] == [
            (0, "W1", ends[0] - 1), (1, "W1", None), (2, None, None), (3, None, None)]
        assert rows[2]["why"] == "no live worker owns it" and "every slot" in rows[0]["why"]
    finally:
        backlog.close()
    assert Backlog(settings.replace(kafka_bootstrap="127.0.0.1:1")).end_offsets() is None


def test_health_says_when_the_workers_are_still_joining(api: httpx.Client, q: YADTQ) -> None:
    assert api.get("/health").json()["waiting"] is None  # no registry yet: nothing to tell
    q.live.put_worker("W1", {"name": "W1", "status": "ALIVE", "state": "joining", "partitions": []})
    assert "workers are joining the group (W1)" in api.get("/health").json()["waiting"]
    q.live.put_worker("W1", {"name": "W1", "status": "ALIVE", "state": "idle", "partitions": [0]})
    assert api.get("/health").json()["waiting"] is None


def test_worker_commands_go_over_the_control_channel(api: httpx.Client, q: YADTQ) -> None:
    q.live.put_worker("ghost", {"name": "ghost", "status": "ALIVE", "last_heartbeat": time.time()})
    assert api.post("/workers/ghost/pause").json() == {"worker": "ghost", "command": "pause", "queued": True}
    assert api.post("/workers/ghost/resume").status_code == 202
    assert take_commands(q.redis, q.live.keys, "ghost") == ["pause", "resume"]
    assert api.post("/workers/ghost/explode").status_code == 404
    assert api.post("/workers/nobody/stop").status_code == 404


def test_yadtq_api_process_with_a_token(settings: Settings, procs: Procs) -> None:
    port = free_port()
    s = settings.replace(api_token="s3cret", api_address=f"127.0.0.1:{port}")
    proc = procs.start("api", "api", settings=s)
    wait_for(lambda: answers("127.0.0.1", port) or proc.poll() is not None, 60, 0.1, "the API to listen")
    assert proc.poll() is None, procs.output("api")
    base = f"http://127.0.0.1:{port}"
    assert httpx.get(f"{base}/health").json() == {"status": "ok", "redis": True, "auth": True, "waiting": None}
    denied = httpx.post(f"{base}/tasks", json={"task": "add", "args": [1, 2]})
    assert denied.status_code == 401 and denied.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{base}/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 401
    ok = httpx.post(f"{base}/tasks", json={"task": "add", "args": [1, 2]}, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 201
    assert "/tasks/{task_id}/cancel" in httpx.get(f"{base}/openapi.json").json()["paths"]
    assert httpx.get(f"{base}/docs").status_code == 200
    assert "bearer token required" in procs.output("api")


def test_yadtq_api_says_it_stays_on_loopback(settings: Settings, procs: Procs) -> None:
    port = free_port()
    proc = procs.start("api", "api", "--address", f"0.0.0.0:{port}", settings=settings)
    banner = f"YADTQ API on http://127.0.0.1:{port} (no token (loopback only))"
    wait_for(lambda: banner in procs.output("api") or proc.poll() is not None, 60, 0.1, "the API to start")
    assert proc.poll() is None, procs.output("api")
    assert f"listens on 127.0.0.1:{port} only" in procs.output("api")
    assert answers("127.0.0.1", port)
