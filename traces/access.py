"""Who may read and who may change what.

Reading: open to anyone who reaches the site (local use, the default), or only
to logged-in users when `TRACER_LOGIN_REQUIRED` is on; then settings.py adds
`LoginRequiredMiddleware` below, which sends anonymous visitors to the admin's
login page. The JSON API under /api/ is left to its own rules (tokens).

Changing: uploading, adding/changing/rescanning/deleting sources and deleting
runs need a model permission, unless `TRACER_OPEN_WRITES` is on (local use:
`make run` turns it on). Without it, an anonymous visitor is sent to log in
and a logged-in user without the permission gets a 403 page that names it.
"""

from __future__ import annotations

from functools import wraps
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.middleware import (
    LoginRequiredMiddleware as DjangoLoginRequiredMiddleware,
)
from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render, resolve_url
from django.utils.http import url_has_allowed_host_and_scheme
from django_htmx.http import HttpResponseClientRedirect, reswap, retarget

# URL namespaces that answer for themselves (the API says 401 in JSON, never redirects).
SELF_GUARDED_NAMESPACES = ("api",)

UPLOAD = "traces.add_tracefile"
ADD_SOURCE = "traces.add_tracesource"
CHANGE_SOURCE = "traces.change_tracesource"
DELETE_SOURCE = "traces.delete_tracesource"
DELETE_RUN = "traces.delete_run"

# What each permission allows, in the words of the 403 page.
PERMISSION_WORDS = {
    UPLOAD: "upload trace files",
    ADD_SOURCE: "add trace sources",
    CHANGE_SOURCE: "change and rescan trace sources",
    DELETE_SOURCE: "delete trace sources",
    DELETE_RUN: "delete runs",
}


def may(user, permission: str) -> bool:
    """True when this user may do what `permission` guards (always, with open writes)."""
    if settings.TRACER_OPEN_WRITES:
        return True
    return bool(user is not None and user.is_active and user.has_perm(permission))


def refusal(request, permission: str):
    """None when the request may do it; else the answer: anonymous, to the login page;
    logged in without the permission, a 403 page naming it."""
    if may(request.user, permission):
        return None
    if not request.user.is_authenticated:
        return login_redirect(request)
    return forbidden(request, permission)


def permission_required(permission: str):
    """Guard a view that changes something (every method), as `refusal` says."""

    def decorator(view):
        @wraps(view)
        def guarded(request, *args, **kwargs):
            refused = refusal(request, permission)
            if refused is not None:
                return refused
            return view(request, *args, **kwargs)

        guarded.permission = permission
        return guarded

    return decorator


def login_redirect(request):
    """To the login page, coming back here afterwards (for a POST: to the page the
    form was on). htmx gets HX-Redirect, so the whole page goes, not a fragment."""
    target = request.get_full_path() if request.method == "GET" else _referring_page(request)
    response = redirect_to_login(target, resolve_url(settings.LOGIN_URL), REDIRECT_FIELD_NAME)
    if request.htmx:
        return HttpResponseClientRedirect(response["Location"])
    return response


def _referring_page(request) -> str:
    referer = request.headers.get("Referer", "")
    if referer and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        parts = urlsplit(referer)
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return resolve_url("traces:run-list")


def forbidden(request, permission: str):
    context = {
        "permission": permission,
        "allows": PERMISSION_WORDS.get(permission, permission),
        "username": request.user.get_username(),
    }
    if request.htmx:
        response = render(request, "traces/forbidden.html#message", context, status=403)
        return reswap(retarget(response, "#flash"), "innerHTML")
    return render(request, "traces/forbidden.html", context, status=403)


class LoginRequiredMiddleware(DjangoLoginRequiredMiddleware):
    """Django's, minus the API (it has its own rules), and with HX-Redirect for htmx
    so that a header polled after the session ended does not fill with a login page."""

    def process_view(self, request, view_func, view_args, view_kwargs):
        match = request.resolver_match
        if match is not None and any(ns in SELF_GUARDED_NAMESPACES for ns in match.namespaces):
            return None
        return super().process_view(request, view_func, view_args, view_kwargs)

    def handle_no_permission(self, request, view_func):
        response = super().handle_no_permission(request, view_func)
        if getattr(request, "htmx", False):
            return HttpResponseClientRedirect(response["Location"])
        return response


class Abilities:
    """`can.delete_run` etc. in templates: asked only when a template uses it."""

    def __init__(self, request):
        self._request = request
        self._known: dict[str, bool] = {}

    def _may(self, permission: str) -> bool:
        if permission not in self._known:
            self._known[permission] = may(getattr(self._request, "user", None), permission)
        return self._known[permission]

    upload = property(lambda self: self._may(UPLOAD))
    add_source = property(lambda self: self._may(ADD_SOURCE))
    change_source = property(lambda self: self._may(CHANGE_SOURCE))
    delete_source = property(lambda self: self._may(DELETE_SOURCE))
    delete_run = property(lambda self: self._may(DELETE_RUN))


def abilities(request) -> dict:
    """Context processor: `can`."""
    return {"can": Abilities(request)}
