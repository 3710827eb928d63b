"""The JSON API under /api/: the NinjaAPI and its URLs.

The endpoints are in traces/api.py, who may call them in traces/api_auth.py, and
errors as JSON in traces/api_errors.py.
"""

from __future__ import annotations

import mimetypes
from functools import wraps
from pathlib import Path

import ninja
from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.middleware.csrf import get_token
from django.template import engines
from django.urls import path, re_path, reverse
from django.utils.html import json_script
from ninja import NinjaAPI
from ninja.openapi.docs import DocsBase

from traces.api import router
from traces.api_auth import BearerToken, OpenReads, SessionCookie
from traces.api_errors import error_response, install_error_handlers

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
        return error_response(api, request, 404, "Not found.")
    content_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    # FileResponse closes the file once it has been sent.
    response = FileResponse(open(NINJA_STATIC / name, "rb"), content_type=content_type)  # noqa: SIM115
    response["Cache-Control"] = "public, max-age=86400"
    return response


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
install_error_handlers(api)
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
            error = error_response(
                api, request, 405, f"Method {request.method} is not allowed here ({allowed})."
            )
            error["Allow"] = allowed
            return error
        return response

    return wrapped


def unknown_endpoint(request, rest: str = ""):
    return error_response(api, request, 404, f"No API endpoint at /api/{rest}; see /api/docs.")


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
