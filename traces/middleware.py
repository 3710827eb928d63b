"""A page whose database was busy answers 503 with a message, not a 500."""

from __future__ import annotations

import logging

from django.db import OperationalError

from traces.ingest import batches
from traces.views.common import bad_request

log = logging.getLogger(__name__)

# PostgreSQL's lock_not_available (a lock_timeout passed).
LOCK_NOT_AVAILABLE = "55P03"


class DatabaseBusyMiddleware:
    """SQLite's write lock not had within the busy timeout (an ingest or a repair held
    it), or PostgreSQL failing a statement that met another writer: the page says so
    and asks to try again (the JSON API answers the same in api_errors)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, OperationalError) or not _busy(exception):
            return None
        log.warning("%s %s: database busy: %s", request.method, request.path, exception)
        message = "The database is busy: another write held it too long. Try again in a moment."
        response = bad_request(request, message, status=503)
        response["Retry-After"] = "5"
        return response


def _busy(exc: OperationalError) -> bool:
    return (
        batches.sqlite_locked(exc)
        or batches.writers_met(exc)
        or LOCK_NOT_AVAILABLE in batches.sqlstates(exc)
    )
