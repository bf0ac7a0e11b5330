"""A property-based run of the API's OpenAPI schema (schemathesis): no 5xx, every response as documented.

It runs against the real app, Redis and broker, served by uvicorn, with and
without a bearer token. Hypothesis draws a bounded number of requests per
operation (schemathesis' pytest plugin does not load under this pytest, so the
operations are walked here), valid requests and invalid ones, which keeps the whole run well under two minutes.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from conftest import serve_api
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hsettings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.errors import Unsatisfiable
from schemathesis import checks
from schemathesis.generation import GenerationMode

from yadtq.client.client import YADTQ
from yadtq.config import Settings

EXAMPLES = 20
# With a token, the same derandomized requests again (the same seed: about the first few of the run
# without one) with the bearer header: a few per operation show that each accepts it and answers as
# documented; the responses themselves are what the run without a token samples 20 times over.
EXAMPLES_WITH_TOKEN = 5


# One lane: what is checked is the HTTP layer (status codes, bodies against the schema, no 5xx); the
# broker only receives the records POST /tasks publishes, and answers the same on both. Submitting over
# the API on each broker is test_api.py's, which runs on both.
@pytest.mark.brokers("embedded")
@pytest.mark.parametrize("token", ["", "t0ken"])
def test_every_operation_keeps_its_schema(settings: Settings, token: str, tmp_path: Path) -> None:
    set_hypothesis_home_dir(str(tmp_path / "hypothesis"))  # not a .hypothesis/ in the work tree
    s = settings.replace(api_token=token)
    headers = {"Authorization": f"Bearer {token}"} if token else None
    with YADTQ(s) as q, serve_api(s, q, headers) as api:
        schema = schemathesis.openapi.from_url(f"{api.base_url}/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 15
        ran = 0
        # Invalid requests run without a token: with one, a case that drops the header to be invalid
        # would get it back from `headers` (the token run checks auth and responses).
        modes = (GenerationMode.POSITIVE,) if token else (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        for operation, mode in itertools.product(operations, modes):
            @given(case=operation.as_strategy(mode))
            # No shrinking: a failure is reported at once, schemathesis naming the offending part and a curl
            # line (shrinking it, one HTTP call a step, ran into the 300 s timeout, which then hid the failure).
            @hsettings(max_examples=EXAMPLES_WITH_TOKEN if token else EXAMPLES, deadline=None, derandomize=True,
                       database=None, phases=[Phase.explicit, Phase.generate],
                       suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
            def holds(case: Any) -> None:
                if case.query and isinstance(case.query.get("wait"), (int, float)):
                    case.query["wait"] = min(case.query["wait"], 0.2)  # the long-poll's bound has its own test
                if case.query and isinstance(case.query.get("timeout"), (int, float)):
                    # The event stream of a task drawn by id (POST /tasks takes the id: "0" exists) stays open
                    # until its `timeout`, no worker runs it: up to ~40 s of waiting in all. Still a timeout.
                    case.query["timeout"] = min(case.query["timeout"], 0.2)
                # Every check but positive-data acceptance: an opaque cursor that is not one of ours
                # is rightly a 422, though any string fits its schema.
                case.call_and_validate(headers=headers, excluded_checks=[checks.positive_data_acceptance])

            try:
                holds()
                ran += 1
            except Unsatisfiable:
                # No invalid request exists for an operation without inputs (GET /health).
                assert mode is GenerationMode.NEGATIVE, operation.label
        # Every operation, and invalid requests of those with inputs.
        assert ran >= len(operations) + (0 if token else 10)
