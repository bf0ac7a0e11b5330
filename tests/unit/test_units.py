"""Pure units: messages, settings, the registry, the assignor."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT

from yadtq.broker.assignor import plan_topic
from yadtq.client.line_producer import _value
from yadtq.config import Settings
from yadtq.errors import ConfigError, MessageError, TaskArgumentError, UnknownTask
from yadtq.task.messages import ControlMessage, TaskMessage, decode
from yadtq.task.registry import Registry


def test_seed_message_decodes() -> None:
    m = decode(b'{"task-id": "d5750c0e-ed82", "task": "add", "args": [1, 2]}', 1000)
    assert m == TaskMessage("d5750c0e-ed82", "add", (1, 2))
    assert json.loads(m.encode()) == {"task-id": "d5750c0e-ed82", "task": "add", "args": [1, 2]}


@pytest.mark.parametrize("raw, reason, task_id", [
    (b"\xff\xfe garbage", "not JSON", None),
    (b"[1, 2]", "expected a JSON object", None),
    (b'{"task": "add", "args": [1]}', "task-id", None),
    (b'{"task-id": "x1", "args": [1]}', "'task'", "x1"),
    (b'{"task-id": "x2", "task": "add", "args": "12"}', "'args' must be a JSON array", "x2"),
    (b'{"task-id": "x3", "task": "add", "tries": 0}', "'tries'", "x3"),
    (b'{"control": "reboot"}', "unknown control", None),
    (None, "empty message", None),
])
def test_bad_messages_raise_one_named_error(raw: bytes | None, reason: str, task_id: str | None) -> None:
    with pytest.raises(MessageError, match=reason) as info:
        decode(raw, 1000)
    assert info.value.task_id == task_id


def test_oversized_message_keeps_its_id() -> None:
    raw = json.dumps({"task-id": "big-1", "task": "add", "args": ["x" * 5000]}).encode()
    with pytest.raises(MessageError, match="exceeds the limit") as info:
        decode(raw, 1000)
    assert info.value.task_id == "big-1"


def test_control_message_roundtrip() -> None:
    assert decode(ControlMessage("end", "e1").encode(), 100) == ControlMessage("end", "e1")


def test_settings_from_env_and_overrides() -> None:
    s = Settings.from_env({"YADTQ_TOPIC": "jobs", "YADTQ_PARTITIONS": "8", "YADTQ_DEAD_AFTER": "2.5",
                           "YADTQ_KAFKA_OPTIONS": '{"security_protocol": "SSL"}'}, partitions=6)
    assert (s.topic, s.partitions, s.dead_after, dict(s.kafka_options)) == ("jobs", 6, 2.5, {"security_protocol": "SSL"})
    assert Settings.from_env(s.env()) == s


@pytest.mark.parametrize("env, message", [
    ({"YADTQ_PARTITIONS": "four"}, "YADTQ_PARTITIONS"),
    ({"YADTQ_TRIES": "0"}, "tries must be positive"),
    ({"YADTQ_KAFKA_OPTIONS": "[1]"}, "JSON object"),
])
def test_bad_settings_are_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


def test_registry_checks_arguments() -> None:
    reg = Registry()

    @reg.task("mul", tries=2)
    def mul(a: int, b: float, *rest: int, scale: float = 1.0) -> float:
        return a * b * scale

    t = reg.get("mul")
    t.check_args([2, 3.5, 1, 2], {"scale": 2})
    with pytest.raises(TaskArgumentError, match="missing a required argument"):
        t.check_args([2], {})
    with pytest.raises(TaskArgumentError, match="'a' must be int, got float"):
        t.check_args([2.5, 1], {})
    with pytest.raises(TaskArgumentError, match="'rest' must be int"):
        t.check_args([1, 1, "x"], {})
    with pytest.raises(TaskArgumentError, match="must be int, got bool"):
        t.check_args([True, 1], {})
    with pytest.raises(TaskArgumentError, match="unexpected keyword"):
        t.check_args([1, 1], {"nope": 1})
    with pytest.raises(UnknownTask, match="'div'"):
        reg.get("div")
    with pytest.raises(ConfigError, match="registered twice"):
        reg.register(lambda: None, "mul")
    assert reg.describe("mul") == [("a", "int"), ("b", "float"), ("*rest", "int"), ("scale", "float")]


def test_shorthand_values() -> None:
    assert [_value(w) for w in ["1", "2.5", "x", '"y"', "[1,2]", "true"]] == [1, 2.5, "x", "y", [1, 2], True]


def _members(**kinds: tuple[bool, list[int]]) -> dict[str, dict]:
    return {m: {"standby": sb, "owned": [("t", p) for p in owned]} for m, (sb, owned) in kinds.items()}


def test_assignor_fresh_group_skips_standby() -> None:
    plan = plan_topic("t", list(range(4)), _members(a=(False, []), b=(False, []), s=(True, [])))
    assert plan == {"a": [0, 2], "b": [1, 3], "s": []}


def test_assignor_hands_orphans_to_standby_and_back() -> None:
    # worker c died holding 4 and 5: they go to the standby, a and b keep theirs
    after_death = plan_topic("t", list(range(6)), _members(a=(False, [0, 1]), b=(False, [2, 3]), s=(True, [])))
    assert after_death == {"a": [0, 1], "b": [2, 3], "s": [4, 5]}
    # c comes back: it takes its share from the standby
    back = plan_topic("t", list(range(6)), _members(a=(False, [0, 1]), b=(False, [2, 3]), s=(True, [4, 5]),
                                                     c=(False, [])))
    assert back == {"a": [0, 1], "b": [2, 3], "c": [4, 5], "s": []}


def test_assignor_without_standby_balances_orphans() -> None:
    plan = plan_topic("t", list(range(6)), _members(a=(False, [0, 1]), b=(False, [2, 3])))
    assert sorted(plan["a"] + plan["b"]) == list(range(6)) and abs(len(plan["a"]) - len(plan["b"])) <= 0


def test_assignor_standby_alone_takes_all() -> None:
    assert plan_topic("t", [0, 1, 2], _members(s=(True, []))) == {"s": [0, 1, 2]}


def test_assignor_gives_a_joining_worker_its_share() -> None:
    # 4 partitions held 2/2; a third member joins: it gets one, nobody holds more than 2
    plan = plan_topic("t", list(range(4)), _members(a=(False, [0, 1]), b=(False, [2, 3]), c=(False, [])))
    assert sorted(len(v) for v in plan.values()) == [1, 1, 2] and len(plan["c"]) == 1
    assert sorted(p for v in plan.values() for p in v) == [0, 1, 2, 3]
    # 8 partitions over 3: 3/3/2, the newcomer takes 2 and the others keep 3 of what they held
    plan = plan_topic("t", list(range(8)), _members(a=(False, [0, 1, 2, 3]), b=(False, [4, 5, 6, 7]), c=(False, [])))
    assert len(plan["c"]) == 2 and set(plan["a"]) <= {0, 1, 2, 3} and set(plan["b"]) <= {4, 5, 6, 7}


def test_the_readmes_python_examples_compile_and_their_imports_exist() -> None:
    """A user copies these: every `from yadtq... import` line in them must work as written."""
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert blocks
    for block in blocks:
        compile(block, "README.md", "exec")
        for line in block.splitlines():
            if line.startswith(("from yadtq", "import yadtq")):
                exec(line.split("#")[0], {})


def test_chaos_judge_tells_a_completed_run_repeated_from_a_cut_off_run_and_a_retry() -> None:
    from worker_farm.chaos import judge

    ledger = [("done-twice", 10, 1), ("raised", 10, 1), ("cut", 12, 1),
              ("done-twice", 11, 2), ("raised", 11, 2), ("cut", 13, 2)]
    ended = {("done-twice", 10, 1): 100.0, ("done-twice", 11, 2): 101.0, ("raised", 11, 2): 101.0,
             ("cut", 13, 2): 102.0}  # "raised" by pid 10 never returned; "cut" by 12 was killed mid-run
    ids = ["done-twice", "raised", "cut"]
    report = judge(ids, set(ids), {"success": 3}, ledger, [(99.0, "W3", 12)], 10.0, slots=4, ended=ended)
    assert report.lost == 0
    assert report.run_twice_after_completion == 1 and "done-twice" in report.unexplained[0]
    assert report.retries_after_failure == 1
    assert report.reruns_after_midrun_kill == 1
    # With the stored outcomes known: a killed process's run is cut off only if its outcome was not stored.
    late = [("slow-store", 12, 1), ("slow-store", 13, 2)]
    ended = {("slow-store", 12, 1): 90.0, ("slow-store", 13, 2): 100.0}  # ended 9 s before the kill
    report = judge(["slow-store"], {"slow-store"}, {"success": 1}, late, [(99.0, "W3", 12)], 10.0, slots=4,
                   ended=ended, stored=set())
    assert report.run_twice_after_completion == 0 and report.reruns_after_midrun_kill == 1
    report = judge(["slow-store"], {"slow-store"}, {"success": 1}, late, [(99.0, "W3", 12)], 10.0, slots=4,
                   ended=ended, stored={("slow-store", 12, 1)})
    assert report.run_twice_after_completion == 1
    # A run that wrote its end, then raised (the end's reply lost to a Redis restart) and was stored as a
    # retry, by a process killed later: the next run is the retry policy's, once the judge knows the retries.
    report = judge(["slow-store"], {"slow-store"}, {"success": 1}, late, [(99.0, "W3", 12)], 10.0, slots=4,
                   ended=ended, stored={("slow-store", 12, 1)}, retried={("slow-store", 12, 1)})
    assert report.run_twice_after_completion == 0 and report.retries_after_failure == 1


def test_submit_takes_a_result_ttl_and_settings_keep_a_day_and_a_week_by_default() -> None:
    from yadtq.cli.parser import build_parser
    args = build_parser().parse_args(["submit", "add", "1", "2", "--result-ttl", "3600"])
    assert args.task_result_ttl == 3600.0
    s = Settings()
    assert (s.result_ttl, s.failed_ttl) == (86_400.0, 7 * 86_400.0)
    assert Settings.from_env({"YADTQ_FAILED_TTL": "0"}).failed_ttl == 0.0  # 0: forever
    with pytest.raises(ConfigError):
        Settings(failed_ttl=-1)
