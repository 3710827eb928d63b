"""Schemathesis against /api/openapi.json, in process (WSGI), on a database with the
samples loaded: generated requests for every operation, and no answer may be a
500 or break the document (undocumented status, content type or body shape).

Bounded to stay well under a minute: few examples per operation, no deadline."""

import pytest
import schemathesis
from django.contrib.auth import get_user_model
from django.core import signals
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import SAMPLES
from traces.ingest.loader import ingest_paths
from traces.models import ApiToken

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

# Loaded once, at collection: the document needs no database.
schema = schemathesis.openapi.from_wsgi("/api/openapi.json", get_wsgi_application())


@pytest.fixture(scope="module")
def superuser_token(django_db_setup, django_db_blocker):
    """The samples loaded once for every operation (each test's own writes are rolled
    back), and a token that may write, so bodies get past authentication."""
    with django_db_blocker.unblock():
        assert ingest_paths([SAMPLES]).failed == []
        admin = get_user_model().objects.create_superuser("fuzz", password="pw")
        yield ApiToken.issue(admin, name="schemathesis")[1]
        call_command("flush", interactive=False, verbosity=0)


@pytest.fixture
def api_request(db, superuser_token, settings, tmp_path):
    """Requests through the raw WSGI app would close the test's connection at the end
    of each request (and with it the test transaction): Django's test client avoids
    that the same way."""
    settings.TRACER_UPLOAD_DIR = tmp_path / "uploads"
    for signal in (signals.request_started, signals.request_finished):
        signal.disconnect(close_old_connections)
    yield superuser_token
    for signal in (signals.request_started, signals.request_finished):
        signal.connect(close_old_connections)


@schema.parametrize()
@settings(max_examples=10, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
def test_api_answers_match_the_openapi_document(case, api_request):
    # Reads go anonymous (the site is open by default); writes carry the token.
    headers = {} if case.method == "GET" else {"Authorization": f"Bearer {api_request}"}
    case.call_and_validate(headers=headers, checks=CHECKS)
