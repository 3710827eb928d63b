"""Helpers shared by the page views."""

from __future__ import annotations

from django.shortcuts import render

PAGE_SIZE = 50


def fragment(request, template: str, partial: str) -> str:
    """The whole page, or only the named partial for an htmx swap."""
    if request.htmx and not request.htmx.boosted:
        return f"{template}#{partial}"
    return template


def bad_request(request, message: str, form=None):
    return render(
        request, "traces/bad_request.html", {"message": message, "form": form}, status=400
    )
