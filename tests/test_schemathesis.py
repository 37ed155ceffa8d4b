"""Schemathesis against the live app, from the document it serves.

Every documented operation gets schema-driven requests (valid and invalid:
random paths, queries, multipart bodies with random bytes as files, wrong
content types) and every answer must be documented: no 500, a documented
status, JSON, a body and headers that match the document. Random bytes are
never a decodable image, so the registrar answers them with 400 or 422
envelopes, which the document covers.

Bounded for CI: a few dozen examples per operation, no deadline, and
derandomized when the CI environment variable is set.
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks

from moontrek.app import create_app

CI = bool(os.environ.get("CI"))
#: Examples per operation; raise it for a longer hunt (MOONTREK_FUZZ_EXAMPLES=1000).
EXAMPLES = int(os.environ.get("MOONTREK_FUZZ_EXAMPLES", "25"))

#: What is checked on each answer. Not positive_data_acceptance: a
#: schema-valid upload is any bytes, and random bytes are rightly refused.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    checks.negative_data_rejection,
    checks.unsupported_method,
]


@pytest.fixture
def live_app(make_config):
    # A generous limit, so that 429s do not drown the run (429 is documented
    # and tested in test_openapi.py).
    return create_app(make_config(default_rate_limits=["100000 per minute"]))


@pytest.fixture
def api_schema(live_app):
    """The document as the app serves it, bound to the app (WSGI, in-process)."""
    return schemathesis.openapi.from_wsgi("/api/openapi.json", live_app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=CI,
    database=None if CI else settings.default.database,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
)
def test_api_conforms_to_its_document(case):
    case.call_and_validate(checks=CHECKS)


def test_app_still_healthy_after(live_app):
    """A sanity check that the fixture app answers (and so the run above was
    against a working app, not a stream of 404s)."""
    from falcon.testing import TestClient

    assert TestClient(live_app).simulate_get("/api/health").status_code == 200
