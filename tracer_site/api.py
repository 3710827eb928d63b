"""The JSON API under /api/: the NinjaAPI and its URLs.

The endpoints are in traces/api/, who may call them in traces/api_auth.py, and
errors as JSON in traces/api_errors.py. The docs at /api/docs are ninja's own
Swagger page, from the files ninja ships (it is in INSTALLED_APPS): no CDN, and
no inline script under the site's CSP; templates/ninja/swagger.html adds the
site's header link and theme.
"""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import re_path
from ninja import NinjaAPI

from traces.api import router
from traces.api_auth import BearerToken, OpenReads, SessionCookie
from traces.api_errors import error_response, install_error_handlers


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

    def get_openapi_operation_id(self, operation) -> str:
        """`traces_api_<view>`: named by the view alone, not by its module, so a view
        moving between modules keeps the id that clients' generated code is named by."""
        return f"traces_api_{operation.view_func.__name__}"


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


def unknown_endpoint(request: HttpRequest, rest: str = "") -> HttpResponse:
    return error_response(api, request, 404, f"No API endpoint at /api/{rest}; see /api/docs.")


def urls():
    """The API's URL patterns for `path("api/", ...)`: ninja's, with JSON 405s, and a
    JSON 404 for anything else under /api/."""
    patterns, app_name, namespace = api.urls
    for pattern in patterns:
        pattern.callback = _json_method_errors(pattern.callback)
    patterns = [*patterns, re_path(r"^(?P<rest>.*)$", unknown_endpoint, name="unknown")]
    return patterns, app_name, namespace
