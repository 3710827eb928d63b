"""Helpers shared by the page views."""

from __future__ import annotations

from django.shortcuts import render
from django_htmx.http import reswap, retarget

PAGE_SIZE = 50


def fragment(request, template: str, partial: str) -> str:
    """The whole page, or only the named partial for an htmx swap."""
    if request.htmx and not request.htmx.boosted:
        return f"{template}#{partial}"
    return template


def bad_request(request, message: str, form=None):
    """A 400 page; for an htmx request, the message alone, shown in the page's
    flash area (whatever the request meant to swap stays as it was)."""
    context = {"message": message, "form": form}
    if request.htmx:
        response = render(request, "traces/bad_request.html#message", context, status=400)
        return reswap(retarget(response, "#flash"), "innerHTML")
    return render(request, "traces/bad_request.html", context, status=400)
