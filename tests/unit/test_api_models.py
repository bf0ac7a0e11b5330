"""The HTTP API's request models take exactly what their schema says (the schemathesis run's
negative cases, in memory)."""

from __future__ import annotations

import pydantic
import pytest

from yadtq.api.models import SubmitRequest


@pytest.mark.parametrize("field", ["eta", "expires"])
def test_a_time_is_a_number_or_a_string_never_a_boolean(field: str) -> None:
    with pytest.raises(pydantic.ValidationError):
        SubmitRequest.model_validate_json(f'{{"task": "add", "{field}": true}}')
    assert getattr(SubmitRequest.model_validate_json(f'{{"task": "add", "{field}": 5}}'), field) == 5.0
    assert getattr(SubmitRequest.model_validate_json(f'{{"task": "add", "{field}": "2026-12-03T10:00:00"}}'),
                   field) == "2026-12-03T10:00:00"
