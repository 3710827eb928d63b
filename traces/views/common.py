"""Helpers shared by the page views."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django_htmx.http import reswap, retarget

from traces import queries


def htmx_part(request: HttpRequest, *parts: str) -> str | None:
    """The partial an htmx request swaps: the one of `parts` its HX-Target names, else
    the first. None for the whole page: no htmx, a boosted link, or a history restore
    (which wants the whole page, whatever it targeted)."""
    htmx = request.htmx
    if not htmx or htmx.boosted or htmx.history_restore_request:
        return None
    return htmx.target if htmx.target in parts else parts[0]


def fragment(request: HttpRequest, template: str, *parts: str) -> str:
    """The whole page's template, or its partial that an htmx request swaps."""
    part = htmx_part(request, *parts)
    return f"{template}#{part}" if part else template


def bad_request(request: HttpRequest, message: str, form=None, status: int = 400) -> HttpResponse:
    """A 400 page (or `status`); for an htmx request, the message alone, shown in the
    page's flash area (whatever the request meant to swap stays as it was)."""
    context = {"message": message, "form": form, "status": status}
    if request.htmx:
        response = render(request, "traces/bad_request.html#message", context, status=status)
        return reswap(retarget(response, "#flash"), "innerHTML")
    return render(request, "traces/bad_request.html", context, status=status)


# A log line's level, as the status colour its badge takes.
LEVEL_CLASSES = {
    "error": "failed", "fatal": "failed", "critical": "failed", "err": "failed",
    "warning": "running", "warn": "running",
    "info": "pending", "notice": "pending",
    "debug": "skipped", "trace": "skipped",
}  # fmt: skip


def mark_log_rows(entries) -> None:
    """A log row's level as a badge colour and its step's URL, for the log tables."""
    for entry in entries:
        entry.level_class = LEVEL_CLASSES.get(entry.level.lower(), "flag")
        entry.step_url = step_url(entry.run_id, entry.step.key) if entry.step_id else ""


def step_url(run_id: int, key: str) -> str:
    """Keys may hold `/` (the URL takes a path); a key no URL can carry gets no link."""
    try:
        return reverse("traces:step-detail", args=[run_id, key])
    except NoReverseMatch:
        return ""


def entity_url(entity_type: str, entity_id: str) -> str:
    # A type holding "/" would be read back from its URL as another type and id.
    if not queries.entities.has_page(entity_type, entity_id):
        return ""
    try:
        return reverse("traces:entity-detail", args=[entity_type, entity_id])
    except NoReverseMatch:
        return ""
