"""countdown / eta / expires: read and checked once (yadtq.task.timing), the same from Python and JSON."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from yadtq.errors import MessageError
from yadtq.task.messages import TaskMessage, decode
from yadtq.task.timing import NO_TIMING, Timing

EPOCH = 1_800_000_000.0


def test_countdown_and_relative_expiry_stay_relative_for_redis_to_resolve() -> None:
    t = Timing.of(countdown=5, expires=30)
    assert (t.eta, t.countdown, t.expires_at, t.expires) == (None, 5.0, None, 30.0)
    assert t.delayed and t.lua_args() == ["", "5.0", "", "30.0"]
    assert not Timing.of(countdown=0).delayed and Timing.of().empty


@pytest.mark.parametrize("eta", [EPOCH, int(EPOCH), datetime.fromtimestamp(EPOCH, timezone.utc),
                                 datetime.fromtimestamp(EPOCH, timezone.utc).replace(tzinfo=None),
                                 "2027-01-15T08:00:00Z", "2027-01-15T08:00:00+00:00", "2027-01-15T08:00:00"])
def test_eta_is_a_datetime_epoch_seconds_or_iso_text_naive_meaning_utc(eta: object) -> None:
    t = Timing.of(eta=eta)  # type: ignore[arg-type]
    assert t.eta == EPOCH and t.delayed  # 2027-01-15T08:00:00Z


def test_a_datetime_in_another_zone_is_the_same_instant() -> None:
    paris = datetime.fromtimestamp(EPOCH, timezone(timedelta(hours=1)))
    assert Timing.of(eta=paris, expires=paris).eta == EPOCH
    assert Timing.of(expires=paris).expires_at == EPOCH


@pytest.mark.parametrize(("options", "words"), [
    ({"countdown": 5, "eta": EPOCH}, "not both"),
    ({"countdown": -1}, "countdown"),
    ({"countdown": float("nan")}, "countdown"),
    ({"countdown": True}, "countdown"),
    ({"countdown": "5"}, "countdown"),
    ({"countdown": 10 ** 9}, "countdown"),
    ({"expires": 0}, "expires"),
    ({"expires": -3}, "expires"),
    ({"eta": 60}, "not an absolute time"),
    ({"eta": "tomorrow"}, "ISO-8601"),
    ({"eta": [1]}, "eta"),
])
def test_bad_options_are_refused_with_what_is_wrong(options: dict[str, object], words: str) -> None:
    with pytest.raises(MessageError, match=words):
        Timing.of(**options)  # type: ignore[arg-type]


def test_seed_format_fields_are_read_and_a_message_round_trips() -> None:
    raw = json.dumps({"task-id": "t1", "task": "add", "args": [1, 2], "countdown": 3, "expires": 60}).encode()
    m = decode(raw, 10_000)
    assert isinstance(m, TaskMessage) and m.timing == Timing(countdown=3.0, expires=60.0)
    sent = TaskMessage("t2", "add", (1,), timing=Timing(eta=EPOCH, expires_at=EPOCH + 60))
    back = decode(sent.encode(), 10_000)
    assert isinstance(back, TaskMessage) and back.timing == sent.timing
    assert b'"expires-at"' in sent.encode() and b"countdown" not in sent.encode()
    assert decode(b'{"task-id": "t3", "task": "add", "eta": "2027-01-15T08:00:00Z"}', 10_000).timing.eta == EPOCH  # type: ignore[union-attr]
    plain = TaskMessage("t4", "add")
    assert plain.timing is NO_TIMING and b"eta" not in plain.encode()


@pytest.mark.parametrize("body", [{"countdown": -1}, {"eta": "soon"}, {"expires": "x"}, {"eta": 1, "countdown": 1},
                                  {"expires": 5, "expires-at": EPOCH}])
def test_a_bad_seed_field_is_a_message_error_with_the_task_id(body: dict[str, object]) -> None:
    raw = json.dumps({"task-id": "bad1", "task": "add", **body}).encode()
    with pytest.raises(MessageError) as err:
        decode(raw, 10_000)
    assert err.value.task_id == "bad1"  # type: ignore[attr-defined]

