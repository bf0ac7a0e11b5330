"""Secrets never printed: configuration errors name the setting, not its value;
every URL shown is redacted. Run through the real `yadtq` command."""

from __future__ import annotations

import pytest
from conftest import run_cli

from yadtq.config import Settings
from yadtq.errors import RET_CONNECT, RET_USAGE
from yadtq.ops.ports import free_port

SECRET = "hunter2-s3cret"


@pytest.mark.parametrize("options", [
    '{"sasl_plain_password": "' + SECRET + '",',  # malformed JSON
    '["' + SECRET + '"]',  # not an object
    '{"sasl_plain_passwrd": "' + SECRET + '"}',  # unknown option
    '{"security_protocol": "' + SECRET + '"}',  # a value kafka-python lets through
    '{"sasl_mechanism": "PLAIN", "security_protocol": "SASL_PLAINTEXT", "sasl_plain_username": "u", '
    '"sasl_plain_password": "' + SECRET + '"}',  # valid, but the broker does not speak SASL
])
def test_kafka_options_errors_never_show_their_values(settings: Settings, options: str) -> None:
    out = run_cli(settings, "submit", "add", "1", "2", env={"YADTQ_KAFKA_OPTIONS": options}, timeout=90)
    assert SECRET not in out.stdout + out.stderr
    assert out.returncode == 0 or out.stderr.startswith("yadtq: error:"), out.stderr


@pytest.mark.parametrize(("url", "code", "shown"), [
    (f"redis://:{SECRET}@127.0.0.1:{{port}}/0", RET_CONNECT, "cannot reach Redis at redis://***@127.0.0.1:{port}/0"),
    (f"redis://user:{SECRET}@127.0.0.1:{{port}}/0", RET_CONNECT, "at redis://***@127.0.0.1:{port}/0"),
    (f"redis://:{SECRET}@127.0.0.1:notaport/0", RET_USAGE, "YADTQ_REDIS_URL is not a valid Redis URL"),
    (SECRET, RET_USAGE, "YADTQ_REDIS_URL is not a valid Redis URL"),
])
def test_redis_url_errors_never_show_its_password(settings: Settings, url: str, code: int, shown: str) -> None:
    port = free_port()
    out = run_cli(settings, "tasks", env={"YADTQ_REDIS_URL": url.format(port=port)})
    assert out.returncode == code, out
    assert SECRET not in out.stdout + out.stderr
    assert shown.format(port=port) in out.stderr


@pytest.mark.parametrize(("var", "value", "message"), [
    ("YADTQ_PARTITIONS", SECRET, "YADTQ_PARTITIONS must be an integer"),
    ("YADTQ_DEAD_AFTER", SECRET, "YADTQ_DEAD_AFTER must be a number"),
])
def test_bad_numbers_name_the_setting(settings: Settings, var: str, value: str, message: str) -> None:
    out = run_cli(settings, "tasks", env={var: value})
    assert out.returncode == RET_USAGE and message in out.stderr and SECRET not in out.stderr
