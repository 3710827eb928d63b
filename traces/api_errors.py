"""The JSON API's errors: every one is `{"detail": "..."}` with its status, never an
HTML page, never a traceback. `install_error_handlers(api)` puts them on the NinjaAPI."""

from __future__ import annotations

import logging
from functools import partial

from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    ObjectDoesNotExist,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.db import OperationalError
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from .api import ApiBadRequest, ApiUnprocessable
from .api_auth import SAFE_METHODS
from .pagination import BadCursor
from .uploads import UploadTooLarge

log = logging.getLogger(__name__)

# The JSON API's answer when the database is busy (here, or outside the view: middleware.py).
DATABASE_BUSY = "The database is busy or unavailable; try again."


def error_response(
    api: NinjaAPI, request, status: int, detail: str, errors=None, headers: dict | None = None
):
    body = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    response = api.create_response(request, body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def install_error_handlers(api: NinjaAPI) -> None:
    handlers = {
        Exception: _unexpected,
        OperationalError: _database_busy,
        ApiBadRequest: lambda respond, r, e: respond(r, 400, e.detail, e.errors),
        ApiUnprocessable: lambda respond, r, e: respond(r, 422, e.detail, e.errors),
        BadCursor: lambda respond, r, e: respond(r, 400, str(e), {"cursor": [str(e)]}),
        ValidationError: _validation_error,
        AuthenticationError: _authentication_error,
        HttpError: lambda respond, r, e: respond(r, e.status_code, e.message),
        Http404: lambda respond, r, e: respond(r, 404, str(e) or "Not found."),
        ObjectDoesNotExist: lambda respond, r, e: respond(r, 404, "Not found."),
        PermissionDenied: lambda respond, r, e: respond(r, 403, str(e) or "Permission denied."),
        UploadTooLarge: _too_large,
        RequestDataTooBig: _too_large,
        SuspiciousOperation: lambda respond, r, e: respond(r, 400, f"Bad request: {e}"),
        BadRequest: lambda respond, r, e: respond(r, 400, f"Bad request: {e}"),
    }
    # Each handler gets error_response bound to this api: ninja calls it as (request, exc).
    respond = partial(error_response, api)
    for exc_class, handler in handlers.items():
        api.add_exception_handler(exc_class, partial(handler, respond))


def _authentication_error(respond, request, exc: AuthenticationError):
    detail = exc.message
    if detail == "Unauthorized":  # ninja's own: nothing usable was sent
        detail = (
            "Authentication required: send `Authorization: Bearer <token>` or log in."
            if request.method in SAFE_METHODS
            else "Writing needs an API token (`Authorization: Bearer <token>`) "
            "or a logged-in session with its CSRF token."
        )
    return respond(request, 401, detail, headers={"WWW-Authenticate": 'Bearer realm="api"'})


def _validation_error(respond, request, exc: ValidationError):
    """Ninja's own parameter check. A query or path parameter is a bad request (400);
    a body that does not validate is 422."""
    where = {str(error.get("loc", ("body",))[0]) for error in exc.errors}
    problems = _by_parameter(exc.errors)
    detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in problems.items())
    status = 400 if where <= {"query", "path"} else 422
    return respond(request, status, detail, errors=problems)


def _by_parameter(errors: list[dict]) -> dict[str, list[str]]:
    """Ninja's error list as the forms give theirs: {parameter: [messages]}."""
    found: dict[str, list[str]] = {}
    for error in errors:
        loc = [str(part) for part in error.get("loc", ())]
        if loc[:1] == ["body"] and len(loc) > 2:
            del loc[1]  # the view's argument name, not the client's business
        name = ".".join(loc[1:]) or (loc[0] if loc else "request")
        found.setdefault(name, []).append(str(error.get("msg", "not valid")))
    return found


def _unexpected(respond, request, exc: Exception):
    log.exception("API %s %s failed", request.method, request.path, exc_info=exc)
    return respond(request, 500, "Internal error: it has been logged.")


def _database_busy(respond, request, exc: OperationalError):
    log.warning("API %s %s: database unavailable: %s", request.method, request.path, exc)
    return respond(request, 503, DATABASE_BUSY, headers={"Retry-After": "5"})


def _too_large(respond, request, exc=None):
    limit = settings.TRACER_MAX_UPLOAD_BYTES
    return respond(
        request,
        413,
        f"The upload is larger than the limit of {limit:,} bytes. Upload fewer files at once, "
        "or ingest big files on the server (manage.py ingest, or a source).",
    )
