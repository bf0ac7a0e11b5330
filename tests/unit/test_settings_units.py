"""Settings that guard the outside: the API's bind address and the redaction of secrets."""

from __future__ import annotations

import pytest

from yadtq.api import bind_address
from yadtq.config import Settings, redact_options
from yadtq.errors import BackendUnavailable, BrokerUnavailable, ConfigError
from yadtq.redaction import redact_url

SECRET = "hunter2-s3cret"


def test_bind_address_is_loopback_without_a_token() -> None:
    host, port, warning = bind_address(Settings(api_address="0.0.0.0:8123"))
    assert (host, port) == ("127.0.0.1", 8123) and "no YADTQ_API_TOKEN" in (warning or "")
    assert bind_address(Settings(api_address="0.0.0.0:8123", api_token="t")) == ("0.0.0.0", 8123, None)
    assert bind_address(Settings(api_address="[::1]:80")) == ("::1", 80, None)
    for bad in ("8000", "host:", "h:99999", ":80"):
        with pytest.raises(ConfigError):
            bind_address(Settings(api_address=bad))


def test_one_redaction_for_every_url_and_secret() -> None:
    assert redact_url(f"rediss://admin:{SECRET}@cache.example:6380/2") == "rediss://***@cache.example:6380/2"
    assert redact_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert redact_url(f"u:{SECRET}@k1:9092,k2:9092") == "***@k1:9092,k2:9092"
    assert redact_options({"sasl_plain_password": SECRET, "ssl_keyfile_password": SECRET, "acks": 1}) == {
        "sasl_plain_password": "***", "ssl_keyfile_password": "***", "acks": 1}
    s = Settings(redis_url=f"redis://:{SECRET}@h/0", kafka_options={"sasl_plain_password": SECRET},
                 control_token=SECRET, api_token=SECRET, dashboard_password=SECRET)
    assert SECRET not in repr(s) and SECRET not in str(s.redacted())
    assert SECRET not in str(BackendUnavailable(s.redis_url, "down"))
    assert SECRET not in str(BrokerUnavailable(f"u:{SECRET}@k1:9092", "down"))
