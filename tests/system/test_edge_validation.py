"""Validation at the edge (issue 20, item 3): workers announce the tasks they serve with their
signatures; the client, the CLI and the API refuse a call no live worker would run before it is
published, unless the caller says unchecked. Real broker, Redis and worker processes."""

from __future__ import annotations

import signal

import httpx
import pytest
from conftest import Procs, run_cli, serve_api, wait_for

from yadtq.client.client import YADTQ
from yadtq.config import Settings
from yadtq.errors import SubmissionRefused
from yadtq.store.served import announce, live_served, withdraw
from yadtq.store.worker_names import claim_worker_name, release_worker_name
from yadtq.task.modules import load_task_modules
from yadtq.task.registry import registry
from yadtq.task.signatures import check_call, signature_text, specs_of

ADD = "add(a: float, b: float)"


def _served(q: YADTQ) -> dict:
    return live_served(q.redis, q.backend.keys)


def test_a_signature_round_trips_and_checks_as_the_worker_does() -> None:
    load_task_modules([])
    specs = specs_of(registry)
    assert signature_text("add", specs["add"]) == ADD
    assert signature_text("fail", specs["fail"]) == "fail(message: str = ...)"
    check_call("add", specs["add"], [1, 2.5], {})
    check_call("add", specs["add"], [], {"a": 1, "b": 2})
    for args, kwargs, why in (([1], {}, "missing a required argument: 'b'"), ([1, 2, 3], {}, "too many positional"),
                              ([1, "x"], {}, "argument 'b' must be float, got str 'x'"),
                              ([1, 2], {"c": 3}, "unexpected keyword argument 'c'")):
        with pytest.raises(Exception, match=f"^{ADD.replace('(', '[(]').replace(')', '[)]')}: .*{why}"):
            check_call("add", specs["add"], args, kwargs)
    check_call("x", {"params": [{"name": "a", "kind": "from-the-future"}]}, [1, 2, 3], {})  # unreadable: passes


def test_the_client_checks_against_live_announcements_only(settings: Settings, q: YADTQ) -> None:
    load_task_modules([])
    keys = q.backend.keys
    q.submit("teleport", [1])  # nobody announced: nothing to check against
    assert claim_worker_name(q.redis, keys, "Wfake", "Wfake:1", 30)
    announce(q.redis, keys, "Wfake", "Wfake:1", specs_of(registry))
    q.edge.ttl = 0  # read the announcements afresh at each call
    with pytest.raises(SubmissionRefused, match="no live worker serves task 'ad'; did you mean 'add'"):
        q.submit("ad", [1, 2])
    with pytest.raises(SubmissionRefused, match=r"bad arguments for add\(a: float, b: float\): missing .* 'b'"):
        q.submit("add", [1])
    with pytest.raises(SubmissionRefused):
        q.submit_many([("add", [1, 2]), ("add", [1, 2, 3])])  # all or nothing
    assert q.backend.counts()["queued"] == 1  # only the first, unchecked-by-absence one
    q.submit("add", [1, 2])
    q.submit("teleport", [1], unchecked=True)
    q.submit_many([("teleport", [1])], unchecked=True)
    # A worker whose lease is gone stops counting (and its entry is dropped); a clean stop withdraws at once.
    release_worker_name(q.redis, keys, "Wfake", "Wfake:1")
    assert _served(q) == {} and q.redis.hlen(f"{keys.prefix}served") == 0
    q.submit("ad", [1, 2])
    assert claim_worker_name(q.redis, keys, "Wfake", "Wfake:2", 30)
    announce(q.redis, keys, "Wfake", "Wfake:2", specs_of(registry))
    assert set(_served(q)) == {"Wfake"}
    withdraw(q.redis, keys, "Wfake", "Wfake:1")  # an older incarnation's withdrawal leaves it
    assert set(_served(q)) == {"Wfake"}
    withdraw(q.redis, keys, "Wfake", "Wfake:2")
    assert _served(q) == {}


def test_cli_and_api_refuse_what_no_live_worker_runs(settings: Settings, q: YADTQ, procs: Procs) -> None:
    w1 = procs.worker("W1", "--tasks", "ledger_tasks")
    wait_for(lambda: "ledger_add" in _served(q).get("W1", {}), 30, 0.1, "W1 to announce its tasks")
    arity = run_cli(settings, "submit", "add", "1")
    assert arity.returncode == 2 and arity.stdout == "", arity
    assert f"bad arguments for {ADD}: missing a required argument: 'b'; nothing sent" in arity.stderr
    typo = run_cli(settings, "submit", "ledger_ad", "1", "2")
    assert typo.returncode == 2 and "did you mean 'ledger_add'?" in typo.stderr, typo
    assert "--unchecked sends it anyway" in typo.stderr
    assert q.backend.counts()["queued"] == 0
    anyway = run_cli(settings, "submit", "add", "1", "--unchecked", "--wait", "--timeout", "60")
    assert anyway.returncode == 4 and "missing a required argument" in anyway.stdout, anyway  # the worker refuses
    ok = run_cli(settings, "submit", "ledger_add", "1", "2", "0", "--wait", "--timeout", "60")
    assert ok.returncode == 0, ok

    with serve_api(settings, q) as api:
        assert isinstance(api, httpx.Client)
        got = api.post("/tasks", json={"task": "ad", "args": [1, 2]})
        assert got.status_code == 422 and "did you mean 'add'" in got.json()["error"], got.text
        assert got.json()["error"].endswith('nothing sent ("unchecked": true sends it anyway)')
        got = api.post("/tasks", json={"task": "add", "args": [1]})
        assert got.status_code == 422 and ADD in got.json()["error"], got.text
        batch = api.post("/tasks/batch", json={"tasks": [{"task": "add", "args": [1, 2]}, {"task": "nope"}]})
        assert batch.status_code == 422
        assert api.post("/tasks", json={"task": "nope", "unchecked": True}).status_code == 201
    # W1 stops cleanly: it withdraws, and with no live announcement nothing is refused.
    w1.send_signal(signal.SIGTERM)
    assert w1.wait(timeout=60) == 0
    assert _served(q) == {}
    assert run_cli(settings, "submit", "add", "1").returncode == 0
