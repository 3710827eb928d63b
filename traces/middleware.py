"""A page whose database was busy answers 503 with a message, not a 500 (or a 400).

In a view, `DatabaseBusyMiddleware.process_exception` answers it. Outside one (the
session saved by SessionMiddleware.process_response, a middleware's query), Django's
wrapper around each middleware (convert_exception_to_response) turns the error into a
response before any other middleware sees it, through the URLconf's handler400 (the
session backend turns a failed save into SessionInterrupted, a 400) or handler500:
`busy_or_bad_request` and `busy_or_server_error` here (tracer_site/urls.py). With
DEBUG on, Django shows its own error page there instead."""

from __future__ import annotations

import logging
import sys

from django.db import OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from traces.api_errors import DATABASE_BUSY
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
        busy = busy_error(exception)
        return None if busy is None else busy_page(request, busy)


def busy_error(exception: BaseException) -> OperationalError | None:
    """The busy database's error that `exception` is, or was raised while handling
    (Django's session backend raises UpdateError, then SessionInterrupted, from it)."""
    seen = set()
    while exception is not None and id(exception) not in seen:
        if isinstance(exception, OperationalError) and _busy(exception):
            return exception
        seen.add(id(exception))
        if exception.__cause__ is None and exception.__suppress_context__:
            return None  # raise ... from None: not because of it
        exception = exception.__cause__ or exception.__context__
    return None


def busy_page(request: HttpRequest, exception: OperationalError) -> HttpResponse:
    """The page (or, for the JSON API, the JSON error api_errors gives) saying so."""
    log.warning("%s %s: database busy: %s", request.method, request.path, exception)
    if request.path_info.startswith("/api/"):
        response = JsonResponse({"detail": DATABASE_BUSY}, status=503)
    else:
        message = "The database is busy: another write held it too long. Try again in a moment."
        response = bad_request(request, message, status=503)
    response["Retry-After"] = "5"
    return response


def busy_or_bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: a 400 raised because the database was busy is the busy page."""
    busy = busy_error(exception)
    if busy is None:
        return defaults.bad_request(request, exception)
    return _busy_page_or_server_error(request, busy)


def busy_or_server_error(request: HttpRequest) -> HttpResponse:
    """handler500 (called while Django handles the error: sys.exc_info() holds it)."""
    busy = busy_error(sys.exc_info()[1])
    if busy is None:
        return defaults.server_error(request)
    return _busy_page_or_server_error(request, busy)


def _busy_page_or_server_error(request, busy: OperationalError) -> HttpResponse:
    # The busy page renders the site's layout (the user, their permissions): a database
    # too busy to read as well gets Django's plain page, never an error in the handler.
    try:
        return busy_page(request, busy)
    except Exception:
        log.exception("%s %s: the busy page failed", request.method, request.path)
        return defaults.server_error(request)


def _busy(exc: OperationalError) -> bool:
    return (
        batches.sqlite_locked(exc)
        or batches.writers_met(exc)
        or LOCK_NOT_AVAILABLE in batches.sqlstates(exc)
    )
