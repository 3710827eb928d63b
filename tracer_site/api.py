"""The JSON API under /api/: the NinjaAPI, who may call it, and errors as JSON.

Access: reads follow `TRACER_LOGIN_REQUIRED` (open, or a session or token needed);
writes always need an API token (`Authorization: Bearer <token>`) or a logged-in
session with its CSRF token, and then a model permission (checked by the endpoint).
Every error is `{"detail": "..."}` with its status: never an HTML page, never a
traceback.
"""

from __future__ import annotations

import logging
import mimetypes
from datetime import timedelta
from functools import wraps
from pathlib import Path

import ninja
from django.conf import settings
from django.core.exceptions import (
    BadRequest,
    ObjectDoesNotExist,
    PermissionDenied,
    RequestDataTooBig,
    SuspiciousOperation,
)
from django.db import OperationalError
from django.http import FileResponse, Http404, HttpResponse
from django.middleware.csrf import get_token
from django.template import engines
from django.urls import path, re_path, reverse
from django.utils import timezone
from django.utils.html import json_script
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.openapi.docs import DocsBase
from ninja.security import APIKeyCookie, HttpBearer
from ninja.utils import check_csrf

from traces.api import ApiBadRequest, ApiUnprocessable, router
from traces.models import ApiToken
from traces.pagination import BadCursor
from traces.uploads import UploadTooLarge

log = logging.getLogger(__name__)

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
# last_used is a write: at most one per token per minute, not one per request.
LAST_USED_EVERY = timedelta(minutes=1)


# --- who is calling ------------------------------------------------------------------------


class BearerToken(HttpBearer):
    """`Authorization: Bearer <token>`, a token made in the admin or with
    `manage.py create_api_token`. A token that is sent but wrong is a 401, not
    ignored: a typo in CI should fail loudly, not read anonymously."""

    def __call__(self, request):
        header = request.headers.get("Authorization")
        if not header:
            return None
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError(message="Send the token as `Authorization: Bearer <token>`.")
        return self.authenticate(request, token.strip())

    def authenticate(self, request, token):
        row = (
            ApiToken.objects.select_related("user").filter(token_hash=ApiToken.hash(token)).first()
        )
        if row is None or not row.user.is_active:
            raise AuthenticationError(message="This API token is not valid (or was revoked).")
        now = timezone.now()
        if row.last_used is None or now - row.last_used > LAST_USED_EVERY:
            ApiToken.objects.filter(pk=row.pk).update(last_used=now)
        request.user = row.user
        return row.user


class SessionCookie(APIKeyCookie):
    """A logged-in session (the site's own login). Writes must carry the CSRF token
    (`X-CSRFToken` header) like any form of the site."""

    param_name = settings.SESSION_COOKIE_NAME

    def __call__(self, request):
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if request.method not in SAFE_METHODS and check_csrf(request):
            raise HttpError(
                403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken."
            )
        return user

    def authenticate(self, request, key):  # pragma: no cover - __call__ decides
        return None


class OpenReads:
    """Anyone may read when the site does not require a login (the default)."""

    def __call__(self, request):
        if request.method in SAFE_METHODS and not settings.TRACER_LOGIN_REQUIRED:
            return request.user
        return None


# --- errors as JSON --------------------------------------------------------------------------


def _error(request, status: int, detail: str, errors=None, headers: dict | None = None):
    body = {"detail": detail}
    if errors is not None:
        body["errors"] = errors
    response = api.create_response(request, body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _authentication_error(request, exc: AuthenticationError):
    detail = exc.message
    if detail == "Unauthorized":  # ninja's own: nothing usable was sent
        detail = (
            "Authentication required: send `Authorization: Bearer <token>` or log in."
            if request.method in SAFE_METHODS
            else "Writing needs an API token (`Authorization: Bearer <token>`) "
            "or a logged-in session with its CSRF token."
        )
    return _error(request, 401, detail, headers={"WWW-Authenticate": 'Bearer realm="api"'})


def _validation_error(request, exc: ValidationError):
    """Ninja's own parameter check. A query or path parameter is a bad request (400);
    a body that does not validate is 422."""
    where = {str(error.get("loc", ("body",))[0]) for error in exc.errors}
    problems = _by_parameter(exc.errors)
    detail = "; ".join(f"{name}: {' '.join(messages)}" for name, messages in problems.items())
    status = 400 if where <= {"query", "path"} else 422
    return _error(request, status, detail, errors=problems)


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


def _unexpected(request, exc: Exception):
    log.exception("API %s %s failed", request.method, request.path, exc_info=exc)
    return _error(request, 500, "Internal error: it has been logged.")


def _database_busy(request, exc: OperationalError):
    log.warning("API %s %s: database unavailable: %s", request.method, request.path, exc)
    return _error(
        request,
        503,
        "The database is busy or unavailable; try again.",
        headers={"Retry-After": "5"},
    )


def _too_large(request, exc=None):
    limit = settings.TRACER_MAX_UPLOAD_BYTES
    return _error(
        request,
        413,
        f"The upload is larger than the limit of {limit:,} bytes. Upload fewer files at once, "
        "or ingest big files on the server (manage.py ingest, or a source).",
    )


def _install_error_handlers(api: NinjaAPI) -> None:
    handlers = {
        Exception: _unexpected,
        OperationalError: _database_busy,
        ApiBadRequest: lambda r, e: _error(r, 400, e.detail, e.errors),
        ApiUnprocessable: lambda r, e: _error(r, 422, e.detail, e.errors),
        BadCursor: lambda r, e: _error(r, 400, str(e), {"cursor": [str(e)]}),
        ValidationError: _validation_error,
        AuthenticationError: _authentication_error,
        HttpError: lambda r, e: _error(r, e.status_code, e.message),
        Http404: lambda r, e: _error(r, 404, str(e) or "Not found."),
        ObjectDoesNotExist: lambda r, e: _error(r, 404, "Not found."),
        PermissionDenied: lambda r, e: _error(r, 403, str(e) or "Permission denied."),
        UploadTooLarge: _too_large,
        RequestDataTooBig: _too_large,
        SuspiciousOperation: lambda r, e: _error(r, 400, f"Bad request: {e}"),
        BadRequest: lambda r, e: _error(r, 400, f"Bad request: {e}"),
    }
    for exc_class, handler in handlers.items():
        api.add_exception_handler(exc_class, handler)


# --- docs that work offline under the site's CSP ----------------------------------------------

NINJA_STATIC = Path(ninja.__file__).resolve().parent / "static" / "ninja"
DOCS_ASSETS = {
    "css": "swagger-ui.css",
    "bundle": "swagger-ui-bundle.js",
    "init": "swagger-ui-init.js",
    "icon": "favicon.svg",
}

DOCS_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="stylesheet" href="{{ assets.css }}">
<link rel="icon" href="{{ assets.icon }}" type="image/svg+xml">
</head>
<body data-csrf-token="{{ csrf_token }}" data-api-csrf="true">
{{ settings_json }}
<div id="swagger-ui"></div>
<script src="{{ assets.bundle }}"></script>
<script src="{{ assets.init }}"></script>
</body>
</html>
"""


class OfflineSwagger(DocsBase):
    """Swagger UI from the files django-ninja ships (no CDN: the site runs without
    network), set up by ninja's own init script (no inline script: the CSP forbids
    it). The settings travel in a JSON data block, which is never executed."""

    def render_page(self, request, api, **kwargs):
        settings_json = json_script(
            {"url": self.get_openapi_url(api, kwargs), "layout": "BaseLayout", "deepLinking": True},
            "swagger-settings",
        )
        template = engines["django"].from_string(DOCS_PAGE)
        context = {
            "title": api.title,
            "assets": {
                role: reverse(f"{api.urls_namespace}:docs-asset", args=[name])
                for role, name in DOCS_ASSETS.items()
            },
            "settings_json": settings_json,
            "csrf_token": get_token(request),
        }
        return HttpResponse(template.render(context, request))


def docs_asset(request, name: str):
    if name not in DOCS_ASSETS.values():
        return _error(request, 404, "Not found.")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    # FileResponse closes the file once it has been sent.
    response = FileResponse(open(NINJA_STATIC / name, "rb"), content_type=content_type)  # noqa: SIM115
    response["Cache-Control"] = "public, max-age=86400"
    return response


# --- the API ---------------------------------------------------------------------------------


class TracerAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        """Say in the document that reads need no credentials while the site is open."""
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        if not settings.TRACER_LOGIN_REQUIRED:
            for operations in schema.get("paths", {}).values():
                get = operations.get("get")
                if get and get.get("security"):
                    get["security"] = [*get["security"], {}]
        return schema


api = TracerAPI(
    title="tracer_site API",
    version="1",
    description=(
        "Runs, steps, errors, entities and files of the trace dashboard, and uploads. "
        "Lists are keyset-paginated: pass a page's `next` as `?after=` (or `prev` as "
        '`?before=`). Errors are `{"detail": "..."}`.'
    ),
    urls_namespace="api",
    auth=[BearerToken(), SessionCookie(), OpenReads()],
    docs=OfflineSwagger(),
)
_install_error_handlers(api)
api.add_router("/", router)


def _json_method_errors(view):
    """Ninja answers a wrong method with a plain-text 405: make it JSON like the rest."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        response = view(request, *args, **kwargs)
        if response.status_code == 405 and not response.get("Content-Type", "").startswith(
            "application/json"
        ):
            allowed = response.get("Allow", "")
            error = _error(
                request, 405, f"Method {request.method} is not allowed here ({allowed})."
            )
            error["Allow"] = allowed
            return error
        return response

    return wrapped


def unknown_endpoint(request, rest: str = ""):
    return _error(request, 404, f"No API endpoint at /api/{rest}; see /api/docs.")


def urls():
    """The API's URL patterns for `path("api/", ...)`: ninja's, with JSON 405s, the
    docs' asset files, and a JSON 404 for anything else under /api/."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        pattern.callback = _json_method_errors(pattern.callback)
    patterns = [
        *patterns,
        path("docs/assets/<str:name>", docs_asset, name="docs-asset"),
        re_path(r"^(?P<rest>.*)$", unknown_endpoint, name="unknown"),
    ]
    return patterns, app_name, namespace
